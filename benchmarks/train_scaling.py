"""How the fusion's training scales with the catalog: seconds per stage and per epoch.

    .venv/bin/python benchmarks/train_scaling.py [--products 1000] [--scale 10000 30000 100000]
        [--set max_len=96 ...] [--cache-dir /tmp] [--no-images]

The 1k catalog reproduces a shop's report (1,000 Chinese products, 136 categories, long
attribute-list descriptions such as "颜色: 红色; 尺码: XL; ..." repeated): titles and their
category paths come from ../shared/data/zh-titles (read there, never copied), each leaf split
into series named in the description, so the text says the category. Its text features are
real: the multilingual sentence encoder's vectors and the text pipeline's tokens (cached in
--cache-dir). Its image features are structured noise (a unit centre per category plus
noise, 1,280-d), as the titles come without photos.

``--scale N``: catalogs of N products built from that real one, each a random real product of
a category with its sentence vector jittered, a fifth of its tokens replaced by another
product's of the same category, and a fresh image draw: the real dimensions (image 1,280,
sentence 512, the measured token counts), at any size.

Prints the load average beside the timings: on a machine shared with other work the wall
seconds stretch, the CPU seconds (this process, all threads) much less.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from similarity.ml.evaluation import category_at_level  # noqa: E402
from similarity.ml.fusion.training import FusionData, TrainConfig, train  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CATEGORIES = 136
SERIES = "经典 旗舰 尊享 青春 商务 家用 专业 便携 豪华 标准".split()
ATTRIBUTES = {
    "颜色": "红色 蓝色 黑色 白色 金色 银色 灰色 绿色".split(),
    "尺码": "S M L XL XXL 均码".split(),
    "材质": "棉 涤纶 塑料 金属 玻璃 陶瓷".split(),
    "产地": "中国大陆 广东 浙江 江苏 山东 吉林".split(),
    "包装": "盒装 袋装 瓶装 罐装 礼盒装".split(),
    "规格": ["50克", "100克", "250克", "500克"],
    "保质期": ["6个月", "12个月", "18个月", "24个月", "36个月"],
    "适用人群": "成人 老人 儿童 通用".split(),
    "功能": "保健 养生 充值 治疗 监测".split(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=1000, help="size of the real-text catalog")
    parser.add_argument("--scale", type=int, nargs="*", default=[], metavar="N", help="also train on N synthetic products")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON", help="override a TrainConfig field")
    parser.add_argument("--no-images", action="store_true", help="no image features (text only)")
    parser.add_argument("--skip-real", action="store_true", help="only the --scale catalogs")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no line per epoch")
    args = parser.parse_args()
    overrides = {name: _json(raw) for name, _, raw in (item.partition("=") for item in args.set)}
    config = TrainConfig(**{"dim": 256, **overrides})  # LEARNED_DIM's default

    base = real_catalog(args.products, args.cache_dir, args.seed, images=not args.no_images)
    print(f"machine: {os.cpu_count()} CPUs; config overrides {overrides or 'none'}", flush=True)
    if not args.skip_real:
        report(f"{args.products} real-text products", base, config, verbose=not args.quiet)
    for n in args.scale:
        report(f"{n} synthetic products", synthetic_catalog(base, n, args.seed), config, verbose=not args.quiet)


def report(title: str, data: FusionData, config: TrainConfig, *, verbose: bool = True) -> dict:
    """Train once and print where the time went."""
    load = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()

    def progress(epoch: int, point: dict) -> None:
        elapsed = time.perf_counter() - wall
        left = (point["steps"] - point["step"]) * elapsed / point["step"] if point["step"] else float("nan")
        print(
            f"  {title}: {point['stage']} {epoch} step {point['step']}/{point['steps']} {elapsed:.0f}s, "
            f"about {left:.0f}s left, val P@10 {point.get('val_p_at_k') or 0:.3f}", file=sys.stderr, flush=True,
        )

    result = train(data, config, progress=progress if verbose else None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    m = result.metrics
    epochs = m["epochs"]
    row = {
        "catalog": title,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "load_before": [round(x, 2) for x in load],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "stage_s": m["stage_seconds"],
        "epochs": epochs,
        "fit_epoch_s": round(m["stage_seconds"]["fit"] / max(epochs["fit"], 1), 2),
        "refit_epoch_s": round(m["stage_seconds"].get("refit", 0.0) / max(epochs["refit"], 1), 2),
        "tokens": m["tokens"],
        "counts": m["counts"],
        "held_out_p_at_10": round(m["held_out"]["p_at_10"] or 0.0, 3),
        "held_out_p_at_1": round(m["held_out"]["p_at_1"] or 0.0, 3),
        "anchor_share": (m.get("anchor") or {}).get("share"),
    }
    print(json.dumps(row, ensure_ascii=False), flush=True)
    return row


def real_catalog(n: int, cache_dir: Path, seed: int, *, images: bool = True) -> FusionData:
    """The user's catalog: n zh-titles products, CATEGORIES categories, attribute-list descriptions."""
    by_leaf, categories = zh_titles_categories()
    rng = random.Random(seed)
    products = []
    for i in range(n):
        leaf, series = categories[i] if i < CATEGORIES else categories[rng.randrange(CATEGORIES)]
        source = rng.choice(by_leaf[leaf])
        attributes = [f"系列: {series}"] + [f"{name}: {rng.choice(values)}" for name, values in ATTRIBUTES.items()]
        parts = leaf.split(" > ")
        products.append({
            "sku": f"scale-{i:06d}",
            "text": source["title"] + "\n" + "; ".join(attributes * rng.randint(4, 12)),
            "path": f"{parts[0]} > {parts[-1]}·{series}",
        })
    texts = [p["text"][:2000] for p in products]  # SIMILARITY['MAX_TEXT_CHARS']
    sentence, tokens = _text_features(texts, cache_dir)
    paths = [p["path"] for p in products]
    image, has_image = _structured(paths, 1280, seed, noise=2.0) if images else (np.zeros((n, 1280), np.float32), np.zeros(n, bool))
    return FusionData(
        image=image, has_image=has_image, sentence=sentence, has_text=np.any(sentence != 0, axis=1), tokens=tokens,
        labels=[category_at_level(p, 2) for p in paths], split_keys=[p["sku"] for p in products], paths=paths,
    )


