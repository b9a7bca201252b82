"""The read path: order, scores, filters, and the HNSW index in the plan."""
from __future__ import annotations

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Subquery
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from similarity.indexing.spaces import index_name
from similarity.models import Embedding
from similarity.search.explain import explain, explanation_annotations
from similarity.search.queries import nearest_queryset, similar_to
from tests.factories import GADGET, mark_ready, put_vectors, space
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db

DIM = 1792


def vec(*head: float) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(head)] = head
    return (v / np.linalg.norm(v)).tolist()


def gadget_with(code: str, vector: list[float], **fields) -> Gadget:
    p = Gadget.objects.create(code=code, name=code, **fields)
    mark_ready(Gadget.objects.filter(pk=p.pk))
    if vector is not None:
        put_vectors(p, fused=vector)
    p.refresh_from_db()
    return p


def test_neighbours_ordered_by_cosine_with_scores():
    q = gadget_with("q", vec(1, 0))
    near = gadget_with("near", vec(1, 0.1))
    mid = gadget_with("mid", vec(1, 1))
    far = gadget_with("far", vec(0, 1))
    opposite = gadget_with("opposite", vec(-1, 0))
    gadget_with("no-vector", None)  # never returned

    result = similar_to(q, k=10)
    assert [n.object.code for n in result] == ["near", "mid", "far", "opposite"]
    scores = [n.score for n in result]
    assert scores == pytest.approx([1 / np.sqrt(1.01), 1 / np.sqrt(2), 0.0, -1.0], abs=1e-5)


def test_k_limits_and_self_is_excluded():
    q = gadget_with("q", vec(1, 0))
    for i in range(5):
        gadget_with(f"p{i}", vec(1, i))
    result = similar_to(q, k=3)
    assert [n.object.code for n in result] == ["p0", "p1", "p2"]
    assert q.pk not in [n.object.pk for n in result]


def test_queryset_filter_is_applied():
    q = gadget_with("q", vec(1, 0))
    gadget_with("inactive", vec(1, 0.01), listed=False)
    gadget_with("active", vec(0.5, 1))
    result = similar_to(q, k=5, queryset=Gadget.objects.filter(listed=True))
    assert [n.object.code for n in result] == ["active"]


def test_no_vector_means_no_neighbours():
    q = Gadget.objects.create(code="fresh", name="not encoded yet")
    gadget_with("other", vec(1))
    assert similar_to(q) == []


@pytest.mark.django_db(transaction=True)  # TRUNCATE afterwards: no dead index entries left for later tests
def test_plan_uses_the_hnsw_cosine_index():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 8)).astype(np.float32)
    gadgets = Gadget.objects.bulk_create([Gadget(code=f"r{i}", name="r") for i in range(len(vectors))])
    mark_ready(Gadget.objects.all())
    current, content_type = space(GADGET), ContentType.objects.get_for_model(Gadget)
    Embedding.objects.bulk_create(
        [
            Embedding(space=current, content_type=content_type, object_id=p.pk, fused=vec(*v), content_hash="x", encoded_at=timezone.now())
            for p, v in zip(gadgets, vectors)
        ]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE testapp_gadget")
        cursor.execute("ANALYZE similarity_embedding")
    qs = nearest_queryset(vec(1, 2, 3), k=10, mode="fused", queryset=Gadget.objects.filter(listed=True), space=current)
    plan = qs.explain()
    # The space's own partial index on (fused::vector(1792)) WHERE space_id = <id>.
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    # Also when the query vector is read by subquery (similar_to: it never leaves the database).
    stored = Embedding.objects.filter(space=current, object_id=gadgets[0].pk).values("fused")[:1]
    plan = nearest_queryset(Subquery(stored), k=10, mode="fused", queryset=Gadget.objects.all(), space=current).explain()
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    # And the statement similar_to() runs: the query vector, the check that there is one
    # and the explanations' cosines are scalar subqueries of the same statement.
    with CaptureQueriesContext(connection) as captured:
        found = similar_to(gadgets[0], k=10, space=current, annotations=explanation_annotations(current, gadgets[0]))
    assert len(found) == 10
    scan = next(q["sql"] for q in captured.captured_queries if q["sql"].startswith('SELECT "testapp_gadget"'))
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {scan}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan


def test_short_index_scan_falls_back_to_an_exact_answer():
    """Many dead index entries (rolled back or re-encoded rows) must not shorten results."""
    q = gadget_with("q", vec(1, 0))
    for i in range(12):
        gadget_with(f"live{i}", vec(1, i / 10))
    # Churn: rewrite every vector many times, leaving dead HNSW entries behind.
    rng = np.random.default_rng(5)
    for _ in range(30):
        for p in Gadget.objects.exclude(code="q"):
            put_vectors(p, fused=vec(*rng.normal(size=4)))
    for i, p in enumerate(Gadget.objects.exclude(code="q").order_by("code")):
        put_vectors(p, fused=vec(1, int(p.code[4:]) / 10))
    result = similar_to(q, k=10)
    assert [n.object.code for n in result] == [f"live{i}" for i in range(10)]


def test_explanations_read_with_the_results_equal_their_own_query():
    rng = np.random.default_rng(3)
    current = space(GADGET)
    dims = current.dims

    def unit(n: int) -> list[float]:
        v = rng.normal(size=n)
        return (v / np.linalg.norm(v)).tolist()

    gadgets = [gadget_with(f"e{i}", vec(1, i / 5)) for i in range(6)]
    for p in gadgets:
        put_vectors(
            p, fused=vec(1, int(p.code[1:]) / 5), image=unit(dims["image"]), text=unit(dims["text"]),
            attention={"image": 0.25, "text": 0.75},
        )
    query = gadgets[0]
    together = similar_to(query, k=5, annotations=explanation_annotations(current, query))
    apart = similar_to(query, k=5)
    assert [n.object.pk for n in together] == [n.object.pk for n in apart]
    assert [n.score for n in together] == [n.score for n in apart]
    expected = explain(apart, current, query=query)
    assert explain(together, current, query=query) == expected
    assert expected[0]["image_similarity"] is not None and expected[0]["attention"] == {"image": 0.25, "text": 0.75}


def test_an_item_without_a_vector_in_the_space_gets_no_neighbours_even_with_explanations():
    q = Gadget.objects.create(code="fresh", name="not encoded yet")
    for i in range(3):
        gadget_with(f"p{i}", vec(1, i))
    assert similar_to(q, k=2, annotations=explanation_annotations(space(GADGET), q)) == []
