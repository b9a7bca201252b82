"""The read path: order, scores, filters, and the HNSW index in the plan."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Subquery
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalog.models import Product
from similarity.indexing.spaces import index_name
from similarity.models import Embedding
from similarity.search.explain import explain, explanation_annotations
from similarity.search.queries import nearest_queryset, similar_to
from tests.factories import mark_ready, put_vectors, space

pytestmark = pytest.mark.django_db

DIM = 1792


def vec(*head: float) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(head)] = head
    return (v / np.linalg.norm(v)).tolist()


def product_with(sku: str, vector: list[float], **fields) -> Product:
    p = Product.objects.create(sku=sku, title=sku, **fields)
    mark_ready(Product.objects.filter(pk=p.pk))
    if vector is not None:
        put_vectors(p, fused=vector)
    p.refresh_from_db()
    return p


def test_neighbours_ordered_by_cosine_with_scores():
    q = product_with("q", vec(1, 0))
    near = product_with("near", vec(1, 0.1))
    mid = product_with("mid", vec(1, 1))
    far = product_with("far", vec(0, 1))
    opposite = product_with("opposite", vec(-1, 0))
    product_with("no-vector", None)  # never returned

    result = similar_to(q, k=10)
    assert [n.object.sku for n in result] == ["near", "mid", "far", "opposite"]
    scores = [n.score for n in result]
    assert scores == pytest.approx([1 / np.sqrt(1.01), 1 / np.sqrt(2), 0.0, -1.0], abs=1e-5)


def test_k_limits_and_self_is_excluded():
    q = product_with("q", vec(1, 0))
    for i in range(5):
        product_with(f"p{i}", vec(1, i))
    result = similar_to(q, k=3)
    assert [n.object.sku for n in result] == ["p0", "p1", "p2"]
    assert q.pk not in [n.object.pk for n in result]


def test_queryset_filter_is_applied():
    q = product_with("q", vec(1, 0))
    product_with("inactive", vec(1, 0.01), is_active=False)
    product_with("active", vec(0.5, 1))
    result = similar_to(q, k=5, queryset=Product.objects.filter(is_active=True))
    assert [n.object.sku for n in result] == ["active"]


def test_no_vector_means_no_neighbours():
    q = Product.objects.create(sku="fresh", title="not encoded yet")
    product_with("other", vec(1))
    assert similar_to(q) == []


@pytest.mark.django_db(transaction=True)  # TRUNCATE afterwards: no dead index entries left for later tests
def test_plan_uses_the_hnsw_cosine_index():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    products = Product.objects.bulk_create([Product(sku=f"r{i}", title="r") for i in range(len(vectors))])
    mark_ready(Product.objects.all())
    current, content_type = space(), ContentType.objects.get_for_model(Product)
    Embedding.objects.bulk_create(
        [
            Embedding(space=current, content_type=content_type, object_id=p.pk, fused=vec(*v), content_hash="x", encoded_at=timezone.now())
            for p, v in zip(products, vectors)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE catalog_product")
        cursor.execute("ANALYZE similarity_embedding")
    qs = nearest_queryset(vec(1, 2, 3), k=10, mode="fused", queryset=Product.objects.filter(is_active=True), space=current)
    plan = qs.explain()
    # The space's own partial index on (fused::vector(1792)) WHERE space_id = <id>.
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    # Also when the query vector is read by subquery (similar_to: it never leaves the database).
    stored = Embedding.objects.filter(space=current, object_id=products[0].pk).values("fused")[:1]
    plan = nearest_queryset(Subquery(stored), k=10, mode="fused", queryset=Product.objects.all(), space=current).explain()
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    # And the statement similar_to() runs: the query vector, the check that there is one
    # and the explanations' cosines are scalar subqueries of the same statement.
    with CaptureQueriesContext(connection) as captured:
        found = similar_to(products[0], k=10, space=current, annotations=explanation_annotations(current, products[0]))
    assert len(found) == 10
    scan = next(q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "catalog_product"'))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {scan}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan


def test_short_index_scan_falls_back_to_an_exact_answer():
    """Many dead index entries (rolled back or re-encoded rows) must not shorten results."""
    q = product_with("q", vec(1, 0))
    for i in range(12):
        product_with(f"live{i}", vec(1, i / 10))
    # Churn: rewrite every vector many times, leaving dead HNSW entries behind.
    rng = np.random.default_rng(5)
    for _ in range(30):
        for p in Product.objects.exclude(sku="q"):
            put_vectors(p, fused=vec(*rng.normal(size=4)))
    for i, p in enumerate(Product.objects.exclude(sku="q").order_by("sku")):
        put_vectors(p, fused=vec(1, int(p.sku[4:]) / 10))
    result = similar_to(q, k=10)
    assert [n.object.sku for n in result] == [f"live{i}" for i in range(10)]


def test_explanations_read_with_the_results_equal_their_own_query():
    rng = np.random.default_rng(3)
    current = space()
    dims = current.dims

    def unit(n: int) -> list[float]:
        v = rng.normal(size=n)
        return (v / np.linalg.norm(v)).tolist()

    products = [product_with(f"e{i}", vec(1, i / 5)) for i in range(6)]
    for p in products:
        put_vectors(
            p, fused=vec(1, int(p.sku[1:]) / 5), image=unit(dims["image"]), text=unit(dims["text"]),
            attention={"image": 0.25, "text": 0.75},
        )
    query = products[0]
    together = similar_to(query, k=5, annotations=explanation_annotations(current, query))
    apart = similar_to(query, k=5)
    assert [n.object.pk for n in together] == [n.object.pk for n in apart]
    assert [n.score for n in together] == [n.score for n in apart]
    expected = explain(apart, current, query=query)
    assert explain(together, current, query=query) == expected
    assert expected[0]["image_similarity"] is not None and expected[0]["attention"] == {"image": 0.25, "text": 0.75}


def test_an_item_without_a_vector_in_the_space_gets_no_neighbours_even_with_explanations():
    q = Product.objects.create(sku="fresh", title="not encoded yet")
    for i in range(3):
        product_with(f"p{i}", vec(1, i))
    assert similar_to(q, k=2, annotations=explanation_annotations(space(), q)) == []
