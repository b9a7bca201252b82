"""Clusters of product vectors turned into category suggestions for merchandisers (no Django).

Runs wherever the caller runs it (the training/clustering worker queue, a management command,
a benchmark): numpy arrays in, plain Python dataclasses out (except ``ClusterFit.centres``, a
numpy array, so it can go straight into a vector column).

Three steps, also chained by :func:`cluster_catalog`:

1. :func:`fit_clusters` fits on a sample of the catalog's L2-normalised vectors: k-means on
   the sample's first ``reduce_dims`` (128) principal components, where the squared euclidean
   distance of unit rows is ``2 - 2 cos`` (renormalised after the projection), so k-means groups
   by cosine. ``k`` is the candidate with the best cosine silhouette, computed exactly in
   O(n k d) (see :func:`cosine_silhouette`), searched with full k-means (10 k-means++ starts
   per candidate: with 3 or 4 the silhouette curve of real catalogs is so noisy that the
   chosen k jumps between seeds) on at most ``search_sample`` rows; the chosen k is then
   refitted on the whole sample (full k-means up to ``SMALL`` rows, MiniBatchKMeans above).
   The centres it returns are each cluster's unit mean in the vectors' own space, and
   :meth:`ClusterModel.assign` gives any row, sampled or not, its nearest centre by cosine,
   in chunks wherever the rows are read (the worker streams a million from the database).
   ``method="graph"`` instead takes the Louvain communities of the cosine 15-nearest-neighbour
   graph of the search rows (k comes out of the graph, no search; needs networkx): on
   flipkart1050 it reaches NMI 0.723 against level 2 where the silhouette k gave 0.700 in
   the full space (0.736 on the principal components), on zh-titles 0.731 against 0.764.
   :func:`choose_k_and_cluster` does both for an in-memory array.
2. :func:`describe` gives each cluster its members (nearest the centre first), keywords (the
   tokens that set its texts apart from the other clusters' texts, by TF-IDF with one
   "document" per cluster), a name, its majority category and purity.
3. :func:`suggest` turns clusters into reviewable suggestions: assign uncategorised products,
   move products whose category disagrees with a clear majority, or create a category for a
   cluster no existing category explains.

Cost: the fit depends on the sample, not the catalog (about 8 s for flipkart1050's 1,050
products, where the k search in the full 1,792 dimensions with threaded BLAS took minutes on a
busy 2-core machine); assignment and description are linear in n. The numbers per catalog
size, through the worker's code path, are in docs/BENCHMARKS.md ("Clustering at scale").
Memory: the sample (20,000 x d float32) plus O(sample x k), and whatever the caller holds.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from similarity.ml.taxonomy import LABELS

__all__ = [
    "Cluster",
    "ClusterFit",
    "ClusterModel",
    "ClusteringResult",
    "Suggestion",
    "choose_k_and_cluster",
    "cluster_catalog",
    "cosine_silhouette",
    "default_k_candidates",
    "describe",
    "fit_clusters",
    "suggest",
]

SMALL = 5000  # up to this many fitted rows, full k-means; above it, mini-batches
SEARCH_ROWS = 5000  # rows the k search runs on
SEARCH_INITS = 10
MAX_K = 200
CRITERION = "silhouette (cosine)"
GRAPH_CRITERION = "modularity (kNN graph)"
GRAPH_NEIGHBOURS = 15
REDUCED_DIMS = 128  # principal components the k-means fits run on
ASSIGN_CHUNK = 8192


@dataclass
class ClusterFit:
    """Cluster index per row, unit-norm centres, the chosen k and the score of each candidate."""

    labels: list[int]
    centres: np.ndarray
    k: int
    scores: dict[int, float]
    criterion: str = CRITERION
    method: str = "kmeans"
    sample_size: int = 0
    search_size: int = 0
    seconds: float = 0.0
    distances: np.ndarray | None = None  # each row's cosine distance to its centre


@dataclass
class ClusterModel:
    """Fitted clusters: unit centres in the vectors' space, and how k was chosen."""

    centres: np.ndarray
    scores: dict[int, float]
    criterion: str
    method: str
    sample_size: int
    search_size: int
    seconds: float

    @property
    def k(self) -> int:
        return len(self.centres)

    def assign(self, vectors: np.ndarray, *, unit: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Each row's nearest centre by cosine and its cosine distance (rows read in chunks)."""
        labels = np.empty(len(vectors), dtype=np.int64)
        distances = np.empty(len(vectors), dtype=np.float32)
        for start in range(0, len(vectors), ASSIGN_CHUNK):
            rows = vectors[start : start + ASSIGN_CHUNK]
            sims = (rows if unit else _unit_rows(rows)) @ self.centres.T
            best = np.argmax(sims, axis=1)
            labels[start : start + len(rows)] = best
            distances[start : start + len(rows)] = np.maximum(1.0 - sims[np.arange(len(rows)), best], 0.0)
        return labels, distances


@dataclass
class Cluster:
    """One cluster: members nearest the centre first, keywords, name and category make-up."""

    index: int
    members: list[int]
    distances: list[float]
    keywords: list[str]
    name: str
    majority_label: str
    purity: float
    size: int
    labelled: int
    majority_count: int
    label_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Suggestion:
    """A change a merchandiser can accept or reject.

    ``kind`` is "assign" (uncategorised members -> ``target_label``), "move" (members in
    ``source_label`` -> ``target_label``) or "create" (a new category ``name`` under
    ``parent``, "" = top level; ``target_label`` is the path it would have).
    """

    kind: str
    cluster: int
    members: list[int]
    source_label: str
    target_label: str
    name: str
    parent: str
    text: str


@dataclass
class ClusteringResult:
    """What :func:`cluster_catalog` returns: the fit, the described clusters, the suggestions."""

    fit: ClusterFit
    clusters: list[Cluster]
    suggestions: list[Suggestion]
    seconds: dict[str, float] = field(default_factory=dict)


#: The options each step takes, by step: ``SIMILARITY["CLUSTERING"]`` and
#: :func:`cluster_catalog` take any of them (``sample`` is the fitting sample's size).
OPTIONS = {
    "fit": frozenset({
        "k", "k_candidates", "sample", "seed", "search_sample", "n_init",
        "method", "graph_neighbours", "resolution", "reduce_dims",
    }),
    "describe": frozenset({"keywords", "name_words"}),
    "suggest": frozenset({"min_size", "min_purity", "min_votes", "max_stray_share", "create_min_unlabelled"}),
}
ALL_OPTIONS = frozenset().union(*OPTIONS.values())


def members(assigned: np.ndarray, k: int) -> list[np.ndarray]:
    """The row numbers of each cluster 0..k-1 (in row order), from one sort of ``assigned``."""
    assigned = np.asarray(assigned)
    by_cluster = np.argsort(assigned, kind="stable")
    return np.split(by_cluster, np.cumsum(np.bincount(assigned, minlength=k))[:-1])


def default_k_candidates(n: int, *, points: int = 16) -> list[int]:
    """Return a geometric grid of k from 2 to ``min(200, 4 sqrt(n/2), n-1)``.

    ``sqrt(n/2)`` is the usual rule of thumb for the number of clusters; the grid reaches four
    times that (merchandising categories are small) and always starts at 2.
    """
    top = int(min(MAX_K, n - 1, max(2, round(4 * math.sqrt(n / 2)))))
    if top < 2:
        return []
    return sorted({int(round(k)) for k in np.geomspace(2, top, points)})


def choose_k_and_cluster(
    vectors: np.ndarray,
    *,
    k: int | None = None,
    k_candidates: Sequence[int] | None = None,
    sample: int = 20000,
    seed: int = 0,
    search_sample: int = SEARCH_ROWS,
    n_init: int = SEARCH_INITS,
    method: str = "kmeans",
    graph_neighbours: int = GRAPH_NEIGHBOURS,
    resolution: float = 1.0,
    reduce_dims: int | None = REDUCED_DIMS,
) -> ClusterFit:
    """Cluster the rows of ``vectors``: k-means with k by cosine silhouette, or graph communities.

    Args:
        vectors: (n, d) float array, one row per product; rows are L2-normalised here and must
            not be zero (drop products without a vector first).
        k: use this number of clusters (no search; its silhouette is still reported).
        k_candidates: the grid to search (default :func:`default_k_candidates` of the search
            rows); values outside 2..search rows - 1 are dropped.
        sample: fit on a random sample of at most this many rows (:func:`fit_clusters`), then
            give every row its nearest centre (:meth:`ClusterModel.assign`).
        seed: random seed for the samples and k-means.
        search_sample: search k on a random subset of at most this many of the sampled rows:
            full k-means with ``n_init`` starts per candidate, silhouette on the same rows.
        n_init: k-means++ starts per candidate (the best inertia is kept); fewer starts make
            the silhouette curve, hence the chosen k, noticeably noisier.
        method: "kmeans" (the k search above) or "graph": Louvain communities (modularity,
            ``resolution``) of the cosine ``graph_neighbours``-nearest-neighbour graph of the
            search rows, so k comes out of the graph with no search; every other row joins
            the community whose centre is nearest. Needs networkx. Ignored when ``k`` is given.
        graph_neighbours: neighbours per row in the graph ("graph" only).
        resolution: Louvain resolution ("graph" only); above 1 gives more, smaller clusters.
        reduce_dims: k-means runs on the sample's first ``reduce_dims`` principal components
            (None or 0: on the vectors themselves); the centres are in the vectors' own space.

    Returns:
        A :class:`ClusterFit`. Clusters left empty by the final assignment are dropped and the
        rest renumbered 0..k-1, so ``fit.k`` can be below the chosen candidate.

    Raises:
        ValueError: on an empty or non-finite input, a zero row, or no usable candidate.
    """
    started = time.perf_counter()
    X = _unit_rows(vectors)
    n = X.shape[0]
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    model = fit_clusters(
        X[fit_rows], k=k, k_candidates=k_candidates, seed=seed, search_sample=search_sample, n_init=n_init,
        method=method, graph_neighbours=graph_neighbours, resolution=resolution, reduce_dims=reduce_dims,
        unit=True,
    )
    assigned, distances = model.assign(X)
    present, labels = np.unique(assigned, return_inverse=True)
    return ClusterFit(
        labels=[int(x) for x in labels],
        centres=model.centres[present],
        k=len(present),
        scores=model.scores,
        criterion=model.criterion,
        method=model.method,
        sample_size=model.sample_size,
        search_size=model.search_size,
        seconds=round(time.perf_counter() - started, 3),
        distances=distances,
    )


def fit_clusters(
    sample: np.ndarray,
    *,
    k: int | None = None,
    k_candidates: Sequence[int] | None = None,
    seed: int = 0,
    search_sample: int = SEARCH_ROWS,
    n_init: int = SEARCH_INITS,
    method: str = "kmeans",
    graph_neighbours: int = GRAPH_NEIGHBOURS,
    resolution: float = 1.0,
    reduce_dims: int | None = REDUCED_DIMS,
    unit: bool = False,
) -> ClusterModel:
    """Fit the clusters on ``sample`` (a random sample of the catalog's vectors); see
    :func:`choose_k_and_cluster` for the options. ``unit``: the rows are already unit-norm.

    The k search and the k-means fits run on the sample's first ``reduce_dims`` principal
    components (a 1,792-d catalog costs 14 times less per distance at 128); the returned
    centres are the unit means of each cluster's members in the vectors' own space, so that
    any row of the catalog, sampled or not, is assigned by cosine to them
    (:meth:`ClusterModel.assign`, in chunks, wherever the rows are read).
    """
    started = time.perf_counter()
    X = sample if unit else _unit_rows(sample)
    m = X.shape[0]
    rng = np.random.default_rng(seed)
    search_rows = np.sort(rng.choice(m, size=search_sample, replace=False)) if m > search_sample else np.arange(m)
    s = len(search_rows)
    if method not in ("kmeans", "graph"):
        raise ValueError(f'unknown clustering method {method!r}: choose "kmeans" or "graph".')
    if k is not None and not 1 <= k <= m:
        raise ValueError(f"k={k} is out of range: choose 1..{m} (the number of rows fitted).")
    if method == "graph" and k is None and s >= 3:
        found = _graph_communities(X[search_rows], graph_neighbours, resolution, seed)
        centres = _member_means(X[search_rows], found)
        k_found = len(centres)
        scores = {k_found: round(cosine_silhouette(X[search_rows], found), 6)} if 2 <= k_found <= s - 1 else {}
        return ClusterModel(
            centres=centres, scores=scores, criterion=GRAPH_CRITERION, method="louvain", sample_size=m,
            search_size=s, seconds=round(time.perf_counter() - started, 3),
        )

    from threadpoolctl import threadpool_limits

    # One thread: the k search is thousands of small products, where BLAS and OpenMP threads
    # cost more than they save (measured 7.9 s against 54 s for 1,050 products on a busy
    # 2-core machine); a worker process is one of several anyway.
    with threadpool_limits(limits=1):
        labels, scores, fitted = _search_and_fit(X, search_rows, k, k_candidates, n_init, seed, reduce_dims)
    return ClusterModel(
        centres=_member_means(X, labels), scores=scores, criterion=CRITERION, method=fitted, sample_size=m,
        search_size=s, seconds=round(time.perf_counter() - started, 3),
    )


def _search_and_fit(X, search_rows, k, k_candidates, n_init, seed, reduce_dims):
    """k by silhouette on the search rows (unless given), then the final fit on every row of
    X; returns each row's cluster, the scores per k and the algorithm of the final fit."""
    m, s = X.shape[0], len(search_rows)
    Z = _reduce(X, search_rows, reduce_dims, seed)
    Zq = Z[search_rows]
    models = {}
    scores: dict[int, float] = {}
    if k is not None:
        chosen = k
    else:
        wanted = default_k_candidates(s) if k_candidates is None else sorted({int(c) for c in k_candidates})
        candidates = [c for c in wanted if 2 <= c <= s - 1]
        if not candidates and (s >= 3 or k_candidates is not None):
            raise ValueError(f"no usable k in {list(wanted)}: with {s} rows, k must be within 2..{s - 1}.")
        for c in candidates:
            models[c] = _kmeans(c, n_init, seed).fit(Zq)
            scores[c] = round(cosine_silhouette(Zq, models[c].labels_), 6)
        chosen = max(scores, key=lambda c: (scores[c], -c)) if scores else 1  # < 3 rows: one cluster

    start = models[chosen].cluster_centers_ if chosen in models else None
    if chosen in models and m == s:
        model, fitted = models[chosen], "kmeans"
    elif m <= SMALL:
        model, fitted = _kmeans(chosen, n_init, seed, start).fit(Z), "kmeans"
    else:
        model, fitted = _minibatch_kmeans(chosen, seed, start).fit(Z), "minibatch-kmeans"
    labels = model.predict(Z)
    if k is not None and 2 <= k <= s - 1:
        scores[k] = round(cosine_silhouette(Zq, labels[search_rows]), 6)
    return labels, scores, fitted


def _reduce(X: np.ndarray, rows: np.ndarray, dims: int | None, seed: int) -> np.ndarray:
    """The unit rows of X on the first ``dims`` principal components of ``X[rows]`` (X when that
    would not reduce anything)."""
    # float64: scikit-learn's k-means++ computes float32 distances through a slow upcasting path.
    if not dims or X.shape[1] <= dims or len(rows) <= dims:
        return X.astype(np.float64)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=dims, svd_solver="randomized", random_state=seed).fit(X[rows])
    Z = pca.transform(X).astype(np.float64)
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms == 0, 1, norms)


