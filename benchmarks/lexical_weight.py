"""Cross-validate the lexical channel (BM25 over text-pipeline tokens) and its weight in the hybrid.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lexical_weight.py [--data flipkart|zh|both]
        [--cache-dir /tmp] [--candidates 100] [--json out.json]

Offline numpy over the product's own scoring functions (``similarity.ml.lexical``: hashing,
BM25 document weights, IDF on the query side, the self-score normalisation and
``combine``), on the served dense vectors (fixed fusion of the image and the sentence
encoder's text vector, the text vector alone where there is no photo; frozen features cached
by ``fusion_experiment.py`` under --cache-dir) and the text the worker reads (title, brand,
description, each field cut as the adapter cuts it; never the category).

1. Choose on the train split only: every BM25 setting of the grid (k1, b, unigrams or
   unigrams + bigrams) and every weight w of the hybrid ``(1 - w) * dense + w * lexical``
   is scored by 7-fold cross-validation inside the train split (sku-hash digit 3..9 as
   queries, the other train products as the gallery, leaf level). The default is the setting
   with the best mean of leaf P@1 and P@10 over the folds and the data sets asked for.
2. Score the held-out split once with that setting (held-out products query every product,
   itself excluded): dense, TF-IDF (the evaluation's baseline), BM25 alone, the hybrid scored
   exactly, and the hybrid as the read path serves it (the union of each channel's top
   --candidates, rescored).

Document frequencies and the mean length come from every product's text (no label is read),
as the worker's statistics do in a shop.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import fusion_experiment as features_cache  # noqa: E402

from similarity.ml import lexical  # noqa: E402
from similarity.ml.evaluation import category_at_level, is_held_out, score_neighbours, tfidf_vectors  # noqa: E402
from similarity.ml.fusion.fixed import fuse  # noqa: E402
from similarity.ml.fusion.training import split_digit  # noqa: E402
from similarity.ml.text_pipeline import tokenize  # noqa: E402

LEVELS = (1, 2, 3)
LEAF = 3
K = 10
TEXT_CHARS = 300  # the adapter's text_chars: each text field is cut to it
MAX_TEXT_CHARS = 2000
GRID = {"k1": (0.6, 1.2, 2.0, 3.0), "b": (0.5, 0.75, 1.0), "ngrams": (1, 2)}
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))
FOLDS = tuple(range(3, 10))  # train-split digits; 0, 1, 2 are the held-out split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["flipkart", "zh", "both"], default="both")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--candidates", type=int, default=100, help="per channel, as SIMILARITY['LEXICAL_CANDIDATES']")
    parser.add_argument("--json", type=Path, help="write the CV grid and the held-out tables here")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2",
        help="BM25 values to try instead of the default grid's, e.g. k1=2,3 (names: k1, b, ngrams)",
    )
    args = parser.parse_args()
    for item in args.grid:
        name, _, values = item.partition("=")
        if name not in GRID:
            sys.exit(f"--grid takes k1, b or ngrams, got {name!r}.")
        GRID[name] = tuple(int(v) if name == "ngrams" else float(v) for v in values.split(","))
    names = {"flipkart": ["flipkart1050"], "zh": ["zh-titles"], "both": ["flipkart1050", "zh-titles"]}[args.data]
    catalogs = {name: load(name, args.cache_dir) for name in names}

    started = time.perf_counter()
    cv = {name: cross_validate(catalog) for name, catalog in catalogs.items()}
    print(f"\ncross-validation: {time.perf_counter() - started:.0f}s")
    chosen, table = choose(cv)
    print_cv(cv, chosen, table)

    report = {"chosen": chosen, "cv": {name: {str(key): value for key, value in scores.items()} for name, scores in cv.items()}}
    bm25 = lexical.Bm25(k1=chosen["k1"], b=chosen["b"], ngrams=chosen["ngrams"])
    for name, catalog in catalogs.items():
        report[name] = held_out(catalog, bm25, chosen["w"], args.candidates)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False))


def load(name: str, cache_dir: Path) -> dict:
    """The catalog's rows, served dense vectors, tokens, labels and split."""
    csv_path = features_cache._dataset(name)
    rows = features_cache._read(csv_path)
    if name == "flipkart1050":
        feats = features_cache._cached(cache_dir, name, csv_path, lambda: features_cache._flipkart_features(rows, csv_path))
        texts = ["\n".join(p for p in [r["title"], r["brand"][:TEXT_CHARS], r["description"][:TEXT_CHARS]] if p) for r in rows]
    else:
        feats = features_cache._cached(cache_dir, name, csv_path, lambda: features_cache._text_features([r["title"] for r in rows]))
        texts = [r["title"] for r in rows]
    dense = np.stack([
        fuse(image if has_image else None, text if has_text else None,
             image_dim=image.size, text_dim=text.size, image_weight=0.3, text_weight=0.7)
        for image, has_image, text, has_text in zip(
            feats.get("image", np.zeros((len(rows), 1), np.float32)), feats.get("has_image", np.zeros(len(rows), bool)),
            feats["sentence"], feats["has_text"])
    ]).astype(np.float32)
    tokens = [tokenize(t[:MAX_TEXT_CHARS]) for t in texts]
    skus = [r["sku"] for r in rows]
    print(f"{name}: {len(rows)} products, {sum(map(is_held_out, skus))} held out")
    return {
        "name": name,
        "dense": dense,
        "tokens": tokens,
        "labels": {level: [category_at_level(r["category_path"], level) for r in rows] for level in LEVELS},
        "test": np.array([is_held_out(s) for s in skus]),
        "digit": np.array([split_digit(s) for s in skus]),
    }


