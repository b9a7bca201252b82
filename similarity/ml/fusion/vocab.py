"""Token vocabulary for the recurrent text branch: token strings <-> integer ids.

Pure Python, no torch and no Django; built once by the training loop and stored inside the
fusion checkpoint's ``config.json``, then used by the worker to turn tokenised product text
into the id matrix the model reads. Tokenising is the caller's job (the text pipeline).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1


class Vocabulary:
    """Map tokens to ids; id 0 is padding, id 1 stands for every unknown token.

    Args:
        tokens: the id-ordered token list, starting with ``<pad>`` and ``<unk>``.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tokens[:2] != [PAD, UNK]:
            raise ValueError(
                f"a vocabulary must start with {PAD!r} and {UNK!r}; build one with "
                "Vocabulary.build(token_lists) instead of passing tokens by hand."
            )
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary tokens must be unique; rebuild it with Vocabulary.build().")
        self.tokens = tokens
        self.ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        *,
        min_count: int = 2,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Build a vocabulary from tokenised texts, most frequent tokens first.

        Args:
            token_lists: one token list per text.
            min_count: tokens seen fewer times than this map to ``<unk>``.
            max_size: cap on the vocabulary size, ``<pad>`` and ``<unk>`` included;
                ``None`` keeps every token that passes ``min_count``.
        """
        if min_count < 1:
            raise ValueError(f"min_count must be at least 1, got {min_count}.")
        if max_size is not None and max_size < 2:
            raise ValueError(f"max_size must leave room for {PAD!r} and {UNK!r} (>= 2), got {max_size}.")
        counts = Counter(token for tokens in token_lists for token in tokens)
        counts.pop(PAD, None)
        counts.pop(UNK, None)
        # Count first, then the token itself: the same corpus always gives the same ids.
        kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max_size - 2]
        return cls([PAD, UNK, *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.ids

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.tokens == self.tokens

    def encode(self, tokens: Sequence[str], max_len: int, *, unique: bool = False) -> list[int]:
        """Return exactly ``max_len`` ids: the first tokens, then ``<pad>`` ids.

        Args:
            tokens: one text's tokens.
            max_len: length of the returned list.
            unique: keep only each token's first occurrence (see ``unique_tokens``).
        """
        if max_len < 1:
            raise ValueError(f"max_len must be at least 1, got {max_len}.")
        if unique:
            tokens = unique_tokens(tokens)
        ids = [self.ids.get(token, UNK_ID) for token in tokens[:max_len]]
        return ids + [PAD_ID] * (max_len - len(ids))

    def encode_batch(self, token_lists: Sequence[Sequence[str]], max_len: int, *, unique: bool = False) -> np.ndarray:
        """Return an (n, max_len) int64 id matrix, one padded row per token list."""
        out = np.zeros((len(token_lists), max_len), dtype=np.int64)
        for i, tokens in enumerate(token_lists):
            out[i] = self.encode(tokens, max_len, unique=unique)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (the id-ordered token list)."""
        return {"tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary written by ``to_dict``."""
        try:
            return cls(data["tokens"])
        except (KeyError, TypeError) as exc:
            raise ValueError(
                "not a serialised Vocabulary (expected {'tokens': [...]}): re-save the "
                "fusion checkpoint with FusionModel.save()."
            ) from exc


def unique_tokens(tokens: Sequence[str]) -> list[str]:
    """Keep each token's first occurrence, in order.

    Product descriptions repeat the title and boilerplate; deduplicating lets a fixed
    ``max_len`` window reach further into the text.
    """
    return list(dict.fromkeys(tokens))
