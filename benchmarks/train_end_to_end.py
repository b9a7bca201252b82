"""`similarity_train` end to end on a large catalog: reading, tokenising, training, the guard.

    .venv/bin/python benchmarks/train_end_to_end.py --var DIR [--products 100000]
        [--uncategorised 0.2] [--no-photo 0.1] [--cache-dir /tmp]

Builds a throw-away shop under ``DIR`` (embedded PostgreSQL) the way ``benchmarks/million.py``
does (COPY, no row-by-row saves): N products whose titles come from ../shared/data/zh-titles
(read there, never copied), each made unique by a model number, with attribute-list
descriptions (the shape of ``benchmarks/train_scaling.py``'s 1k reproduction), two-level
categories (a zh-titles category split into series named in the description), a share of the
products without a category and a share without a photo. Their stored vectors: the text
vector of the real title's text (the multilingual sentence encoder, encoded once per base
product and cached in --cache-dir) with a little noise, an image vector of structured noise
per category, the fixed fusion of the two. Then it runs ``manage.py similarity_train
--no-activate`` as a shop would and reports the wall and CPU seconds of the whole command and
of its stages (from the command's progress bar).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_latency import _load  # noqa: E402
from benchmarks.million import copy_products, setup  # noqa: E402
from benchmarks.train_scaling import ATTRIBUTES, CATEGORIES, _structured, _text_features, zh_titles_categories  # noqa: E402

CHUNK = 20_000


def catalog(n: int, uncategorised: float, no_photo: float, seed: int) -> list[dict]:
    """n products: text, category path ("" for uncategorised), base product, photo or not."""
    by_leaf, categories = zh_titles_categories()
    rng = random.Random(seed)
    products = []
    for i in range(n):
        leaf, series = categories[rng.randrange(CATEGORIES)]
        source = rng.choice(by_leaf[leaf])
        attributes = [f"系列: {series}"] + [f"{name}: {rng.choice(values)}" for name, values in ATTRIBUTES.items()]
        rng.shuffle(attributes)
        parts = leaf.split(" > ")
        products.append({
            "title": f"{source['title']} 型号{rng.choice('ABCDEFGHJK')}{i:06d}",
            "description": "; ".join(attributes * rng.randint(4, 12)),
            "base": source["title"],
            "path": "" if rng.random() < uncategorised else f"{parts[0]} > {parts[-1]}·{series}",
            "category": f"{parts[0]} > {parts[-1]}·{series}",
            "photo": rng.random() >= no_photo,
        })
    return products


def build(var: Path, products: list[dict], cache_dir: Path, seed: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from catalog.models import Category, Product
    from similarity.conf import similarity_settings as s
    from similarity.indexing.spaces import create_indexes, ensure_configured_space, index_name

    call_command("migrate", verbosity=0)
    space = ensure_configured_space("catalog.Product")
    with connection.cursor() as cursor:  # load first, index after: far faster than inserting into the graphs
        for column in [*space.dims, "lexical"]:
            cursor.execute(f'DROP INDEX IF EXISTS "{index_name(space, column)}"')
    bases = sorted({p["base"] for p in products})
    sentence, _ = _text_features(bases, cache_dir)
    base_row = {title: i for i, title in enumerate(bases)}
    rng = np.random.default_rng(seed)
    text = sentence[[base_row[p["base"]] for p in products]] + rng.normal(0, 0.02, (len(products), sentence.shape[1])).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image, _ = _structured([p["category"] for p in products], s.IMAGE_DIM, seed, noise=2.0)
    photo = np.array([p["photo"] for p in products])
    a = s.IMAGE_WEIGHT / (s.IMAGE_WEIGHT + s.TEXT_WEIGHT)
    fused = np.where(photo[:, None], np.hstack([np.sqrt(a) * image, np.sqrt(1 - a) * text]), np.hstack([0 * image, text]))
    fused /= np.linalg.norm(fused, axis=1, keepdims=True)
    ids = {path: Category.get_or_create_path(path).pk for path in sorted({p["path"] for p in products if p["path"]})}

    started = time.perf_counter()
    first = copy_products(len(products), lambda i: {
        "sku": f"e2e-{i:07d}", "title": products[i]["title"], "description": products[i]["description"],
        "category_id": ids.get(products[i]["path"]),
    })
    print(f"{len(products):,} products copied in {time.perf_counter() - started:.0f} s", flush=True)
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone
    from pgvector.psycopg import register_vector

    content_type = ContentType.objects.get_for_model(Product).pk
    connection.ensure_connection()
    register_vector(connection.connection)
    now, started = timezone.now(), time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.copy(
            "COPY similarity_embedding (space_id, content_type_id, object_id, image, text, fused, content_hash, encoded_at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bigint", "integer", "bigint", "vector", "vector", "vector", "text", "timestamptz"])
            for i in range(len(products)):
                copy.write_row((space.pk, content_type, first + i, image[i] if photo[i] else None, text[i], fused[i], "e2e", now))
        cursor.execute("VACUUM ANALYZE similarity_embedding")
    print(f"vectors copied in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    create_indexes(space)
    print(f"indexes built in {time.perf_counter() - started:.0f} s", flush=True)


class Stages:
    """Wraps the command's progress bar: wall seconds from one stage name to the next."""

    def __init__(self) -> None:
        self.current, self.started, self.seconds = "reading the catalog", time.perf_counter(), {}

    def update(self, description: str) -> None:
        stage = description.split(" epoch ")[0]
        if stage != self.current:
            now = time.perf_counter()
            self.seconds[self.current] = round(self.seconds.get(self.current, 0.0) + now - self.started, 1)
            self.current, self.started = stage, now

    def close(self) -> dict[str, float]:
        self.update("")
        return self.seconds


def train(seed: int) -> dict:
    from unittest import mock

    import tqdm

    from django.core.management import call_command

    stages = Stages()
    original = tqdm.tqdm.set_description

    def set_description(bar, desc=None, refresh=True):
        stages.update(desc or "")
        return original(bar, desc, refresh)

    cpu, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with mock.patch.object(tqdm.tqdm, "set_description", set_description):
        call_command("similarity_train", "--model", "catalog.Product", "--no-activate", "--seed", str(seed))
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall (s)": round(wall, 1),
        "CPU (s)": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
        "peak memory (GB)": round(after.ru_maxrss / 1e6, 2),
        "stages, wall (s)": stages.close(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, required=True, help="the throw-away shop's folder")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--uncategorised", type=float, default=0.2, help="share of products without a category")
    parser.add_argument("--no-photo", type=float, default=0.1, help="share of products without a photo")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.var.mkdir(parents=True, exist_ok=True)
    setup(args.var, "single")
    if not (args.var / "built.json").exists():
        build(args.var, catalog(args.products, args.uncategorised, args.no_photo, args.seed), args.cache_dir, args.seed)
        (args.var / "built.json").write_text(json.dumps({"products": args.products}))
    load = _load()
    result = {"products": args.products, "load before": load, **train(args.seed), "load after": _load(),
              "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    from benchmarks.embedded import stop_embedded_database
    from django.db import connection

    connection.close()
    stop_embedded_database(args.var)


if __name__ == "__main__":
    main()
