"""The lexical channel: text-pipeline tokens -> hashed sparse BM25 vectors, and the hybrid score.

Pure Python and numpy (scipy for whole-catalog matrices), imports no Django. The worker
computes a document's weights when it writes its dense vectors; the web process computes a
text query's weights (the same tokens, the same hashing); offline evaluation scores whole
catalogs with the same functions (``benchmarks/lexical_weight.py``).

Scoring is BM25 split in two halves so that stored vectors never depend on how many items
carry a token:

- a document stores, per token, the saturated term frequency
  ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / avgdl))`` (no IDF);
- the query side multiplies its own weights by the token's IDF,
  ``ln(1 + (n - df + 0.5) / (df + 0.5))``, read from the live document frequencies at query time.

``lexical(q, d) = sum_t idf(t) * q_t * d_t`` is then one inner product between the stored
vector and the IDF-weighted query vector (pgvector's ``<#>`` on ``sparsevec``). Divided by the
query's self-score ``sum_t idf(t) * q_t * q_t``, a copy of the query scores 1 on every catalog,
so the weight ``w`` of ``(1 - w) * dense_cosine + w * lexical`` means the same everywhere.

Tokens are hashed (BLAKE2b, stable across processes and Python versions) into ``DIM``
buckets; a catalog's vocabulary is a few hundred thousand tokens at most, so collisions
between two tokens of one catalog are rare and only ever add a small spurious match.
Bigrams of adjacent tokens (joined by a space, which no token contains) are optional.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from similarity.ml.evaluation import top_neighbours

__all__ = [
    "DIM",
    "MAX_NONZERO",
    "Bm25",
    "term_index",
    "terms",
    "idf",
    "combine",
    "mean_length",
    "document_frequencies",
    "normalised_scores",
]

# pgvector's sparsevec takes up to 1,000,000,000 dimensions; 2**29 keeps well inside it.
DIM = 2**29
# pgvector's HNSW index on sparsevec takes vectors with up to 1,000 non-zero elements.
MAX_NONZERO = 1000


def term_index(term: str) -> int:
    """Return the stable 0-based bucket of ``term`` in ``[0, DIM)``."""
    digest = hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % DIM


def terms(tokens: Sequence[str], ngrams: int = 1) -> list[str]:
    """Return the tokens followed by their adjacent pairs (``ngrams=2``), in text order."""
    if ngrams not in (1, 2):
        raise ValueError(f"ngrams must be 1 or 2, got {ngrams}.")
    pairs = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])] if ngrams == 2 else []
    return list(tokens) + pairs


def idf(df: np.ndarray | float, n: int) -> np.ndarray:
    """BM25's IDF, ``ln(1 + (n - df + 0.5) / (df + 0.5))``: always positive."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((max(n, 0) - df + 0.5) / (df + 0.5))


def combine(dense: np.ndarray | float, lexical: np.ndarray | float, weight: float) -> np.ndarray:
    """The hybrid score ``(1 - weight) * dense + weight * lexical`` (both about 0..1)."""
    return (1.0 - weight) * np.asarray(dense) + weight * np.asarray(lexical)


