"""Clusters of product vectors turned into category suggestions for merchandisers (no Django).

Runs wherever the caller runs it (the training/clustering worker queue, a management command,
a benchmark): numpy arrays in, plain Python dataclasses out (except ``ClusterFit.centres``, a
numpy array, so it can go straight into a vector column).

Three steps, also chained by :func:`cluster_catalog`:

1. :func:`choose_k_and_cluster` runs k-means on L2-normalised vectors. On the unit sphere the
   squared euclidean distance is ``2 - 2 cos``, so euclidean k-means groups by cosine. ``k`` is
   the candidate with the best cosine silhouette, computed exactly in O(n k d) (see
   :func:`cosine_silhouette`). The search runs full k-means (10 k-means++ starts per
   candidate: with 3 or 4 the silhouette curve of real catalogs is so noisy that the chosen k
   jumps between seeds) on at most ``search_sample`` rows. The chosen k is then refitted from
   the search's centres on at most ``sample`` rows (full k-means up to ``SMALL`` rows,
   MiniBatchKMeans above) and every row is assigned with ``predict``. ``method="graph"``
   instead takes the Louvain communities of the cosine 15-nearest-neighbour graph of the
   search rows (k comes out of the graph, no search; needs networkx) and gives every other
   row the community with the nearest centre: on flipkart1050 it reaches NMI 0.723 against
   level 2 where the silhouette k gives 0.700, on zh-titles 0.731 against 0.764.
2. :func:`describe` gives each cluster its members (nearest the centre first), keywords (the
   tokens that set its texts apart from the other clusters' texts, by TF-IDF with one
   "document" per cluster), a name, its majority category and purity.
3. :func:`suggest` turns clusters into reviewable suggestions: assign uncategorised products,
   move products whose category disagrees with a clear majority, or create a category for a
   cluster no existing category explains.

Cost, measured with ``benchmarks/cluster_quality.py --timing 100000`` on one thread of a
2-core box shared with another job (docs/evaluation/clusters.md): 100,000 products take about
2 minutes with 512-d vectors (fit 84 s, describe 33 s) and 5 minutes with the 1,792-d fused
vectors (fit 282 s, describe 32 s). The k search (16 candidates, 2..200) dominates and does not
grow with the catalog, being capped at ``search_sample`` rows; passing ``k`` cuts the fit to
7 s / 24 s. ``predict`` and ``describe`` are linear in n. Memory: a float32 unit copy of the
vectors (700 MB for 100,000 x 1,792) plus O(sample x k).
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
    "ClusteringResult",
    "Suggestion",
    "choose_k_and_cluster",
    "cluster_catalog",
    "cosine_silhouette",
    "default_k_candidates",
    "describe",
    "suggest",
]

SMALL = 5000  # up to this many fitted rows, full k-means; above it, mini-batches
SEARCH_ROWS = 5000  # rows the k search runs on
SEARCH_INITS = 10
MAX_K = 200
CRITERION = "silhouette (cosine)"
GRAPH_CRITERION = "modularity (kNN graph)"
GRAPH_NEIGHBOURS = 15


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
) -> ClusterFit:
    """Cluster the rows of ``vectors``: k-means with k by cosine silhouette, or graph communities.

    Args:
        vectors: (n, d) float array, one row per product; rows are L2-normalised here and must
            not be zero (drop products without a vector first).
        k: use this number of clusters (no search; its silhouette is still reported).
        k_candidates: the grid to search (default :func:`default_k_candidates` of the search
            rows); values outside 2..search rows - 1 are dropped.
        sample: fit the final model on a random sample of at most this many rows, then assign
            every row to its nearest centre with ``predict``.
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
    m = len(fit_rows)
    search_rows = np.sort(rng.choice(fit_rows, size=search_sample, replace=False)) if m > search_sample else fit_rows
    Xq = X[search_rows]
    s = len(search_rows)

    if method not in ("kmeans", "graph"):
        raise ValueError(f'unknown clustering method {method!r}: choose "kmeans" or "graph".')
    if method == "graph" and k is None and s >= 3:
        return _graph_communities(X, Xq, search_rows, fit_rows, graph_neighbours, resolution, seed, started)

    models = {}
    scores: dict[int, float] = {}
    if k is not None:
        if not 1 <= k <= m:
            raise ValueError(f"k={k} is out of range: choose 1..{m} (the number of rows fitted).")
        chosen = k
    else:
        wanted = default_k_candidates(s) if k_candidates is None else sorted({int(c) for c in k_candidates})
        candidates = [c for c in wanted if 2 <= c <= s - 1]
        if not candidates and (s >= 3 or k_candidates is not None):
            raise ValueError(f"no usable k in {list(wanted)}: with {s} rows, k must be within 2..{s - 1}.")
        for c in candidates:
            models[c] = _kmeans(c, n_init, seed).fit(Xq)
            scores[c] = round(cosine_silhouette(Xq, models[c].labels_), 6)
        chosen = max(scores, key=lambda c: (scores[c], -c)) if scores else 1  # < 3 rows: one cluster

    if chosen in models and m == s:
        model, method = models[chosen], "kmeans"
    elif m <= SMALL:
        start = models[chosen].cluster_centers_ if chosen in models else None
        model, method = _kmeans(chosen, n_init, seed, start).fit(X[fit_rows]), "kmeans"
    else:
        start = models[chosen].cluster_centers_ if chosen in models else None
        model, method = _minibatch_kmeans(chosen, seed, start).fit(X[fit_rows]), "minibatch-kmeans"
    if k is not None and 2 <= k <= s - 1:
        scores[k] = round(cosine_silhouette(Xq, model.predict(Xq)), 6)
    assigned = model.predict(X)
    present, labels = np.unique(assigned, return_inverse=True)
    centres = _unit_rows(model.cluster_centers_[present], allow_zero=True)
    return ClusterFit(
        labels=[int(x) for x in labels],
        centres=centres,
        k=len(present),
        scores=scores,
        method=method,
        sample_size=m,
        search_size=s,
        seconds=round(time.perf_counter() - started, 3),
    )


