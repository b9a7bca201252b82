"""Same-product matching on the Magellan/Ditto benchmark pairs: the untrained and the trained scorer.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/matching_offline.py [--data-dir ../shared/data/matching]
        [--sets abt-buy amazon-google] [--json out.json]

Offline numpy over the product's own matching code (``similarity.ml.matching``). Per data set:

1. Read train/valid/test (``pairs.read_pairs``) and collect the distinct records of all three
   files: the throw-away catalog a shop importing them would hold (no label is read from it).
2. Encode each record's ``Listing.text()`` (title, brand, description, each cut to 300
   characters, as the adapter builds a product's text) with the multilingual Universal
   Sentence Encoder; vectors are kept in memory only.
3. Catalog statistics (token and title 3-gram document frequencies) and each pair's neighbour
   ranks by text cosine among every catalog record, then ``pair_features`` for each split.
4. Untrained: ``default_scorer()`` at its fixed threshold 0.5 (and, for reference, at the
   F1-maximising threshold on valid). Trained: ``fit_best`` fits each candidate on train,
   keeps the best F1 on valid and takes its threshold there. Test is scored once, at the end.

Published test F1 for comparison: DeepMatcher 0.63 / 0.69, Ditto 0.89 / 0.76 (abt-buy /
amazon-google).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.ml.matching import features as pair_features_module  # noqa: E402
from similarity.ml.matching.pairs import distinct_records, read_pairs, record_key, to_listing  # noqa: E402
from similarity.ml.matching.scorer import default_scorer, fit_best  # noqa: E402
from similarity.ml.matching.thresholds import best_f1_threshold, precision_recall_f1  # noqa: E402

SPLITS = ("train", "valid", "test")
SETS = ("abt-buy", "amazon-google")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "matching"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder holding <set>/{train,valid,test}.txt")
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    missing = [s for s in args.sets for split in SPLITS if not (args.data_dir / s / f"{split}.txt").is_file()]
    if missing:
        sys.exit(
            f"matching data not found under {args.data_dir} (missing: {', '.join(sorted(set(missing)))}); "
            "put the Ditto files there as <set>/train.txt, valid.txt, test.txt or pass --data-dir"
        )
    from similarity.ml.encoders.text import UniversalSentenceEncoder

    encoder = UniversalSentenceEncoder()
    results = {}
    for name in args.sets:
        results[name] = run_set(args.data_dir / name, encoder)
        print_set(name, results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def run_set(folder: Path, encoder) -> dict:
    """Features, the untrained and the trained scorer, and their test metrics for one data set."""
    started = time.perf_counter()
    splits = {split: read_pairs(folder / f"{split}.txt") for split in SPLITS}
    records = distinct_records(p for split in SPLITS for p in splits[split])
    keys = {key: i for i, key in enumerate(records)}
    listings = [to_listing(r) for r in records.values()]
    t0 = time.perf_counter()
    vectors = encoder.encode([listing.text() for listing in listings])
    encode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = pair_features_module.CatalogStats.from_listings(listings)
    prepared = pair_features_module.prepare_listings(listings, stats, text_vectors=vectors)
    prepare_s = time.perf_counter() - t0
    rows, labels, feature_s = {}, {}, 0.0
    for split, pairs in splits.items():
        left = np.array([keys[record_key(p.left)] for p in pairs])
        right = np.array([keys[record_key(p.right)] for p in pairs])
        t0 = time.perf_counter()
        ranks = pair_features_module.neighbour_ranks(vectors, left, right)
        rows[split] = pair_features_module.pair_features(prepared, left, right, ranks=ranks)
        feature_s += time.perf_counter() - t0
        labels[split] = np.array([p.label for p in pairs])

    out = {
        "records": len(listings), "pairs": {s: int(len(labels[s])) for s in SPLITS},
        "positives": {s: int(labels[s].sum()) for s in SPLITS},
        "seconds": {"encode": round(encode_s, 1), "prepare": round(prepare_s, 1), "pair_features": round(feature_s, 2)},
    }
    default = default_scorer()
    out["default@0.5"] = _metrics(default.probabilities(rows["test"]), labels["test"], default.threshold)
    valid_threshold = best_f1_threshold(default.probabilities(rows["valid"]), labels["valid"])
    out["default@valid"] = _metrics(default.probabilities(rows["test"]), labels["test"], valid_threshold)
    t0 = time.perf_counter()
    trained = fit_best(rows["train"], labels["train"], rows["valid"], labels["valid"])
    out["fit_seconds"] = round(time.perf_counter() - t0, 1)
    out["trained"] = _metrics(trained.probabilities(rows["test"]), labels["test"], trained.threshold)
    out["trained"]["kind"] = trained.kind
    out["candidates"] = trained.metrics["candidates"]
    out["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return out


def _metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    return {k: round(v, 4) for k, v in precision_recall_f1(probabilities, labels, threshold).items()}


def print_set(name: str, result: dict) -> None:
    print(f"\n{name}: {result['records']} records, pairs {result['pairs']}, positives {result['positives']}")
    print(f"  seconds: {result['seconds']}, fitting {result['fit_seconds']}")
    for candidate in result["candidates"]:
        print(f"  candidate {candidate}")
    print(f"  {'test':<16}{'P':>8}{'R':>8}{'F1':>8}{'thr':>8}")
    for label in ("default@0.5", "default@valid", "trained"):
        m = result[label]
        print(f"  {label:<16}{m['precision']:>8.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{m['threshold']:>8.3f}")


if __name__ == "__main__":
    main()