@dataclass(frozen=True)
class Bm25:
    """BM25 parameters and the weights they give.

    Args:
        k1: term-frequency saturation (0: a token counts once however often it repeats).
        b: length normalisation (0: none, 1: full, relative to ``avgdl``).
        ngrams: 1 for tokens, 2 for tokens and adjacent token pairs.
    """

    k1: float = 1.2
    b: float = 0.75
    ngrams: int = 1

    def __post_init__(self) -> None:
        if not (self.k1 >= 0 and 0 <= self.b <= 1 and self.ngrams in (1, 2)):
            raise ValueError(f"BM25 needs k1 >= 0, 0 <= b <= 1 and ngrams 1 or 2, got {self}.")

    def document(self, tokens: Sequence[str], avgdl: float | None = None) -> dict[int, float]:
        """Return ``{bucket: saturated tf}`` of a document (its ``MAX_NONZERO`` largest).

        Args:
            tokens: the text pipeline's tokens of the document.
            avgdl: the catalog's mean document length in terms (``None`` or 0: this
                document's own length, i.e. no length normalisation).
        """
        counts = Counter(terms(tokens, self.ngrams))
        if not counts:
            return {}
        length = sum(counts.values())
        norm = length / avgdl if avgdl else 1.0
        denominator = self.k1 * (1.0 - self.b + self.b * norm)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = term_index(term)
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1.0) / (tf + denominator)
        if len(weights) > MAX_NONZERO:  # keep the strongest terms; ties by bucket, deterministic
            kept = sorted(weights.items(), key=lambda item: (-item[1], item[0]))[:MAX_NONZERO]
            weights = dict(kept)
        return weights

    def query(self, weights: Mapping[int, float], df: Mapping[int, int], n: int) -> dict[int, float]:
        """Return the IDF-weighted query vector for a document's (or a query's) ``weights``."""
        return {i: float(w * idf(df.get(i, 0), n)) for i, w in weights.items()}

    def matrix(self, documents: Iterable[Sequence[str]], avgdl: float | None = None):
        """Return many documents' weights as a scipy CSR matrix over compact columns (offline use).

        Returns:
            (matrix (n, v), buckets (v,)): column ``j`` holds bucket ``buckets[j]``; buckets
            ascending, so rows keep the order a stored vector has.
        """
        from scipy import sparse

        rows = [self.document(tokens, avgdl) for tokens in documents]
        buckets = np.unique(np.fromiter((i for row in rows for i in row), np.int64))
        column = {int(b): j for j, b in enumerate(buckets)}
        indptr, indices, values = [0], [], []
        for weights in rows:
            for i in sorted(weights):
                indices.append(column[i])
                values.append(weights[i])
            indptr.append(len(indices))
        shape = (len(rows), len(buckets))
        matrix = sparse.csr_matrix((np.asarray(values, np.float64), np.asarray(indices, np.int64), indptr), shape=shape)
        return matrix, buckets


def mean_length(documents: Iterable[Sequence[str]], ngrams: int = 1) -> float:
    """Return the mean number of terms per document (BM25's ``avgdl``), 0.0 for none."""
    lengths = [len(terms(tokens, ngrams)) for tokens in documents]
    return float(np.mean(lengths)) if lengths else 0.0


def document_frequencies(matrix) -> np.ndarray:
    """Return how many rows of the CSR ``matrix`` hold each of its columns (offline use)."""
    return np.bincount(matrix.indices, minlength=matrix.shape[1])


def normalised_scores(queries, documents, df: np.ndarray, n: int) -> np.ndarray:
    """Return the (q, d) lexical scores, each row divided by its query's self-score.

    What the read path computes in SQL, for whole catalogs at once (offline use).

    Args:
        queries: (q, v) CSR of the queries' document weights (``Bm25.matrix`` rows).
        documents: (d, v) CSR of the documents' weights, same columns.
        df: (v,) document frequency of each column.
        n: number of documents the frequencies count.
    """
    weighted = queries.tocsr(copy=True)
    weighted.data = weighted.data * idf(np.asarray(df)[weighted.indices], n)
    raw = (weighted @ documents.T).toarray()
    self_score = np.asarray(weighted.multiply(queries).sum(axis=1)).ravel()
    safe = np.where(self_score > 0, self_score, 1.0)
    return np.where(self_score[:, None] > 0, raw / safe[:, None], 0.0)


def hybrid_neighbours(
    vectors: np.ndarray, valid: np.ndarray, queries: np.ndarray, lexical, weight: float, *, k: int = 10, chunk: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours by the served hybrid score (offline: a training run's guard).

    ``(1 - weight) * cosine + weight * lexical``, the lexical score divided by the query's
    self-score, as the read path orders them; each query itself excluded.

    Args:
        vectors: (n, d) unit dense rows.
        valid: (n,) bool, rows that have a vector (others are neither queries nor neighbours).
        queries: (n,) bool, rows to query with.
        lexical: ``(matrix, df, n)``: every row's BM25 weights (``Bm25.matrix``), the
            columns' document frequencies and the number of documents they count.
        weight: the lexical weight ``w``.

    Returns:
        (query row indices (q,), neighbour row indices (q, k) best first).
    """
    matrix, df, count = lexical
    query_idx = np.flatnonzero(queries & valid)
    gallery = np.flatnonzero(valid)
    if len(query_idx) == 0 or len(gallery) < 2:
        return query_idx[:0], np.zeros((0, k), dtype=int)
    dense_gallery = np.ascontiguousarray(vectors[gallery].T, dtype=np.float32)
    documents = matrix[gallery]
    found = []
    for start in range(0, len(query_idx), chunk):
        rows = query_idx[start : start + chunk]
        scores = combine(vectors[rows] @ dense_gallery, normalised_scores(matrix[rows], documents, df, count), weight)
        found.append(top_neighbours(scores, rows, gallery, k))
    return query_idx, np.concatenate(found)
