"""Held-out retrieval quality of the learned attention fusion against its baselines.

    .venv/bin/python benchmarks/fusion_experiment.py [--data flipkart|zh|both] [--set dim=128 ...]
        [--save /tmp/fusion-flipkart] [--cache-dir /tmp] [--image-features /tmp/finetune/features.npz]

flipkart1050 (level 2): image only, sentence-encoder text only, recurrent text only, fixed
30/70 cosine mix, learned attention fusion and TF-IDF (word 1-2 grams on title + description).
zh-titles (level 3, text only): sentence encoder, recurrent text, learned fusion, TF-IDF on
jieba tokens. Protocol of ../shared/data/README.md: test-split products query, every product
(with a photo, for flipkart1050) is the gallery, the query itself excluded; training sees no
test-split label. Frozen features are cached in an .npz under --cache-dir. The TF-IDF row
needs scikit-learn (``pip install scikit-learn``); it is skipped without it.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.ml.evaluation import category_at_level, is_held_out  # noqa: E402
from similarity.ml.fusion.fixed import fuse  # noqa: E402
from similarity.ml.fusion.training import (  # noqa: E402
    FusionData,
    TrainConfig,
    retrieval_metrics,
    split_digit,
    train,
)

DATA = ROOT.parent / "shared" / "data"
IMAGE_LIMITS = {"max_bytes": 20_000_000, "max_pixels": 50_000_000}
SENTENCE_DESCRIPTION_CHARS = 300  # what the calibration numbers used for the sentence encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["flipkart", "zh", "both"], default="both")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a TrainConfig field")
    parser.add_argument("--zh-set", action="append", default=[], metavar="FIELD=VALUE", help="override for zh-titles only")
    parser.add_argument("--description-chars", type=int, default=2000, help="description characters the recurrent branch reads")
    parser.add_argument(
        "--dedupe", action="store_true", help="keep each token's first occurrence only (descriptions repeat the title)"
    )
    parser.add_argument("--tokenizer", choices=["auto", "jieba", "pipeline"], default="auto")
    parser.add_argument(
        "--image-features", type=Path, metavar="NPZ",
        help="fine-tuned image features from finetune_image.py: the fusion trains on the cross-fitted "
        "ones and is scored on the final network's",
    )
    parser.add_argument("--save", type=Path, help="write the flipkart1050 checkpoint here")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    parser.add_argument(
        "--cv", metavar="DIGITS", help="tune: train once per validation digit (e.g. 3,5,7), print validation only"
    )
    parser.add_argument(
        "--nested",
        metavar="DIGITS",
        help="tune what validation cannot (e.g. refit): per digit, hide that fold's labels, train, "
        "score the fold as queries against the train split; test scores are never printed",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (small batches: 1 is fastest on a busy box)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    tokenize = _tokenizer(args.tokenizer)
    if args.data in ("flipkart", "both"):
        config = _config(TrainConfig(), args.set)
        run_flipkart(config, tokenize, args)
    if args.data in ("zh", "both"):
        config = _config(_config(TrainConfig(), args.set), args.zh_set)
        run_zh(config, tokenize, args)


def run_flipkart(config: TrainConfig, tokenize, args: argparse.Namespace) -> None:
    """Train at level 2 on flipkart1050 and print the held-out table."""
    csv_path = _dataset("flipkart1050")
    rows = _read(csv_path)
    features = _cached(args.cache_dir, "flipkart1050", csv_path, lambda: _flipkart_features(rows, csv_path))
    labels = [category_at_level(r["category_path"], 2) for r in rows]
    texts = [" ".join([r["title"], r["brand"], r["description"][: args.description_chars]]) for r in rows]
    data = FusionData(
        image=features["image"],
        has_image=features["has_image"],
        sentence=features["sentence"],
        has_text=features["has_text"],
        tokens=[_unique(tokenize(t)) if args.dedupe else tokenize(t) for t in texts],
        labels=labels,
        split_keys=[r["sku"] for r in rows],
    )
    gallery = data.has_image.copy()  # the protocol's 1,047 products with a photo
    deployed = data.image
    if args.image_features:
        data.image, deployed = _tuned_features(args.image_features, data)
    if args.cv:
        return _cross_validate(data, config, args)
    if args.nested:
        return _nested(data, config, args)
    result = _train(data, config, args, deploy_image=deployed)
    model = result.model
    vectors, attention = model.encode(deployed, data.has_image, data.sentence, data.has_text, data.tokens)
    branch = {
        name: model.encode_branch(name, deployed, data.has_image, data.sentence, data.has_text, data.tokens)
        for name in ("image", "sentence", "recurrent")
    }
    mixed = np.stack([
        fuse(i if hi else None, s if ht else None, image_dim=i.size, text_dim=s.size, image_weight=0.3, text_weight=0.7)
        for i, hi, s, ht in zip(features["image"], data.has_image, data.sentence, data.has_text)
    ])
    table = {
        "image only (EfficientNet-Lite0)": features["image"],
        **({"image only (fine-tuned EfficientNet-Lite0)": deployed} if args.image_features else {}),
        "text only (sentence encoder)": data.sentence,
        "recurrent text only (learned branch)": branch["recurrent"],
        "fixed 30/70 cosine mix": mixed,
        "learned attention fusion": vectors,
    }
    tfidf = _tfidf([f"{r['title']} {r['description']}" for r in rows], analyzer="word")
    if tfidf is not None:
        table["TF-IDF word 1-2 grams (title+description)"] = tfidf
    table["(diagnostic) learned fusion, no category evidence"] = model.encode(
        deployed, data.has_image, data.sentence, data.has_text, data.tokens, evidence=False
    )[0]
    table["(diagnostic) learned image branch"] = branch["image"]
    table["(diagnostic) learned sentence branch"] = branch["sentence"]
    _print_table("flipkart1050, level 2", table, labels, data, gallery, config.k)
    _print_training(result)
    used = attention[gallery]
    print(f"mean attention [image, sentence, recurrent] over products with a photo: {np.round(used.mean(axis=0), 3)}")
    if args.save:
        print(f"saved checkpoint {model.version} to {model.save(args.save)}")


def run_zh(config: TrainConfig, tokenize, args: argparse.Namespace) -> None:
    """Train at level 3 on zh-titles (text only) and print the held-out table."""
    csv_path = _dataset("zh-titles")
    rows = _read(csv_path)
    features = _cached(args.cache_dir, "zh-titles", csv_path, lambda: _text_features([r["title"] for r in rows]))
    labels = [category_at_level(r["category_path"], 3) for r in rows]
    tokens = [tokenize(r["title"]) for r in rows]
    n = len(rows)
    data = FusionData(
        image=np.zeros((n, 1280), np.float32),
        has_image=np.zeros(n, bool),
        sentence=features["sentence"],
        has_text=features["has_text"],
        tokens=tokens,
        labels=labels,
        split_keys=[r["sku"] for r in rows],
    )
    if args.cv:
        return _cross_validate(data, config, args)
    if args.nested:
        return _nested(data, config, args)
    result = _train(data, config, args)
    model = result.model
    vectors, _ = model.encode(None, None, data.sentence, data.has_text, data.tokens)
    recurrent = model.encode_branch("recurrent", None, None, data.sentence, data.has_text, data.tokens)
    table = {
        "text only (sentence encoder)": data.sentence,
        "recurrent text only (learned branch)": recurrent,
        "learned attention fusion": vectors,
    }
    tfidf = _tfidf([" ".join(t) for t in tokens], analyzer="pretokenized")
    if tfidf is not None:
        table["TF-IDF 1-2 grams (jieba tokens)"] = tfidf
    _print_table("zh-titles, level 3 (text only)", table, labels, data, np.ones(n, bool), config.k)
    _print_training(result)


def _tuned_features(path: Path, data: FusionData) -> tuple[np.ndarray, np.ndarray]:
    """Return (training, deployed) image features of a finetune_image.py run, rows in data's order."""
    with np.load(path) as tuned:
        if list(tuned["skus"]) != list(data.split_keys):
            sys.exit(f"{path} was computed for other products (skus differ): rerun finetune_image.py.")
        training, deployed = tuned["training"].astype(np.float32), tuned["features"].astype(np.float32)
    print(f"image features: fine-tuned, cross-fitted for training ({path})")
    return np.where(data.has_image[:, None], training, 0), np.where(data.has_image[:, None], deployed, 0)