def _graph_communities(X, Xq, search_rows, fit_rows, neighbours, resolution, seed, started) -> ClusterFit:
    try:
        import networkx as nx
    except ImportError as exc:
        raise ImportError(
            'method="graph" needs networkx: pip install networkx, or cluster with method="kmeans".'
        ) from exc
    s = len(search_rows)
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
    k = int(found.max()) + 1
    sums = np.zeros((k, X.shape[1]), np.float64)
    np.add.at(sums, found, Xq.astype(np.float64))
    centres = _unit_rows(sums, allow_zero=True)
    assigned = np.argmax(X @ centres.T, axis=1)
    assigned[search_rows] = found
    scores = {k: round(cosine_silhouette(Xq, found), 6)} if 2 <= k <= s - 1 else {}
    return ClusterFit(
        labels=[int(x) for x in assigned],
        centres=centres,
        k=k,
        scores=scores,
        criterion=GRAPH_CRITERION,
        method="louvain",
        sample_size=len(fit_rows),
        search_size=s,
        seconds=round(time.perf_counter() - started, 3),
    )


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
    vectors: np.ndarray,
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
        vectors: the (n, d) vectors that were clustered (for distances to the centres).
        texts: one text per row (title, brand, description...), Chinese or English.
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

    X = _unit_rows(vectors)
    assigned = np.asarray(fit.labels)
    if len(assigned) != X.shape[0] or len(texts) != X.shape[0] or len(labels) != X.shape[0]:
        raise ValueError("fit.labels, vectors, texts and labels must have one entry per row, in the same order.")
    groups = [np.flatnonzero(assigned == c) for c in range(fit.k)]

    def analyse(member_texts: list[str]) -> list[str]:
        return [t for text in member_texts for t in dict.fromkeys(tokenize(text or "")) if _is_word(t)]

    docs = [[texts[i] for i in rows] for rows in groups]
    vectorizer = TfidfVectorizer(analyzer=analyse, smooth_idf=False, norm=None)
    try:
        weights = vectorizer.fit_transform(docs).tocsr()
        vocabulary = vectorizer.get_feature_names_out()
        idf = vectorizer.idf_
    except ValueError:  # no cluster has a single word
        weights, vocabulary, idf = None, np.array([]), np.array([])

    clusters = []
    for c, rows in enumerate(groups):
        distances = 1.0 - X[rows] @ fit.centres[c]
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
                distances=[round(float(max(d, 0.0)), 6) for d in distances[order]],
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
    ``method``, ``graph_neighbours``, ``resolution`` (:func:`choose_k_and_cluster`);
    ``keywords``, ``name_words`` (:func:`describe`); ``min_size``, ``min_purity``,
    ``min_votes``, ``max_stray_share``, ``create_min_unlabelled`` (:func:`suggest`).
    """
    steps = {
        "fit": {
            "k", "k_candidates", "sample", "seed", "search_sample", "n_init",
            "method", "graph_neighbours", "resolution",
        },
        "describe": {"keywords", "name_words"},
        "suggest": {"min_size", "min_purity", "min_votes", "max_stray_share", "create_min_unlabelled"},
    }
    unknown = set(options) - set().union(*steps.values())
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}: choose from {sorted(set().union(*steps.values()))}.")
    pick = {step: {key: options[key] for key in names if key in options} for step, names in steps.items()}
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