def _member_means(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The unit mean of each non-empty cluster's rows, clusters in label order."""
    present, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(present), X.shape[1]), np.float64)
    np.add.at(sums, inverse, X.astype(np.float64))
    return _unit_rows(sums.astype(np.float32), allow_zero=True)


def _graph_communities(Xq: np.ndarray, neighbours: int, resolution: float, seed: int) -> np.ndarray:
    """The Louvain community of each row of ``Xq`` in its cosine nearest-neighbour graph."""
    try:
        import networkx as nx
    except ImportError as exc:
        raise ImportError(
            'method="graph" needs networkx: pip install networkx, or cluster with method="kmeans".'
        ) from exc
    s = len(Xq)
    depth = min(neighbours, s - 1)
    graph = nx.Graph()
    graph.add_nodes_from(range(s))
    for start in range(0, s, 1024):
        sims = Xq[start : start + 1024] @ Xq.T
        rows = np.arange(start, min(start + 1024, s))
        sims[rows - start, rows] = -np.inf  # no self loops
        top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
        for i, columns in zip(rows, top):
            weights = sims[i - start, columns]
            graph.add_weighted_edges_from(
                (int(i), int(j), float(w)) for j, w in zip(columns, weights) if w > 0  # cos <= 0: no tie
            )
    communities = nx.community.louvain_communities(graph, weight="weight", resolution=resolution, seed=seed)
    found = np.empty(s, dtype=np.int64)
    for c, members in enumerate(sorted(communities, key=min)):  # numbered by first member: stable
        found[sorted(members)] = c
    return found


