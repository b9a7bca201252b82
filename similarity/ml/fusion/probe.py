"""Category evidence: a linear probe on the frozen features, blended into the fused vector.

Imports torch and (to fit) scikit-learn, no Django. On a catalog of a few hundred labelled
products the attention fusion and a multinomial logistic regression on the frozen sentence +
image features make different mistakes, and blending the two beats either alone on held-out
products (docs/EVALUATION.md). The probe's
category posterior ``p`` is mapped through the fusion's own (unit) class prototypes into the
fused space, ``e = normalize(p @ prototypes)``, and the product vector becomes
``normalize(fused + weight * e)``: products the probe places in the same categories move
closer, while ``fused`` still orders them within a category. It stays ``dim``-d whatever the
number of categories, so vector columns and indexes do not change.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-12


class CategoryProbe(nn.Module):
    """Softmax regression over ``[unit sentence, image_scale * unit image]`` features.

    The weights are buffers filled by ``fit`` (they are not trained by the fusion's optimiser)
    and saved with the fusion's state dict.

    Args:
        n_classes: number of categories, in the fusion's class order.
        sentence_dim: size of the sentence features.
        image_dim: size of the image features.
        image_scale: weight of the (unit) image features against the (unit) sentence ones.
    """

    def __init__(self, n_classes: int, sentence_dim: int, image_dim: int, image_scale: float = 0.6) -> None:
        super().__init__()
        self.image_scale = float(image_scale)
        self.register_buffer("weight", torch.zeros(max(n_classes, 1), sentence_dim + image_dim))
        self.register_buffer("bias", torch.zeros(max(n_classes, 1)))

    def inputs(
        self, image: torch.Tensor, has_image: torch.Tensor, sentence: torch.Tensor, has_text: torch.Tensor
    ) -> torch.Tensor:
        """Return the (n, sentence_dim + image_dim) probe inputs; a missing modality is zeros."""
        text = F.normalize(sentence.float(), dim=-1, eps=EPS) * has_text.bool()[:, None]
        picture = F.normalize(image.float(), dim=-1, eps=EPS) * has_image.bool()[:, None]
        return torch.cat([text, self.image_scale * picture], dim=1)

    def posterior(
        self, image: torch.Tensor, has_image: torch.Tensor, sentence: torch.Tensor, has_text: torch.Tensor
    ) -> torch.Tensor:
        """Return (n, n_classes) category probabilities."""
        logits = self.inputs(image, has_image, sentence, has_text) @ self.weight.float().T + self.bias.float()
        return torch.softmax(logits, dim=1)

    def evidence(
        self,
        prototypes: torch.Tensor,
        image: torch.Tensor,
        has_image: torch.Tensor,
        sentence: torch.Tensor,
        has_text: torch.Tensor,
    ) -> torch.Tensor:
        """Return (n, dim) unit vectors ``normalize(posterior @ unit prototypes)``; zeros without input."""
        anything = has_image.bool() | has_text.bool()
        mixed = self.posterior(image, has_image, sentence, has_text) @ F.normalize(prototypes.float(), dim=-1, eps=EPS)
        return F.normalize(mixed, dim=-1, eps=EPS) * anything[:, None]

    def fit(
        self,
        image: np.ndarray,
        has_image: np.ndarray,
        sentence: np.ndarray,
        has_text: np.ndarray,
        targets: np.ndarray,
        *,
        c: float = 100.0,
        max_iter: int = 300,
    ) -> dict[str, int]:
        """Fit the regression (scikit-learn, L-BFGS, L2 strength ``1 / c``) and load its weights.

        Args:
            image, has_image, sentence, has_text: the training rows' frozen features.
            targets: (n,) class indices into the fusion's classes; rows with -1 are skipped.
            c: inverse regularisation strength, scikit-learn's ``C``.
            max_iter: L-BFGS iterations at most (a large catalog may stop before convergence).

        Returns:
            ``{"rows": ..., "iterations": ...}`` for the training metrics.
        """
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        keep = np.asarray(targets) >= 0
        with torch.no_grad():
            features = self.inputs(
                torch.from_numpy(np.asarray(image, np.float32)),
                torch.from_numpy(np.asarray(has_image, bool)),
                torch.from_numpy(np.asarray(sentence, np.float32)),
                torch.from_numpy(np.asarray(has_text, bool)),
            ).numpy()[keep]
        labels = np.asarray(targets)[keep]
        weight = np.zeros(tuple(self.weight.shape), np.float32)
        bias = np.full(tuple(self.bias.shape), -1e4, np.float32)  # a class with no row is never predicted
        present = np.unique(labels)
        iterations = 0
        if len(present) == 1:
            bias[present[0]] = 0.0
        elif len(present) > 1:
            regression = LogisticRegression(C=c, max_iter=max_iter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                regression.fit(features, labels)
            if len(present) == 2:  # scikit-learn keeps one logit: softmax of (0, z) is sigmoid(z)
                weight[present[0]], bias[present[0]] = 0.0, 0.0
                weight[present[1]], bias[present[1]] = regression.coef_[0], regression.intercept_[0]
            else:
                weight[regression.classes_] = regression.coef_
                bias[regression.classes_] = regression.intercept_
            iterations = int(np.max(regression.n_iter_))
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(weight))
            self.bias.copy_(torch.from_numpy(bias))
        return {"rows": int(keep.sum()), "iterations": iterations}


def blend(fused: torch.Tensor, evidence: torch.Tensor, weight: float) -> torch.Tensor:
    """Return ``normalize(fused + weight * evidence)``; rows that were zero stay zero."""
    present = fused.abs().sum(dim=1) > 0
    return F.normalize(fused.float() + weight * evidence.float(), dim=-1, eps=EPS) * present[:, None]