def zh_titles_categories() -> tuple[dict[str, list[dict]], list[tuple[str, str]]]:
    """zh-titles' rows by leaf category, and CATEGORIES (leaf, series) pairs: each leaf split
    into series named in the description (exits where the data set is absent)."""
    path = DATA / "zh-titles" / "products.csv"
    if not path.is_file():
        sys.exit(f"real data set 'zh-titles' not found at {path} (it lives beside the repository)")
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    leaves = sorted({row["category_path"] for row in rows})
    by_leaf = {leaf: [row for row in rows if row["category_path"] == leaf] for leaf in leaves}
    return by_leaf, [(leaves[i % len(leaves)], SERIES[(i // len(leaves)) % len(SERIES)]) for i in range(CATEGORIES)]


def synthetic_catalog(base: FusionData, n: int, seed: int) -> FusionData:
    """n products drawn from ``base``: a real product's category, jittered sentence vector,
    a fifth of its tokens swapped for a same-category product's, a fresh image draw."""
    rng = np.random.default_rng(seed + n)
    source = rng.integers(0, len(base), n)
    paths = [base.paths[i] for i in source]
    by_path: dict[str, list[int]] = {}
    for i, path in enumerate(base.paths):
        by_path.setdefault(path, []).append(i)
    sentence = base.sentence[source] + rng.normal(0, 0.02, (n, base.sentence.shape[1])).astype(np.float32)
    sentence /= np.maximum(np.linalg.norm(sentence, axis=1, keepdims=True), 1e-12)
    tokens = []
    for i, j in enumerate(source):
        own, other = list(base.tokens[j]), base.tokens[rng.choice(by_path[base.paths[j]])]
        for position in np.flatnonzero(rng.random(len(own)) < 0.2):
            if other:
                own[position] = other[rng.integers(len(other))]
        tokens.append(own)
    image, has_image = _structured(paths, base.image.shape[1], seed, noise=2.0)
    if not base.has_image.any():
        image, has_image = np.zeros_like(image), np.zeros(n, bool)
    return FusionData(
        image=image, has_image=has_image, sentence=sentence, has_text=np.ones(n, bool), tokens=tokens,
        labels=[category_at_level(p, 2) for p in paths], split_keys=[f"scale-{n}-{i:07d}" for i in range(n)], paths=paths,
    )


def _structured(paths: list[str], dim: int, seed: int, *, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows: one random centre per category (the same for every catalog) plus noise."""
    classes = sorted(set(paths))
    centres = np.random.default_rng(seed).normal(size=(len(classes), dim)).astype(np.float32)
    index = {c: i for i, c in enumerate(classes)}
    rng = np.random.default_rng(seed + len(paths))
    image = centres[[index[p] for p in paths]] + noise * rng.normal(size=(len(paths), dim)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    return image, np.ones(len(paths), bool)


def _text_features(texts: list[str], cache_dir: Path) -> tuple[np.ndarray, list[list[str]]]:
    """Sentence vectors and pipeline tokens of ``texts``, cached by their content."""
    stamp = hashlib.sha1("\n\0".join(texts).encode("utf-8")).hexdigest()[:12]
    path = cache_dir / f"train-scaling-text-{stamp}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as cached:
            return cached["sentence"], json.loads(str(cached["tokens"]))
    from similarity.ml.encoders.text import UniversalSentenceEncoder
    from similarity.ml.text_pipeline import default_pipeline

    started = time.perf_counter()
    print(f"encoding {len(texts)} texts (cached afterwards in {path}) ...", flush=True)
    pipeline = default_pipeline()
    tokens = [pipeline.tokenize(text) for text in texts]
    sentence = UniversalSentenceEncoder().encode(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, sentence=sentence, tokens=np.array(json.dumps(tokens, ensure_ascii=False)))
    print(f"  done in {time.perf_counter() - started:.0f}s", flush=True)
    return sentence, tokens


def _json(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


if __name__ == "__main__":
    main()
