"""Learned attention fusion: image, sentence and recurrent-text vectors -> one product vector.

Imports torch, no Django; trained by ``similarity.ml.fusion.training`` and run by the worker
through ``similarity.ml.fusion.checkpoint.FusionModel``. Each modality is projected into one
``dim``-d space and L2-normalised; a per-product softmax over the available modalities
weighs them. Missing modalities are masked with -inf before the softmax, so their weight is
exactly 0 and their (meaningless) input features cannot move the output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from similarity.ml.fusion.anchor import ContentAnchor
from similarity.ml.fusion.probe import CategoryProbe, blend
from similarity.ml.fusion.recurrent import RecurrentTextEncoder

BRANCHES = ("image", "sentence", "recurrent")
EPS = 1e-12


@dataclass
class FusionOutput:
    """What one forward pass returns; rows of a missing branch are zeros in ``branches``."""

    fused: torch.Tensor  # (n, dim), unit norm; zeros for a product with no modality
    attention: torch.Tensor  # (n, 3) in BRANCHES order; rows sum to 1 (0 with no modality)
    branches: torch.Tensor  # (n, 3, dim), each branch's own unit vector
    present: torch.Tensor  # (n, 3) bool, which branches the product has


class AttentionFusion(nn.Module):
    """Fuse frozen image/sentence features and token ids into a unit ``dim``-d vector.

    Args:
        vocab_size: size of the token vocabulary of the recurrent branch.
        n_classes: classes of the training head (used only for the training loss).
        image_dim: size of the input image features.
        sentence_dim: size of the input sentence features.
        dim: size of the shared space and of the fused vector.
        hidden: width of the hidden layer of the image/sentence projections; 0 makes
            them single linear layers.
        dropout: dropout on the inputs and hidden layers while training.
        embedding_dim, rnn_hidden, cell: shape of the recurrent branch.
        attention_dim: width of the modality attention scorer.
        class_scale: logit scale of the cosine classification head (1 / temperature).
        probe_weight: weight of the category evidence in the product vector
            (``with_evidence``); 0 builds no probe.
        probe_image_scale: weight of the image features against the text ones in the probe.
        anchor_dim: size of the content anchor appended to the product vector
            (``similarity.ml.fusion.anchor``); 0 builds none. Product vectors then have
            ``dim + anchor_dim`` dimensions (``output_dim``).
        anchor_share: the anchor's share of the product vector's cosine (set again after
            training, where it is chosen on the validation split).
        anchor_image_weight: the image's weight in the anchor's fixed fusion (the catalog's
            fixed-fusion weight; text gets the rest).
        level_classes: number of classes of each other category level trained alongside
            (one more set of prototypes each, for the training loss only).
    """

    def __init__(
        self,
        vocab_size: int,
        n_classes: int,
        *,
        image_dim: int = 1280,
        sentence_dim: int = 512,
        dim: int = 256,
        hidden: int = 512,
        dropout: float = 0.3,
        embedding_dim: int = 128,
        rnn_hidden: int = 128,
        cell: str = "gru",
        attention_dim: int = 128,
        class_scale: float = 16.0,
        probe_weight: float = 0.0,
        probe_image_scale: float = 0.6,
        anchor_dim: int = 0,
        anchor_share: float = 0.3,
        anchor_image_weight: float = 0.3,
        level_classes: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__()
        self.dim = dim
        self.output_dim = dim + max(int(anchor_dim), 0)
        self.image = _projection(image_dim, hidden, dim, dropout)
        self.sentence = _projection(sentence_dim, hidden, dim, dropout)
        self.recurrent = RecurrentTextEncoder(
            vocab_size,
            dim,
            embedding_dim=embedding_dim,
            hidden_size=rnn_hidden,
            cell=cell,
            dropout=dropout,
            attention_dim=attention_dim,
        )
        # One scorer shared by the branches (they live in one space) plus a per-branch prior.
        self.scorer = nn.Sequential(
            nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False)
        )
        self.branch_bias = nn.Parameter(torch.zeros(len(BRANCHES)))
        # Cosine classifier: class prototypes shared by the fused vector and every branch,
        # which pulls the three branches into one aligned space.
        self.prototypes = nn.Parameter(torch.randn(max(n_classes, 1), dim) * 0.01)
        self.class_scale = class_scale
        # The other category levels' prototypes: the fused vector learns every level at once.
        self.level_prototypes = nn.ParameterList(
            [nn.Parameter(torch.randn(max(int(n), 1), dim) * 0.01) for n in level_classes]
        )
        # Category evidence blended in after training (``similarity.ml.fusion.probe``); 0 = none.
        self.probe_weight = float(probe_weight)
        self.probe = (
            CategoryProbe(n_classes, sentence_dim, image_dim, probe_image_scale) if probe_weight > 0 else None
        )
        # The fixed fusion of the same features, projected, appended (fitted after training).
        self.anchor = (
            ContentAnchor(image_dim, sentence_dim, anchor_dim, anchor_share, anchor_image_weight, 1.0 - anchor_image_weight)
            if anchor_dim > 0 else None
        )

    def branch_vectors(
        self,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sentence: torch.Tensor,
        has_text: torch.Tensor,
        token_ids: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(branches (n, 3, dim) unit vectors, present (n, 3) bool)``."""
        recurrent, has_tokens = self.recurrent(token_ids)
        present = torch.stack([has_image.bool(), has_text.bool(), has_tokens], dim=1)
        raw = torch.stack([self.image(image), self.sentence(sentence), recurrent], dim=1).float()
        branches = F.normalize(raw, dim=-1, eps=EPS) * present[..., None]
        return branches, present

    def forward(
        self,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sentence: torch.Tensor,
        has_text: torch.Tensor,
        token_ids: torch.Tensor,
    ) -> FusionOutput:
        """Fuse a batch of products.

        Args:
            image: (n, image_dim) image features (any values where ``has_image`` is False).
            has_image: (n,) bool.
            sentence: (n, sentence_dim) sentence features.
            has_text: (n,) bool; False drops the sentence branch.
            token_ids: (n, L) int64 ids from ``Vocabulary.encode_batch``; an all-padding
                row drops the recurrent branch.
        """
        branches, present = self.branch_vectors(image, has_image, sentence, has_text, token_ids)
        scores = self.scorer(branches).squeeze(-1).float() + self.branch_bias
        scores = scores.masked_fill(~present, float("-inf"))
        # With no modality at all every score is -inf and softmax gives NaN: neutralise.
        anything = present.any(dim=1)
        scores = scores.masked_fill(~anything[:, None], 0.0)
        attention = torch.softmax(scores, dim=1) * present
        fused = F.normalize((attention[..., None] * branches).sum(dim=1), dim=-1, eps=EPS)
        return FusionOutput(fused=fused, attention=attention, branches=branches, present=present)

    def with_evidence(
        self,
        fused: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sentence: torch.Tensor,
        has_text: torch.Tensor,
    ) -> torch.Tensor:
        """Return the product vectors: ``fused`` with the probe's category evidence blended in.

        Without a probe (``probe_weight`` 0, or a checkpoint from before probes) ``fused`` is
        returned as it is. Training never calls this: the probe is fitted afterwards.
        """
        if self.probe is None:
            return fused
        evidence = self.probe.evidence(self.prototypes, image, has_image, sentence, has_text)
        return blend(fused, evidence, self.probe_weight)

    def product_vectors(
        self,
        fused: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sentence: torch.Tensor,
        has_text: torch.Tensor,
        *,
        evidence: bool = True,
        anchor: bool = True,
    ) -> torch.Tensor:
        """Return what a product is stored as: ``fused`` with the category evidence blended in
        and the content anchor appended (each where the model has one and it is asked for)."""
        if evidence:
            fused = self.with_evidence(fused, image, has_image, sentence, has_text)
        if anchor and self.anchor is not None:
            fused = self.anchor.attach(fused, image, has_image, sentence, has_text)
        return fused

    def classify(self, vectors: torch.Tensor) -> torch.Tensor:
        """Return class logits of unit vectors (fused or branch) for the training loss."""
        return self._cosine_logits(vectors, self.prototypes)

    def classify_level(self, vectors: torch.Tensor, index: int) -> torch.Tensor:
        """Return logits of unit vectors over the classes of the ``index``-th other level."""
        return self._cosine_logits(vectors, self.level_prototypes[index])

    def _cosine_logits(self, vectors: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        return self.class_scale * vectors.float() @ F.normalize(prototypes.float(), dim=-1, eps=EPS).T


def _projection(in_dim: int, hidden: int, dim: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, dim))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, dim),
    )