def cosine_silhouette(vectors: np.ndarray, labels: Sequence[int], *, chunk: int = 4096) -> float:
    """Return the mean silhouette with cosine distance of unit ``vectors`` under ``labels``.

    With unit rows, the mean cosine distance from x to a set S is ``1 - x . mean(S)``, so the
    silhouette needs cluster sums, not pairwise distances: O(n k d) instead of O(n^2 d). Same
    conventions as ``sklearn.metrics.silhouette_score(metric="cosine")``: a point alone in its
    cluster scores 0.
    """
    X = np.asarray(vectors)
    labels = np.asarray(labels)
    _, labels = np.unique(labels, return_inverse=True)
    k = int(labels.max()) + 1 if len(labels) else 0
    if not 2 <= k <= len(labels) - 1:
        raise ValueError(f"the silhouette needs 2..n-1 clusters; got {k} clusters for {len(labels)} rows.")
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    sums = np.zeros((k, X.shape[1]), np.float64)
    np.add.at(sums, labels, X.astype(np.float64))
    total = 0.0
    for start in range(0, len(labels), chunk):
        rows = slice(start, start + chunk)
        own = labels[rows]
        dots = X[rows].astype(np.float64) @ sums.T
        n_own = counts[own]
        idx = np.arange(len(own))
        a = (n_own - dots[idx, own]) / np.maximum(n_own - 1, 1)
        other = 1.0 - dots / counts
        other[idx, own] = np.inf
        b = other.min(axis=1)
        denom = np.maximum(a, b)
        s = np.where((n_own > 1) & (denom > 0), (b - a) / np.where(denom > 0, denom, 1), 0.0)
        total += float(s.sum())
    return total / len(labels)