def _train(data: FusionData, config: TrainConfig, args: argparse.Namespace, deploy_image=None):
    print(f"training with {config}", flush=True)

    def progress(epoch: int, point: dict[str, float]) -> None:
        if not args.quiet:
            print(
                f"  epoch {epoch:3d} loss {point['loss'] or 0:.4f} val P@1 {point['val_p_at_1']:.3f} "
                f"P@{config.k} {point['val_p_at_k']:.3f} best {point.get('best_epoch', 0)}",
                flush=True,
            )

    return train(data, config, progress=progress, deploy_image=deploy_image)


def _cross_validate(data: FusionData, config: TrainConfig, args: argparse.Namespace) -> None:
    """Print the best validation P@k for each validation digit: tuning never sees test scores."""
    scores, epochs, seconds = [], [], []
    for digit in (int(d) for d in args.cv.split(",")):
        result = _train(data, dataclasses.replace(config, validation_digit=digit), args)
        scores.append(result.metrics["best_validation_p_at_k"])
        epochs.append(result.best_epoch)
        seconds.append(result.metrics["seconds"])
        print(f"  digit {digit}: best validation P@{config.k} {scores[-1]:.3f} at epoch {epochs[-1]} ({seconds[-1]}s)", flush=True)
    print(
        f"CV mean validation P@{config.k} {np.mean(scores):.4f} (digits {args.cv}: "
        f"{', '.join(f'{s:.3f}' for s in scores)}; epochs {epochs}; {np.mean(seconds):.0f}s per run)"
    )