def lexical_matrix(catalog: dict, bm25: lexical.Bm25):
    """(weights CSR, document frequencies, n) over every product, as the worker's statistics hold them."""
    avgdl = lexical.mean_length(catalog["tokens"], bm25.ngrams)
    matrix, _ = bm25.matrix(catalog["tokens"], avgdl)
    return matrix, lexical.document_frequencies(matrix), matrix.shape[0]


def top_k(scores: np.ndarray, k: int = K) -> np.ndarray:
    """Column indices of each row's ``k`` best scores, best first (ties by column)."""
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1)


def leaf_scores(catalog: dict, queries: np.ndarray, gallery: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    labels = catalog["labels"][LEAF]
    found = gallery[top_k(scores)]
    result = score_neighbours(queries, found, labels, k=K)
    return result["p@1"], result[f"p@{K}"]


def cross_validate(catalog: dict) -> dict:
    """{(k1, b, ngrams, w): (mean leaf P@1, mean leaf P@10)} over the train-split folds."""
    labelled = np.array([bool(x) for x in catalog["labels"][LEAF]])
    train = ~catalog["test"]
    dense = catalog["dense"]
    folds = []
    for digit in FOLDS:
        queries = np.flatnonzero(train & labelled & (catalog["digit"] == digit))
        gallery = np.flatnonzero(train)
        sims = dense[queries] @ dense[gallery].T
        folds.append((queries, gallery, sims, queries[:, None] == gallery[None, :]))
    results: dict = {}
    for k1, b, ngrams in itertools.product(GRID["k1"], GRID["b"], GRID["ngrams"]):
        started = time.perf_counter()
        matrix, df, n = lexical_matrix(catalog, lexical.Bm25(k1=k1, b=b, ngrams=ngrams))
        per_w = {w: [] for w in WEIGHTS}
        for queries, gallery, sims, itself in folds:
            lex = lexical.normalised_scores(matrix[queries], matrix[gallery], df, n)
            for w in WEIGHTS:
                scores = lexical.combine(sims, lex, w)
                scores[itself] = -np.inf
                per_w[w].append(leaf_scores(catalog, queries, gallery, scores))
        for w, scores in per_w.items():
            results[(k1, b, ngrams, w)] = tuple(float(x) for x in np.mean(scores, axis=0))
        best = max(per_w, key=lambda w: sum(results[(k1, b, ngrams, w)]))
        print(
            f"  {catalog['name']} k1={k1} b={b} ngrams={ngrams}: BM25 alone {_pair(results[(k1, b, ngrams, 1.0)])}, "
            f"best w={best} {_pair(results[(k1, b, ngrams, best)])} ({time.perf_counter() - started:.0f}s)",
            flush=True,
        )
    return results


def _pair(scores: tuple[float, float]) -> str:
    return f"P@1 {scores[0]:.3f} P@10 {scores[1]:.3f}"


def choose(cv: dict) -> tuple[dict, dict]:
    """The setting with the best mean of leaf P@1 and P@10 over folds and data sets."""
    keys = set.intersection(*(set(scores) for scores in cv.values()))
    table = {key: float(np.mean([np.mean(scores[key]) for scores in cv.values()])) for key in keys}
    best = max(sorted(keys), key=lambda key: table[key])
    return dict(zip(("k1", "b", "ngrams", "w"), map(float, best))) | {"ngrams": int(best[2])}, table


def print_cv(cv: dict, chosen: dict, table: dict) -> None:
    key = tuple(chosen.values())
    print(f"chosen on the train split: {chosen} (CV mean of leaf P@1 and P@10 over the data sets {table[key]:.4f})")
    for name, scores in cv.items():
        own = max(sorted(scores), key=lambda k: sum(scores[k]))
        print(f"  {name}: CV at the chosen setting {_pair(scores[key])}; dense alone {_pair(scores[key[:3] + (0.0,)])}; "
              f"its own best {dict(zip(('k1', 'b', 'ngrams', 'w'), own))} {_pair(scores[own])}")
    print("  CV mean over the data sets by w at the chosen BM25 setting: " + ", ".join(
        f"{w}: {table[key[:3] + (w,)]:.4f}" for w in WEIGHTS))


def held_out(catalog: dict, bm25: lexical.Bm25, weight: float, candidates: int) -> dict:
    """Held-out P@1, P@10, mAP@10 at every level for each representation; printed as a table."""
    n_rows = len(catalog["tokens"])
    everything = np.arange(n_rows)
    queries = np.flatnonzero(catalog["test"])
    dense = catalog["dense"]
    dense_sims = dense[queries] @ dense.T
    matrix, df, n = lexical_matrix(catalog, bm25)
    lex = lexical.normalised_scores(matrix[queries], matrix, df, n)
    tfidf = tfidf_vectors([" ".join(t) for t in catalog["tokens"]], str.split)
    tfidf_sims = (tfidf[queries] @ tfidf.T).toarray()
    hybrid = lexical.combine(dense_sims, lex, weight)
    served = np.full_like(hybrid, -np.inf)
    for sims in (dense_sims, lex):  # each channel's index gives its top candidates
        masked = sims.copy()
        masked[np.arange(len(queries)), queries] = -np.inf
        picked = top_k(masked, min(candidates, n_rows - 1))
        np.put_along_axis(served, picked, np.take_along_axis(hybrid, picked, axis=1), axis=1)
    rows = {
        "dense (served vector: fixed fusion, text alone without a photo)": dense_sims,
        "TF-IDF (text-pipeline tokens, 1-2 grams)": tfidf_sims,
        f"BM25 alone ({bm25.k1}, {bm25.b}, {'1-2' if bm25.ngrams == 2 else '1'}-grams)": lex,
        f"hybrid, exact (w = {weight})": hybrid,
        f"hybrid as served (union of top {candidates} per channel)": served,
    }
    table = {}
    print(f"\n{catalog['name']}: {len(queries)} held-out queries, gallery {n_rows} products")
    header = " ".join(f"L{level} P@1  L{level} P@10" for level in LEVELS)
    print(f"{'representation':66s} {header}")
    for name, sims in rows.items():
        sims = sims.copy()
        sims[np.arange(len(queries)), queries] = -np.inf
        found = everything[top_k(sims)]
        table[name] = {level: score_neighbours(queries, found, catalog["labels"][level], k=K) for level in LEVELS}
        cells = " ".join(f"{table[name][level]['p@1']:7.3f} {table[name][level]['p@10']:8.3f}" for level in LEVELS)
        print(f"{name:66s} {cells}")
    return table


if __name__ == "__main__":
    main()
