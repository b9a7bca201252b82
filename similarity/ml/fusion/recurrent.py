"""Recurrent text branch: token ids -> bidirectional GRU/LSTM -> attention pooling -> vector.

Imports torch, no Django; part of the learned fusion model that the training script fits and
the worker runs. Padding (id 0) never reaches a valid state: the forward direction reads the
right-padded rows as they are (states before the padding do not depend on it), the backward
direction reads each row's tokens reversed in place (padding still at the end), and the
pooling softmax masks padded steps. Two one-way cells on padded tensors do the same as a
packed bidirectional cell but run about three times faster on CPU.
"""
from __future__ import annotations

import torch
from torch import nn

from similarity.ml.fusion.vocab import PAD_ID

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class RecurrentTextEncoder(nn.Module):
    """Encode padded token-id rows into ``dim``-d vectors with additive attention pooling.

    Args:
        vocab_size: number of ids, ``<pad>`` (0) and ``<unk>`` (1) included.
        dim: size of the output vector.
        embedding_dim: size of the token embeddings.
        hidden_size: hidden units per direction of the recurrent layer.
        cell: ``"gru"`` or ``"lstm"``.
        dropout: dropout on the embeddings and on the pooled vector while training.
        attention_dim: width of the additive attention scorer.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        embedding_dim: int = 128,
        hidden_size: int = 128,
        cell: str = "gru",
        dropout: float = 0.1,
        attention_dim: int = 128,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}.")
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)
        self.forward_rnn = CELLS[cell](embedding_dim, hidden_size, batch_first=True)
        self.backward_rnn = CELLS[cell](embedding_dim, hidden_size, batch_first=True)
        self.attention = nn.Sequential(
            nn.Linear(2 * hidden_size, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1, bias=False)
        )
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(2 * hidden_size, dim)
        self.dim = dim
        self.hidden_size = hidden_size

    def forward(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(vectors (n, dim), has_tokens (n,) bool)``; all-padding rows give zeros.

        Args:
            token_ids: (n, L) int64 ids, right-padded with 0.
        """
        states, mask = self.token_states(token_ids)
        has_tokens = mask.any(dim=1)
        if states.shape[1] == 0:
            return torch.zeros((token_ids.shape[0], self.dim), device=token_ids.device), has_tokens
        scores = self.attention(states).squeeze(-1).float()
        scores = scores.masked_fill(~mask, float("-inf"))
        # A row of only -inf would softmax to NaN: give empty rows finite scores instead.
        scores = scores.masked_fill(~has_tokens[:, None], 0.0)
        weights = torch.softmax(scores, dim=1) * mask
        pooled = torch.einsum("nl,nlh->nh", weights.to(states.dtype), states)
        vectors = self.projection(self.dropout(pooled))
        return vectors * has_tokens[:, None].to(vectors.dtype), has_tokens

    def token_states(self, token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(states (n, T, 2 * hidden), mask (n, T))``, trimmed to the longest row.

        Args:
            token_ids: (n, L) int64 ids, right-padded with 0 (as ``Vocabulary.encode`` makes).
        """
        mask = token_ids != PAD_ID
        lengths = mask.sum(dim=1)
        steps = int(lengths.max()) if token_ids.shape[0] else 0
        # Padding after the longest row changes nothing: drop it before the recurrence.
        token_ids, mask = token_ids[:, :steps], mask[:, :steps]
        if steps == 0:
            return torch.zeros((token_ids.shape[0], 0, 2 * self.hidden_size), device=token_ids.device), mask
        embedded = self.dropout(self.embedding(token_ids))
        forward_states, _ = self.forward_rnn(embedded)
        reverse = _reverse_index(lengths, steps)
        backward_states, _ = self.backward_rnn(_gather_steps(embedded, reverse))
        return torch.cat([forward_states, _gather_steps(backward_states, reverse)], dim=-1), mask


def _reverse_index(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Return (n, steps) indices that reverse each row's first ``length`` steps in place."""
    positions = torch.arange(steps, device=lengths.device).expand(lengths.shape[0], steps)
    reversed_positions = lengths[:, None] - 1 - positions
    return torch.where(reversed_positions >= 0, reversed_positions, positions)


def _gather_steps(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))