def _nested(data: FusionData, config: TrainConfig, args: argparse.Namespace) -> None:
    """Per outer digit: train without that fold's labels, then score the fold (never the test split)."""
    test = np.array([is_held_out(key) for key in data.split_keys])
    digits = np.array([split_digit(key) for key in data.split_keys])
    labelled = np.array([bool(label) for label in data.labels])
    scores = []
    for digit in (int(d) for d in args.nested.split(",")):
        fold = ~test & (digits == digit) & labelled
        hidden = dataclasses.replace(data, labels=["" if f else label for f, label in zip(fold, data.labels)])
        result = _train(hidden, config, args)
        vectors, _ = result.model.encode(data.image, data.has_image, data.sentence, data.has_text, data.tokens)
        score = retrieval_metrics(vectors, data.labels, fold, ~test, k=config.k)[f"p_at_{config.k}"]
        scores.append(score)
        print(f"  outer digit {digit}: P@{config.k} {score:.3f} (best epoch {result.best_epoch})", flush=True)
    print(f"NESTED mean P@{config.k} {np.mean(scores):.4f} (digits {args.nested}: {', '.join(f'{s:.3f}' for s in scores)})")


def _print_table(title: str, table: dict, labels: list[str], data: FusionData, gallery: np.ndarray, k: int) -> None:
    test = np.array([is_held_out(key) for key in data.split_keys]) & np.array([bool(x) for x in labels]) & gallery
    print(f"\n{title}: {int(test.sum())} test queries, gallery {int(gallery.sum())} products")
    print(f"{'representation':44s} {'P@1':>6s} {f'P@{k}':>6s} {f'mAP@{k}':>7s}")
    for name, vectors in table.items():
        scores = retrieval_metrics(vectors, labels, test, gallery, k=k)
        print(f"{name:44s} {scores['p_at_1']:6.3f} {scores[f'p_at_{k}']:6.3f} {scores[f'map_at_{k}']:7.3f}")


def _print_training(result) -> None:
    m = result.metrics
    print(
        f"training: {m['seconds']}s on {m['device']}, best epoch {m['best_epoch']} of "
        f"{len(m['validation_curve']) - 1}, validation P@10 {m['best_validation_p_at_k']:.3f}, counts {m['counts']}"
    )