def describe(
    fit: ClusterFit,
    vectors: np.ndarray | None,
    texts: Sequence[str],
    labels: Sequence[str],
    tokenize: Callable[[str], list[str]],
    *,
    keywords: int = 10,
    name_words: int = 3,
) -> list[Cluster]:
    """Describe each cluster of ``fit``: members, keywords, name, majority category, purity.

    Args:
        fit: the result of :func:`choose_k_and_cluster` on the same rows.
        vectors: the (n, d) vectors that were clustered (for distances to the centres), or
            None to take the distances ``fit`` carries.
        texts: one text per row (title, brand, description...), Chinese or English; None
            for a row whose text was not read (its cluster's keywords come from the others).
        labels: one category path per row ("A > B"), "" when uncategorised.
        tokenize: text -> tokens, e.g. ``similarity.ml.text_pipeline.tokenize``.
        keywords: how many keywords to keep per cluster.
        name_words: how many keywords (at most) make the name.

    Keywords: each cluster is one TF-IDF document made of its members' distinct tokens (a
    long description repeating a word counts once), so a token's term frequency is the number
    of members using it and its weight ``members using it x ln(k / clusters using it)``: a
    token every cluster uses weighs nothing. Tokens without a letter (prices, sizes) are left
    out. The name is the top keywords, skipping one contained in (or containing) an earlier one.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    assigned = np.asarray(fit.labels)
    n = len(assigned)
    if vectors is None:
        if fit.distances is None or len(fit.distances) != n:
            raise ValueError("without vectors, fit.distances must hold each row's distance to its centre.")
        all_distances = np.asarray(fit.distances)
    else:
        X = _unit_rows(vectors)
        if X.shape[0] != n:
            raise ValueError("fit.labels, vectors, texts and labels must have one entry per row, in the same order.")
        all_distances = np.maximum(1.0 - np.einsum("ij,ij->i", X, fit.centres[assigned]), 0.0)
    if len(texts) != n or len(labels) != n:
        raise ValueError("fit.labels, vectors, texts and labels must have one entry per row, in the same order.")
    groups = members(assigned, fit.k)

    def analyse(member_texts: list[str]) -> list[str]:
        return [t for text in member_texts for t in dict.fromkeys(tokenize(text or "")) if _is_word(t)]

    # A text of None: not read (a large catalog reads the texts of a sample of each cluster).
    docs = [[texts[i] for i in rows if texts[i] is not None] for rows in groups]
    vectorizer = TfidfVectorizer(analyzer=analyse, smooth_idf=False, norm=None)
    try:
        weights = vectorizer.fit_transform(docs).tocsr()
        vocabulary = vectorizer.get_feature_names_out()
        idf = vectorizer.idf_
    except ValueError:  # no cluster has a single word
        weights, vocabulary, idf = None, np.array([]), np.array([])

    clusters = []
    for c, rows in enumerate(groups):
        distances = all_distances[rows]
        order = np.argsort(distances, kind="stable")
        words = _top_words(weights, vocabulary, idf, c, keywords) if weights is not None else []
        member_labels = [labels[i] for i in rows if labels[i]]
        counts = Counter(member_labels)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        majority, majority_count = ranked[0] if ranked else ("", 0)
        clusters.append(
            Cluster(
                index=c,
                members=[int(i) for i in rows[order]],
                distances=np.round(distances[order].astype(np.float64), 6).tolist(),
                keywords=words,
                name=_name(words, name_words),
                majority_label=majority,
                purity=round(majority_count / len(member_labels), 4) if member_labels else 0.0,
                size=len(rows),
                labelled=len(member_labels),
                majority_count=majority_count,
                label_counts=dict(ranked),
            )
        )
    return clusters


def suggest(
    clusters: Sequence[Cluster],
    labels: Sequence[str],
    *,
    min_size: int = 3,
    min_purity: float = 0.6,
    min_votes: int = 2,
    max_stray_share: float = 0.5,
    create_min_unlabelled: float = 0.5,
) -> list[Suggestion]:
    """Turn clusters into "assign", "move" and "create" suggestions, cluster by cluster.

    A cluster of at least ``min_size`` members has a clear majority B when at least
    ``min_purity`` of its labelled members, and at least ``min_votes`` of them, carry B. Then:
    its uncategorised members -> "assign" to B; its members labelled A != B -> one "move" per A,
    but only when A's products are strays here: the cluster holds at most ``max_stray_share``
    of all products labelled A (otherwise the cluster merged A with B, and A is no mistake),
    and A is not below B in the tree ("B > x" is already in B). Without a clear majority, when
    at least ``create_min_unlabelled`` of the members are uncategorised -> "create" a category
    named after the cluster for all its members, under the parent path most of its labelled
    members share (top level when none are labelled). A cluster of categorised products with
    no majority is left alone: it mixes categories the shop already chose (on a fully
    categorised demo catalog every "create" it gave was noise). Smaller clusters give no
    suggestion.
    """
    totals = Counter(label for label in labels if label)
    suggestions: list[Suggestion] = []
    for cluster in clusters:
        if cluster.size < min_size:
            continue
        target = cluster.majority_label
        clear = bool(target) and cluster.purity >= min_purity and cluster.majority_count >= min_votes
        if not clear:
            if cluster.size - cluster.labelled < create_min_unlabelled * cluster.size:
                continue
            parent = _common_parent([labels[i] for i in cluster.members if labels[i]])
            where = f'"{parent}"' if parent else "the top level"
            suggestions.append(
                Suggestion(
                    kind="create",
                    cluster=cluster.index,
                    members=list(cluster.members),
                    source_label="",
                    target_label=LABELS.child(parent, cluster.name),
                    name=cluster.name,
                    parent=parent,
                    text=f'Create new category "{cluster.name}" under {where} for these '
                    f"{_products(cluster.size)}.",
                )
            )
            continue
        unlabelled = [i for i in cluster.members if not labels[i]]
        if unlabelled:
            suggestions.append(
                Suggestion(
                    kind="assign",
                    cluster=cluster.index,
                    members=unlabelled,
                    source_label="",
                    target_label=target,
                    name=cluster.name,
                    parent="",
                    text=f'Assign these {_products(len(unlabelled), "uncategorised")} to "{target}" '
                    f'({cluster.purity:.0%} of the {cluster.labelled} categorised products like them are there).',
                )
            )
        strays: dict[str, list[int]] = {}
        for i in cluster.members:
            source = labels[i]
            if source and source != target and not LABELS.is_within(source, target):
                strays.setdefault(source, []).append(i)
        strays = {source: rows for source, rows in strays.items() if len(rows) <= max_stray_share * totals[source]}
        for source, rows in sorted(strays.items(), key=lambda item: (-len(item[1]), item[0])):
            suggestions.append(
                Suggestion(
                    kind="move",
                    cluster=cluster.index,
                    members=rows,
                    source_label=source,
                    target_label=target,
                    name=cluster.name,
                    parent="",
                    text=f'Move these {_products(len(rows))} from "{source}" to "{target}".',
                )
            )
    return suggestions


def cluster_catalog(
    vectors: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    tokenize: Callable[[str], list[str]],
    **options,
) -> ClusteringResult:
    """Cluster, describe and suggest in one call; ``options`` go to the step that takes them.

    Options: ``k``, ``k_candidates``, ``sample``, ``seed``, ``search_sample``, ``n_init``,
    ``method``, ``graph_neighbours``, ``resolution``, ``reduce_dims`` (:func:`choose_k_and_cluster`);
    ``keywords``, ``name_words`` (:func:`describe`); ``min_size``, ``min_purity``,
    ``min_votes``, ``max_stray_share``, ``create_min_unlabelled`` (:func:`suggest`).
    """
    unknown = set(options) - ALL_OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}: choose from {sorted(ALL_OPTIONS)}.")
    pick = {step: {key: options[key] for key in names if key in options} for step, names in OPTIONS.items()}
    seconds = {}
    started = time.perf_counter()
    fit = choose_k_and_cluster(vectors, **pick["fit"])
    seconds["fit"] = round(time.perf_counter() - started, 3)
    started = time.perf_counter()
    clusters = describe(fit, vectors, texts, labels, tokenize, **pick["describe"])
    seconds["describe"] = round(time.perf_counter() - started, 3)
    suggestions = suggest(clusters, labels, **pick["suggest"])
    return ClusteringResult(fit=fit, clusters=clusters, suggestions=suggestions, seconds=seconds)


def _unit_rows(vectors: np.ndarray, *, allow_zero: bool = False) -> np.ndarray:
    X = np.asarray(vectors, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, d) array of vectors, got shape {X.shape}.")
    if not np.isfinite(X).all():
        raise ValueError("vectors contain NaN or infinity: re-encode those products before clustering.")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if not allow_zero and (norms == 0).any():
        bad = np.flatnonzero(norms[:, 0] == 0)[:5].tolist()
        raise ValueError(f"rows {bad}... are zero vectors: drop products without a vector before clustering.")
    return X / np.where(norms == 0, 1, norms)


def _kmeans(k: int, n_init: int, seed: int, start: np.ndarray | None = None):
    from sklearn.cluster import KMeans

    if start is not None:
        return KMeans(n_clusters=k, init=start, n_init=1, random_state=seed)
    return KMeans(n_clusters=k, n_init=n_init if k > 1 else 1, random_state=seed)


def _minibatch_kmeans(k: int, seed: int, start: np.ndarray | None = None):
    from sklearn.cluster import MiniBatchKMeans

    init = "k-means++" if start is None else start
    return MiniBatchKMeans(
        n_clusters=k, init=init, n_init=3 if start is None else 1, batch_size=2048, max_no_improvement=10,
        random_state=seed,
    )


def _is_word(token: str) -> bool:
    return any(ch.isalpha() for ch in token)


def _top_words(weights, vocabulary: np.ndarray, idf: np.ndarray, row: int, top: int) -> list[str]:
    start, end = weights.indptr[row], weights.indptr[row + 1]
    columns, values = weights.indices[start:end], weights.data[start:end]
    if not len(columns):
        return []
    tf = values / idf[columns]
    distinct = tf * (idf[columns] - 1.0)  # smooth_idf=False: idf - 1 = ln(k / df)
    if not np.any(distinct > 0):  # one cluster, or nothing sets it apart: most used tokens
        distinct = tf
    order = sorted(range(len(columns)), key=lambda j: (-distinct[j], -tf[j], vocabulary[columns[j]]))
    return [str(vocabulary[columns[j]]) for j in order[:top] if distinct[j] > 0]


def _name(words: list[str], size: int) -> str:
    chosen: list[str] = []
    for word in words:
        if len(chosen) == size:
            break
        if not any(word in other or other in word for other in chosen):
            chosen.append(word)
    return " ".join(chosen)


def _common_parent(labels: list[str]) -> str:
    parents = Counter(LABELS.parent(label) for label in labels)
    if not parents:
        return ""
    return sorted(parents.items(), key=lambda item: (-item[1], item[0]))[0][0]


def _products(count: int, adjective: str = "") -> str:
    noun = "product" if count == 1 else "products"
    return " ".join(part for part in (str(count), adjective, noun) if part)
