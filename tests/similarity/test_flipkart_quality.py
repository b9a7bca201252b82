"""Real data, real weights: level-1 precision@10 of the fused vectors on flipkart1050.

Imports ../shared/data/flipkart1050 through the importer, hides the category of every
held-out product (the text encoder reads the category path, so keeping it would leak the
label), encodes the catalog with EfficientNet-Lite0 and the multilingual sentence encoder
in-process, then queries neighbours through the HNSW index for each held-out product
(protocol in ../shared/data/README.md).
"""
from __future__ import annotations

from similarity.models import embedding_of

from unittest import mock

import pytest

from catalog.importer import import_csv
from catalog.models import Product
from similarity.indexing.writer import encode_objects
from similarity.ml.evaluation import category_at_level, is_held_out, precision_at_k
from similarity.search.queries import similar_to
from similarity.tasks import encode_task
from tests.conftest import shared_dataset

# Transactional: the rows are truncated afterwards, leaving no dead HNSW entries behind.
pytestmark = [pytest.mark.weights, pytest.mark.data, pytest.mark.django_db(transaction=True)]

REAL_ENCODERS = {
    "IMAGE_ENCODER": "similarity.ml.encoders.image.EfficientNetLiteImageEncoder",
    "TEXT_ENCODER": "similarity.ml.encoders.text.UniversalSentenceEncoder",
}


def mean_precision(paths: dict[int, str], level: int, mode: str, k: int = 10) -> float:
    label = {pk: category_at_level(path, level) for pk, path in paths.items()}
    scores = []
    products = Product.objects.all()
    for p in products:
        if not is_held_out(p.sku) or getattr(embedding_of(p), mode) is None:
            continue
        neighbours = similar_to(p, k=k, mode=mode)
        scores.append(precision_at_k(label[p.pk], [label[n.object.pk] for n in neighbours], k))
    return sum(scores) / len(scores)


def test_flipkart_fused_level1_precision_at_10(settings, capsys):
    csv_path = shared_dataset("flipkart1050")
    settings.SIMILARITY = {**settings.SIMILARITY, **REAL_ENCODERS, "BATCH_SIZE": 64}
    with mock.patch.object(encode_task, "apply_async"):  # encoded in-process below
        report = import_csv(csv_path, currency="INR")
    assert report.created >= 1000
    paths = {p.pk: p.category.path for p in Product.objects.select_related("category")}
    Product.objects.filter(pk__in=[p.pk for p in Product.objects.all() if is_held_out(p.sku)]).update(category=None)
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), 64):
        encode_objects("catalog.Product", pks[start : start + 64])
    assert Product.objects.filter(similarity_states__status="ready").count() == len(pks)

    results = {(mode, level): mean_precision(paths, level, mode) for mode in ("image", "text", "fused") for level in (1, 2)}
    with capsys.disabled():
        for (mode, level), value in sorted(results.items()):
            print(f"\nflipkart1050 held-out P@10 level {level} {mode:5s}: {value:.3f}", end="")
        print()
    assert results[("fused", 1)] >= 0.85
    # Fusion must not be worse than its better half at the headline level.
    assert results[("fused", 2)] >= max(results[("image", 2)], results[("text", 2)]) - 0.01