def _flipkart_features(rows: list[dict[str, str]], csv_path: Path) -> dict[str, np.ndarray]:
    from similarity.ml.encoders.image import EfficientNetLiteImageEncoder
    from similarity.ml.images import ImageRejected, decode_image

    images, has_image = [], np.zeros(len(rows), bool)
    for i, row in enumerate(rows):
        if not row["image"]:
            continue
        try:
            images.append(decode_image((csv_path.parent / row["image"]).read_bytes(), **IMAGE_LIMITS))
            has_image[i] = True
        except (OSError, ImageRejected) as exc:
            print(f"  no image for {row['sku']}: {exc}")
    encoder = EfficientNetLiteImageEncoder(device="auto")
    image = np.zeros((len(rows), encoder.dim), np.float32)
    image[has_image] = encoder.encode(images)
    texts = ["\n".join([r["title"], r["brand"], r["description"][:SENTENCE_DESCRIPTION_CHARS]]) for r in rows]
    return {"image": image, "has_image": has_image, **_text_features(texts)}


def _text_features(texts: list[str]) -> dict[str, np.ndarray]:
    from similarity.ml.encoders.text import UniversalSentenceEncoder

    sentence = UniversalSentenceEncoder().encode(texts)
    return {"sentence": sentence, "has_text": np.any(sentence != 0, axis=1)}


def _cached(cache_dir: Path, name: str, csv_path: Path, compute) -> dict[str, np.ndarray]:
    stamp = hashlib.sha1(csv_path.read_bytes()).hexdigest()[:10]
    path = cache_dir / f"fusion-features-{name}-{stamp}-desc{SENTENCE_DESCRIPTION_CHARS}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    started = time.perf_counter()
    print(f"extracting frozen features for {name} (cached afterwards in {path}) ...", flush=True)
    features = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, **features)
    print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
    return features


def _tfidf(texts: list[str], analyzer: str):
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:
        print("(TF-IDF row skipped: pip install scikit-learn to get it)")
        return None
    if analyzer == "pretokenized":
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), tokenizer=str.split, token_pattern=None, lowercase=False)
    else:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2))
    return vectorizer.fit_transform(texts).tocsr()


def _tokenizer(choice: str):
    if choice in ("auto", "pipeline"):
        try:
            from similarity.ml.text_pipeline import tokenize

            print("tokenizer: similarity.ml.text_pipeline.tokenize")
            return tokenize
        except ImportError:
            if choice == "pipeline":
                sys.exit("similarity/ml/text_pipeline.py is not available yet: use --tokenizer jieba.")
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    print("tokenizer: jieba.lcut + lower-casing (stand-in for similarity.ml.text_pipeline)")

    def tokenize(text: str) -> list[str]:
        return [t for t in (w.strip().lower() for w in jieba.lcut(text)) if t and any(c.isalnum() for c in t)]

    return tokenize


def _unique(tokens: list[str]) -> list[str]:
    return list(dict.fromkeys(tokens))


def _config(config, overrides: list[str]):
    """Return the dataclass ``config`` (a TrainConfig, a FinetuneConfig...) with FIELD=VALUE overrides."""
    types = {f.name: f.type for f in dataclasses.fields(config)}
    changes = {}
    for item in overrides:
        name, _, value = item.partition("=")
        if name not in types:
            sys.exit(f"unknown {type(config).__name__} field {name!r}: choose from {', '.join(types)}.")
        kind = type(getattr(config, name))
        if kind is bool:
            changes[name] = value.lower() in ("1", "true", "yes")
        else:
            changes[name] = value if kind is str else kind(float(value)) if kind is int else kind(value)
    return dataclasses.replace(config, **changes)


def _dataset(name: str) -> Path:
    path = DATA / name / "products.csv"
    if not path.is_file():
        sys.exit(f"data set {name!r} not found at {path}: it lives in ../shared/data beside the repository.")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


if __name__ == "__main__":
    main()
