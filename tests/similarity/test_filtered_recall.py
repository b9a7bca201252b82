"""A filter that keeps 2% of 20,000 items must not cost results or recall: pgvector's
iterative HNSW scan keeps going until it has k matches."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.utils import timezone

from similarity.models import Embedding
from similarity.search.queries import nearest_queryset
from similarity.search.scan import tune_scan
from tests.factories import GADGET, shelf_path, space
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db(transaction=True)  # TRUNCATE afterwards: 20k rows

N, RARE_EVERY, K, QUERIES, DIM = 20_000, 50, 10, 40, 32


@pytest.fixture
def catalog(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 16, "TEXT_DIM": 16}  # fused: 32-d
    current = space(GADGET)
    rare, common = shelf_path("稀有"), shelf_path("常见")
    rng = np.random.default_rng(42)
    vectors = rng.normal(size=(N, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gadgets = Gadget.objects.bulk_create(
        [Gadget(code=f"r{i}", name="r", shelf=rare if i % RARE_EVERY == 0 else common) for i in range(N)],
        batch_size=5000,
    )
    content_type = ContentType.objects.get_for_model(Gadget)
    now = timezone.now()
    Embedding.objects.bulk_create(
        [
            Embedding(space=current, content_type=content_type, object_id=p.pk, fused=v.tolist(), content_hash="x", encoded_at=now)
            for p, v in zip(gadgets, vectors)
        ],
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE testapp_gadget")
        cursor.execute("ANALYZE similarity_embedding")
    ids = np.array([p.pk for p in gadgets])
    return current, rare, ids, vectors, rng


def test_filtered_hnsw_scan_keeps_k_results_and_recall(catalog, client):
    current, rare, ids, vectors, rng = catalog
    in_filter = np.arange(N) % RARE_EVERY == 0
    assert in_filter.sum() == N // RARE_EVERY  # 400 gadgets: 2%
    queryset = Gadget.objects.filter(shelf=rare)
    recalls = []
    for _ in range(QUERIES):
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        exact = set(ids[in_filter][np.argsort(-(vectors[in_filter] @ query))[:K]])
        # The index path alone (no exact fallback), as the query layer runs it.
        with transaction.atomic():
            tune_scan("default", K)
            plan = nearest_queryset(query.tolist(), k=K, mode="fused", queryset=queryset, space=current).explain()
            found = [row.pk for row in nearest_queryset(query.tolist(), k=K, mode="fused", queryset=queryset, space=current)]
        assert "similarity_emb_s" in plan, plan  # the space's HNSW index answers
        assert len(found) == K  # the filter did not starve the result list
        recalls.append(len(exact & set(found)) / K)
    print(f"\nfiltered (2% of 20k) recall@10 of the HNSW path: {np.mean(recalls):.3f} (min {min(recalls):.1f})")
    assert np.mean(recalls) >= 0.9

    # Through the API: a gadget of the rare category, filtered to that category.
    gadget = Gadget.objects.filter(shelf=rare).first()
    body = client.get(f"/api/gadgets/{gadget.pk}/similar/", {"k": K, "category": rare.pk}).json()
    assert len(body["results"]) == K
    assert {tuple(r["item"]["categories"]) for r in body["results"]} == {("稀有",)}
