"""Content anchor: the fixed fusion of the frozen features, kept inside the learned vector.

Imports torch and (to fit) scikit-learn, no Django. Training on category labels pulls each
product toward its category, which finds more products of the same coarse category but
loses what tells two products of one category apart: on flipkart1050 the learned vector
alone was 0.05 below the fixed fusion at the leaf level (P@1). The anchor appends the fixed
fusion of the same frozen features (``similarity.ml.fusion.fixed``), projected onto its
``dim`` principal directions over the catalog, to the learned vector:

    v = [sqrt(1 - share) * learned, sqrt(share) * normalize(P @ fixed)]

so ``cos(v1, v2) = (1 - share) cos(learned) + share cos(anchor)``: the learned part decides
between categories, the anchor keeps the ordering within one. ``P`` is fitted without labels
(PCA of the catalog's fixed-fusion vectors, not centred at prediction so cosines keep their
meaning); ``share`` is chosen on the validation split at every category level
(``similarity.ml.fusion.training``).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-12


class ContentAnchor(nn.Module):
    """The projected fixed fusion of ``[image, sentence]`` features, and its share.

    Args:
        image_dim, sentence_dim: sizes of the frozen features.
        dim: size of the projection (the anchor's part of the product vector).
        share: weight of the anchor's cosine in the product vector's cosine (0..1).
        image_weight, text_weight: the fixed fusion's weights (only their ratio matters).
    """

    def __init__(
        self, image_dim: int, sentence_dim: int, dim: int = 128, share: float = 0.3,
        image_weight: float = 0.3, text_weight: float = 0.7,
    ) -> None:
        super().__init__()
        self.dim = int(dim)
        self.image_weight, self.text_weight = float(image_weight), float(text_weight)
        self.register_buffer("projection", torch.zeros(self.dim, image_dim + sentence_dim))
        self.register_buffer("share", torch.tensor(float(share)))

    def fixed(self, image: torch.Tensor, has_image: torch.Tensor, sentence: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """The fixed fusion ``[sqrt(a) unit image, sqrt(b) unit sentence]``, unit rows; zeros without input
        (a product with one modality keeps only that one, as ``similarity.ml.fusion.fixed.fuse``)."""
        has_image, has_text = has_image.bool(), has_text.bool()
        total = self.image_weight + self.text_weight
        a = torch.where(has_image, self.image_weight / total, 0.0)
        b = torch.where(has_text, self.text_weight / total, 0.0)
        picture = F.normalize(image.float(), dim=-1, eps=EPS) * a.sqrt()[:, None]
        words = F.normalize(sentence.float(), dim=-1, eps=EPS) * b.sqrt()[:, None]
        return F.normalize(torch.cat([picture, words], dim=1), dim=-1, eps=EPS)

    def vectors(self, image: torch.Tensor, has_image: torch.Tensor, sentence: torch.Tensor, has_text: torch.Tensor) -> torch.Tensor:
        """The (n, dim) unit anchor vectors; zeros for a product with no input."""
        projected = self.fixed(image, has_image, sentence, has_text) @ self.projection.float().T
        return F.normalize(projected, dim=-1, eps=EPS)

    def attach(
        self, learned: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor, sentence: torch.Tensor, has_text: torch.Tensor
    ) -> torch.Tensor:
        """Return ``[sqrt(1 - share) learned, sqrt(share) anchor]`` (unit rows where ``learned`` is)."""
        return combine(learned, self.vectors(image, has_image, sentence, has_text), float(self.share))

    def fit(self, image: np.ndarray, has_image: np.ndarray, sentence: np.ndarray, has_text: np.ndarray, *, seed: int = 0) -> dict[str, float]:
        """Fit the projection: the top principal directions of the rows' fixed fusion (no labels).

        Returns ``{"rows": ..., "explained": share of the variance kept}``.
        """
        from sklearn.decomposition import PCA

        with torch.no_grad():
            fixed = self.fixed(
                torch.from_numpy(np.asarray(image, np.float32)), torch.from_numpy(np.asarray(has_image, bool)),
                torch.from_numpy(np.asarray(sentence, np.float32)), torch.from_numpy(np.asarray(has_text, bool)),
            ).numpy()
        rows = fixed[np.any(fixed != 0, axis=1)]
        projection = np.zeros(tuple(self.projection.shape), np.float32)
        explained = 0.0
        components = min(self.dim, len(rows), rows.shape[1])
        if components >= 1:
            pca = PCA(components, random_state=seed, svd_solver="full" if len(rows) <= 5000 else "randomized").fit(rows)
            projection[:components] = pca.components_
            explained = float(np.sum(pca.explained_variance_ratio_))
        with torch.no_grad():
            self.projection.copy_(torch.from_numpy(projection))
        return {"rows": int(len(rows)), "explained": round(explained, 4)}


def combine(learned: torch.Tensor, anchor: torch.Tensor, share: float) -> torch.Tensor:
    """``[sqrt(1 - share) learned, sqrt(share) anchor]`` for unit rows; rows zero in ``learned`` stay zero."""
    present = learned.abs().sum(dim=1) > 0
    out = torch.cat([math.sqrt(1.0 - share) * learned.float(), math.sqrt(share) * anchor.float()], dim=1)
    return F.normalize(out, dim=-1, eps=EPS) * present[:, None]
