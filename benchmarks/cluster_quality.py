"""Category-suggestion accuracy and clustering quality on the real data sets.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/cluster_quality.py \
        [--data flipkart|zh|both] [--cache-dir /tmp/fusion-cache] [--timing 100000]

Protocol of ../shared/data/README.md: products whose sku hashes to the test split lose their
category; nothing below sees it except the scoring.

(a) Suggestion for held-out products: top-1 / top-3 accuracy of the similarity-weighted kNN
    vote of ``similarity/categories/suggestions.py`` (10 nearest labelled train products, weight
    max(cosine, 0)^16 summed per category cut to the level), on the fixed 30/70 fusion, the
    sentence encoder alone, the image encoder alone and TF-IDF (text pipeline tokens). Also,
    for reference, the same vote with (k, weight max(cosine, 0)^p) chosen by 7-fold
    cross-validation inside the train split (k in 1..30, p in 1, 4, 16, 32): the test split is
    scored once, with the chosen pair.
(b) Clusters: NMI and ARI of ``similarity.ml.clusters.choose_k_and_cluster`` against the
    categories of every product (and of the held-out ones only), with k chosen by silhouette
    (the default), by Louvain communities of the kNN graph (``method="graph"``) and with k
    fixed to the true number of categories (an oracle, for reference only).
(c) ``cluster_catalog`` with the held-out categories removed: how often its "assign"
    suggestions reach a held-out product and how often they are right; then 5 % of the train
    products get a random wrong category and we count how many a "move" flags.

flipkart1050 is scored at level 2 (headline) and 3 (leaf); zh-titles at level 3 (its leaves),
text only. Encoder features come from the same .npz cache as benchmarks/fusion_experiment.py
(computed on first use, 1-2 minutes for flipkart1050's photos). ``--timing N`` times the whole
clustering on N synthetic vectors (``--timing-dim``, default 512) with zh-titles texts.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

from similarity.ml.clusters import choose_k_and_cluster, cluster_catalog, describe, suggest  # noqa: E402
from similarity.ml.evaluation import category_at_level, is_held_out, tfidf_vectors  # noqa: E402
from similarity.ml.fusion.fixed import fuse  # noqa: E402

NEIGHBOURS = 10  # similarity.categories.suggestions.NEIGHBOURS and SHARPNESS (that module needs Django set up)
SHARPNESS = 16
VOTE_K = [1, 3, 5, 10, 20, 30]
VOTE_POWER = [1, 4, 16, 32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["flipkart", "zh", "both", "none"], default="both")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fusion-cache"))
    parser.add_argument("--timing", type=int, default=0, metavar="N", help="also time clustering N synthetic products")
    parser.add_argument("--timing-dim", type=int, default=512, metavar="D", help="vector size for --timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--learned", action="store_true",
        help="flipkart1050: also train the learned fusion on the train split's level-2 labels and score its vectors",
    )
    args = parser.parse_args()
    from similarity.ml.text_pipeline import tokenize

    if args.data in ("flipkart", "both"):
        run_flipkart(args, tokenize)
    if args.data in ("zh", "both"):
        run_zh(args, tokenize)
    if args.timing:
        run_timing(args, tokenize)


def run_flipkart(args: argparse.Namespace, tokenize) -> None:
    import fusion_experiment as fx

    csv_path = fx._dataset("flipkart1050")
    rows = fx._read(csv_path)
    features = fx._cached(args.cache_dir, "flipkart1050", csv_path, lambda: fx._flipkart_features(rows, csv_path))
    image, has_image, sentence = features["image"], features["has_image"], features["sentence"]
    fused = np.stack([
        fuse(i if hi else None, s, image_dim=i.size, text_dim=s.size, image_weight=0.3, text_weight=0.7)
        for i, hi, s in zip(image, has_image, sentence)
    ])
    tfidf = tfidf_vectors([f"{r['title']} {r['description']}" for r in rows], tokenize).tocsr()
    test = np.array([is_held_out(r["sku"]) for r in rows])
    paths = [r["category_path"] for r in rows]
    representations = {
        "fixed 30/70 fusion (image + sentence encoder)": (fused, np.ones(len(rows), bool)),
        "sentence encoder only": (_unit(sentence), np.ones(len(rows), bool)),
        "image only (products with a photo)": (_unit(image, allow_zero=True), has_image),
        "TF-IDF 1-2 grams, text pipeline (title + description)": (tfidf, np.ones(len(rows), bool)),
    }
    clustered = {"fixed 30/70 fusion": fused, "sentence encoder only": _unit(sentence)}
    if args.learned:
        learned = _learned_vectors(rows, features, paths, tokenize, args.seed)
        representations["learned fusion (train-split level-2 labels)"] = (learned, np.ones(len(rows), bool))
        clustered["learned fusion"] = learned
    print(f"\n## flipkart1050: {len(rows)} products, {int(test.sum())} held out")
    _suggestion_table(representations, paths, [r["sku"] for r in rows], test, levels=(2, 3))
    # Names come from titles: the descriptions' boilerplate ("flipkart com ... replacement
    # guarantee") is missing from a few clusters, so it would otherwise score as distinctive.
    texts = [r["title"] for r in rows]
    _cluster_table(clustered, paths, level=2, seed=args.seed, test=test)
    _catalog_run(fused, texts, paths, test, level=2, tokenize=tokenize, seed=args.seed)


def _learned_vectors(rows, features, paths, tokenize, seed: int) -> np.ndarray:
    """Train the learned fusion (defaults, dim 256) on train-split level-2 labels; its vectors."""
    from similarity.ml.fusion.training import FusionData, TrainConfig, train

    data = FusionData(
        image=features["image"], has_image=features["has_image"], sentence=features["sentence"],
        has_text=features["has_text"],
        tokens=[tokenize(" ".join([r["title"], r["brand"], r["description"]])) for r in rows],
        labels=[category_at_level(p, 2) for p in paths], split_keys=[r["sku"] for r in rows],
    )
    model = train(data, TrainConfig(dim=256, seed=seed)).model
    return model.encode(data.image, data.has_image, data.sentence, data.has_text, data.tokens)[0]


def run_zh(args: argparse.Namespace, tokenize) -> None:
    import fusion_experiment as fx

    csv_path = fx._dataset("zh-titles")
    rows = fx._read(csv_path)
    features = fx._cached(args.cache_dir, "zh-titles", csv_path, lambda: fx._text_features([r["title"] for r in rows]))
    sentence = features["sentence"]
    valid = features["has_text"]
    tfidf = tfidf_vectors([r["title"] for r in rows], tokenize).tocsr()
    test = np.array([is_held_out(r["sku"]) for r in rows])
    paths = [r["category_path"] for r in rows]
    print(f"\n## zh-titles: {len(rows)} products, {int(test.sum())} held out, {int((~valid).sum())} without text vector")
    representations = {
        "sentence encoder (text only)": (_unit(sentence, allow_zero=True), valid),
        "TF-IDF 1-2 grams, text pipeline (title)": (tfidf, np.asarray(tfidf.getnnz(axis=1) > 0)),
    }
    _suggestion_table(representations, paths, [r["sku"] for r in rows], test, levels=(3,))
    keep = np.flatnonzero(valid)
    vectors = _unit(sentence[keep])
    _cluster_table(
        {"sentence encoder (text only)": vectors}, [paths[i] for i in keep], level=3, seed=args.seed, test=test[keep]
    )
    _catalog_run(
        vectors, [rows[i]["title"] for i in keep], [paths[i] for i in keep], test[keep], level=3,
        tokenize=tokenize, seed=args.seed,
    )


def run_timing(args: argparse.Namespace, tokenize) -> None:
    """Cluster N synthetic products (300 blobs on the sphere) with zh-titles texts."""
    import fusion_experiment as fx

    n, dim = args.timing, args.timing_dim
    rng = np.random.default_rng(args.seed)
    centres = _unit(rng.normal(size=(300, dim)))
    vectors = centres[rng.integers(0, 300, n)]
    vectors += 0.06 * rng.standard_normal((n, dim), dtype=np.float32)
    vectors = _unit(vectors)
    titles = [r["title"] for r in fx._read(fx._dataset("zh-titles"))]
    texts = [titles[i % len(titles)] for i in range(n)]
    labels = [""] * n
    print(f"\n## timing: {n} synthetic products x {dim} dims, zh-titles texts")
    started = time.perf_counter()
    result = cluster_catalog(vectors, texts, labels, tokenize, seed=args.seed)
    total = time.perf_counter() - started
    fit = result.fit
    print(
        f"default grid {sorted(fit.scores)}: chosen k {fit.k}, {fit.method} on {fit.sample_size} rows; "
        f"fit+assign {result.seconds['fit']:.1f}s, describe {result.seconds['describe']:.1f}s, total {total:.1f}s"
    )
    started = time.perf_counter()
    fixed = choose_k_and_cluster(vectors, k=fit.k, seed=args.seed)
    print(f"fixed k={fit.k} (no search): {time.perf_counter() - started:.1f}s (fit.seconds {fixed.seconds})")


def _suggestion_table(representations: dict, paths: list[str], keys: list[str], test: np.ndarray, levels) -> None:
    print(
        f"\n(a) category suggestion for held-out products: the suggestions.py rule ({NEIGHBOURS}-NN, weight "
        f"max(cos, 0)^{SHARPNESS}), the old rule (20-NN, weight max(cos, 0)) and the (k, weight = "
        "max(cos, 0)^p) chosen by 7-fold cross-validation on the train split"
    )
    print("| vectors | level | rule | queries | top-1 | top-3 | CV top-1 |\n|---|---|---|---|---|---|---|")
    digits = np.array([_digit(key) for key in keys])
    for name, (vectors, valid) in representations.items():
        for level in levels:
            labels = np.asarray([category_at_level(p, level) for p in paths], dtype=object)
            labelled_path = np.array([bool(p) for p in paths])
            cv = defaultdict(list)
            for digit in sorted(set(digits[~test])):
                fold = ~test & valid & (digits == digit)
                rest = ~test & valid & (digits != digit) & labelled_path
                found = knn(vectors, np.flatnonzero(fold & (labels != "")), np.flatnonzero(rest), depth=max(VOTE_K))
                for k in VOTE_K:
                    for power in VOTE_POWER:
                        cv[(k, power)].append(vote_accuracy(found, labels, k=k, power=power)["top1"])
            cv_mean = {rule: float(np.mean(v)) for rule, v in cv.items()}
            chosen = max(cv_mean, key=lambda rule: (cv_mean[rule], -VOTE_K.index(rule[0]), -VOTE_POWER.index(rule[1])))
            queries = np.flatnonzero(test & valid & (labels != ""))
            found = knn(vectors, queries, np.flatnonzero(~test & valid & labelled_path), depth=max(VOTE_K))
            rules = (("suggestions.py", (NEIGHBOURS, SHARPNESS)), ("old rule", (20, 1)), ("CV-chosen", chosen))
            for title, (k, power) in rules:
                score = vote_accuracy(found, labels, k=k, power=power)
                print(
                    f"| {name} | {level} | {title} k={k}, p={power} | {score['queries']} | {score['top1']:.3f} | "
                    f"{score['top3']:.3f} | {cv_mean[(k, power)]:.3f} |",
                    flush=True,
                )


def knn(vectors, queries: np.ndarray, gallery: np.ndarray, *, depth: int = NEIGHBOURS, chunk: int = 512):
    """Return (query rows, gallery rows of the ``depth`` nearest best first, their cosines)."""
    sparse = hasattr(vectors, "tocsc")
    gallery_t = vectors[gallery].T.tocsc() if sparse else np.ascontiguousarray(vectors[gallery].T)
    rows_out, sims_out = [], []
    for start in range(0, len(queries), chunk):
        sims = vectors[queries[start : start + chunk]] @ gallery_t
        sims = sims.toarray() if sparse else np.asarray(sims)
        d = min(depth, sims.shape[1])
        top = np.argpartition(-sims, d - 1, axis=1)[:, :d]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        rows_out.append(gallery[top])
        sims_out.append(np.take_along_axis(sims, top, axis=1))
    return queries, np.concatenate(rows_out), np.concatenate(sims_out)


def vote_accuracy(found, labels: np.ndarray, *, k: int = NEIGHBOURS, power: float = SHARPNESS) -> dict:
    """Top-1/top-3 accuracy of the suggestions.py vote over precomputed neighbours.

    As in ``suggest``: the candidates are products with a category (any depth); a neighbour
    whose path is shorter than the level casts no vote; no vote at all is a miss.
    """
    queries, neighbours, sims = found
    top1 = top3 = 0
    for row, rows, cosines in zip(queries, neighbours[:, :k], sims[:, :k]):
        weights: dict[str, float] = defaultdict(float)
        for j, cosine in zip(rows, cosines):
            if labels[j]:
                weights[labels[j]] += max(float(cosine), 0.0) ** power
        ranked = sorted((label for label in weights if weights[label] > 0), key=lambda x: (-weights[x], x))[:3]
        top1 += bool(ranked) and ranked[0] == labels[row]
        top3 += labels[row] in ranked
    return {"top1": top1 / len(queries), "top3": top3 / len(queries), "queries": len(queries)}


def _cluster_table(representations: dict, paths: list[str], level: int, seed: int, test: np.ndarray) -> None:
    labels = [category_at_level(p, level) for p in paths]
    rows = np.flatnonzero([bool(x) for x in labels])
    held = np.flatnonzero([bool(x) and t for x, t in zip(labels, test)])
    truth = [labels[i] for i in rows]
    true_k = len(set(truth))
    print(f"\n(b) clusters vs level-{level} categories ({len(rows)} products, {true_k} categories)")
    print(
        "| vectors | k | how k was set | silhouette | NMI | ARI | NMI held-out only | seconds |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    ways = (
        ("silhouette over the default grid (default)", {}),
        ('Louvain on the 15-NN graph (method="graph")', {"method": "graph"}),
        ("true count (oracle)", {"k": true_k}),
    )
    for name, vectors in representations.items():
        for how, options in ways:
            fit = choose_k_and_cluster(vectors, seed=seed, **options)
            found = np.asarray(fit.labels)[rows]
            nmi = normalized_mutual_info_score(truth, found)
            ari = adjusted_rand_score(truth, found)
            nmi_held = normalized_mutual_info_score([labels[i] for i in held], np.asarray(fit.labels)[held])
            score = fit.scores.get(fit.k, max(fit.scores.values()) if fit.scores else float("nan"))
            print(
                f"| {name} | {fit.k} | {how} | {score:.3f} | {nmi:.4f} | {ari:.3f} | {nmi_held:.4f} "
                f"| {fit.seconds:.1f} |",
                flush=True,
            )
            if not options:
                grid = ", ".join(f"{k}: {s:.3f}" for k, s in sorted(fit.scores.items()))
                where = f"searched on {fit.search_size} rows; final {fit.method} on {fit.sample_size}"
                print(f"  silhouette per k ({where}): {grid}")


def _catalog_run(vectors, texts, paths, test, *, level: int, tokenize, seed: int, noise: float = 0.05) -> None:
    truth = [category_at_level(p, level) for p in paths]
    visible = ["" if t else label for t, label in zip(test, truth)]
    started = time.perf_counter()
    result = cluster_catalog(vectors, texts, visible, tokenize, seed=seed)
    seconds = time.perf_counter() - started
    kinds = Counter(s.kind for s in result.suggestions)
    print(
        f"\n(c) cluster_catalog, held-out categories removed: k={result.fit.k}, {dict(sorted(kinds.items()))} "
        f"suggestions, {seconds:.1f}s ({result.seconds})"
    )
    assigned = {row: s.target_label for s in result.suggestions if s.kind == "assign" for row in s.members}
    held = [i for i in np.flatnonzero(test) if truth[i]]
    reached = [i for i in held if i in assigned]
    right = sum(assigned[i] == truth[i] for i in reached)
    print(
        f"held-out products reached by an 'assign': {len(reached)}/{len(held)} ({len(reached) / len(held):.1%}); "
        f"right: {right}/{len(reached)} ({right / max(len(reached), 1):.1%})"
    )
    moves = [s for s in result.suggestions if s.kind == "move"]
    print(f"'move' suggestions: {len(moves)} covering {sum(len(s.members) for s in moves)} train products")
    print("largest clusters: name | size | majority (purity)")
    for cluster in sorted(result.clusters, key=lambda c: -c.size)[:8]:
        print(f"  {cluster.name} | {cluster.size} | {cluster.majority_label or '-'} ({cluster.purity:.2f})")
    for s in [s for s in result.suggestions if s.kind == "create"][:3] + moves[:2]:
        print(f"  e.g. {s.text}")

    # Mislabel a share of the train products at random and see whether "move" finds them.
    rng = np.random.default_rng(seed)
    train = [i for i, label in enumerate(visible) if label]
    categories = sorted(set(visible) - {""})
    noisy = list(visible)
    flipped = {}
    for i in rng.choice(train, size=max(1, round(noise * len(train))), replace=False):
        noisy[i] = rng.choice([c for c in categories if c != visible[i]])
        flipped[int(i)] = visible[i]
    clusters = describe(result.fit, vectors, texts, noisy, tokenize)
    moved = {row: s.target_label for s in suggest(clusters, noisy) if s.kind == "move" for row in s.members}
    caught = [i for i in flipped if i in moved]
    print(
        f"{len(flipped)} train products ({noise:.0%}) given a random wrong category: 'move' flags {len(caught)} "
        f"({len(caught) / len(flipped):.1%}), back to the right one for {sum(moved[i] == flipped[i] for i in caught)}; "
        f"of {len(moved)} moved products {len(caught) / max(len(moved), 1):.1%} were mislabelled"
    )


def _digit(sku: str) -> int:
    return int(hashlib.sha1(sku.encode("utf-8")).hexdigest()[:8], 16) % 10  # is_held_out: 0, 1, 2


def _unit(x: np.ndarray, *, allow_zero: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not allow_zero and (norms == 0).any():
        raise ValueError("zero vector")
    return x / np.where(norms == 0, 1, norms)


if __name__ == "__main__":
    main()
