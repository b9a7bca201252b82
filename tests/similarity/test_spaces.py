"""Switching encoder configurations (here: an image encoder of another dimension) without a
migration and without a moment where a query returns a wrong result."""
from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from similarity import backends
from similarity.indexing.spaces import coverage, ensure_configured_space, index_name
from similarity.indexing.writer import encode_claimed, encode_objects
from similarity.models import SpaceState, VectorSpace
from similarity.registry import get_adapter
from similarity.search.queries import similar_to
from tests.factories import GADGET as LABEL
from tests.factories import image_bytes, make_gadget, states
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db
COLOURS = [(200, 30, 30), (190, 40, 35), (30, 200, 30), (40, 190, 45), (30, 30, 200), (35, 45, 190), (120, 120, 0), (0, 120, 120)]
TITLES = ["红色 连衣裙", "红色 长裙", "绿色 T恤", "绿色 衬衫", "蓝色 牛仔裤", "蓝色 短裤", "黄色 帽子", "青色 围巾"]


@pytest.fixture
def gadgets(sent):
    gadgets = [make_gadget(f"S{i}", title, image=image_bytes(colour)) for i, (title, colour) in enumerate(zip(TITLES, COLOURS))]
    encode_objects(LABEL, [g.pk for g in gadgets])
    return gadgets


def exact_answer(items: list[Gadget], spec: dict, k: int = 5) -> dict[int, list[tuple[int, float]]]:
    """Nearest neighbours by exact cosine, computed here from the encoders of ``spec``."""
    encoders = backends.encoders_for(spec)
    from similarity.indexing.encoding import decode_async, encode_rest, encode_text, read

    space = VectorSpace(pk=-1, spec=spec)
    adapter = get_adapter(LABEL)
    items = [read(g, adapter) for g in adapter.get_queryset().filter(pk__in=[g.pk for g in items])]
    for item in items:
        item.spaces = [space]
    wait = decode_async(items)
    encode_text(items, space, encoders)
    wait()
    encode_rest(items, space, encoders)
    vectors = {i.obj.pk: np.asarray(i.vectors[-1]["fused"]) for i in items}
    answer = {}
    for pk, v in vectors.items():
        # Rounded before ordering: equal scores (to float32's precision) go by key, as in observed().
        scores = sorted(((round(float(v @ w), 4), other) for other, w in vectors.items() if other != pk), reverse=True)[:k]
        answer[pk] = [(other, round(score, 4)) for score, other in scores]
    return answer


def observed(items: list[Gadget], k: int = 5) -> dict[int, list[tuple[int, float]]]:
    """What the query layer answers, equal scores ordered as ``exact_answer`` orders them."""
    answer = {}
    for g in items:
        found = sorted(((round(n.score, 4), n.object.pk) for n in similar_to(g, k=k)), reverse=True)
        answer[g.pk] = [(pk, score) for score, pk in found]
    return answer


def test_a_new_dimension_is_built_beside_the_old_one_and_switched_atomically(gadgets, settings, sent):
    old_space = VectorSpace.active_for(LABEL)
    old_answer = exact_answer(gadgets, old_space.spec)
    assert observed(gadgets) == old_answer

    # A different image encoder size: a new configuration, no migration.
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 64, "BATCH_SIZE": 3}
    new_space = ensure_configured_space(LABEL)
    assert new_space.state == SpaceState.BUILDING and new_space.dims["image"] == 64 and new_space.dims["fused"] == 576
    assert set(states(Gadget.objects.all()).values_list("status", flat=True)) == {"pending"}  # all queued again
    new_answer = exact_answer(gadgets, new_space.spec)
    assert new_answer != old_answer

    # The worker fills the new space batch by batch; after every batch every query gives
    # exactly the old space's answer, until the last batch switches to the new one.
    batches = 0
    while Gadget.objects.filter(similarity_states__status="pending").exists():
        encode_claimed(LABEL, f"task-{batches}")
        batches += 1
        active = VectorSpace.active_for(LABEL)
        expected = new_answer if active == new_space else old_answer
        assert observed(gadgets) == expected, f"after batch {batches} ({active})"
    assert batches == 3
    assert VectorSpace.active_for(LABEL) == new_space
    old_space.refresh_from_db()
    assert old_space.state == SpaceState.RETIRED and not old_space.embeddings.exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'similarity_embedding'")
        indexes = {row[0] for row in cursor.fetchall()}
    assert {index_name(new_space, c) for c in ("image", "text", "fused")} <= indexes
    assert not {index_name(old_space, c) for c in ("image", "text", "fused")} & indexes


def test_a_threshold_switches_early_and_leaves_the_rest_out(gadgets, settings, sent):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 32, "BATCH_SIZE": 6, "SWITCH_COVERAGE": 0.75}
    new_space = ensure_configured_space(LABEL)
    encode_claimed(LABEL, "first")  # 6 of 8 rows: 75 %
    assert coverage(new_space) == (6, 8)
    assert VectorSpace.active_for(LABEL) == new_space
    covered = set(new_space.embeddings.values_list("object_id", flat=True))
    for p in gadgets:
        result = similar_to(p, k=10)
        if p.pk in covered:
            assert {n.object.pk for n in result} == covered - {p.pk}  # never a row of the old space
        else:
            assert result == []  # no vector in the active space yet
    encode_claimed(LABEL, "second")
    assert all(len(similar_to(p, k=10)) == 7 for p in gadgets)


def test_a_superseded_building_space_is_dropped(gadgets, settings, sent):
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 64, "BATCH_SIZE": 3}
    first = ensure_configured_space(LABEL)
    encode_claimed(LABEL, "partial")  # 3 of 8
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_DIM": 96}
    second = ensure_configured_space(LABEL)
    first.refresh_from_db()
    assert first.state == SpaceState.RETIRED and not first.embeddings.exists()
    assert second.state == SpaceState.BUILDING
    assert VectorSpace.objects.filter(model_label=LABEL, state=SpaceState.BUILDING).get() == second


def test_changing_back_to_the_active_configuration_builds_nothing(gadgets, settings, sent):
    active = VectorSpace.active_for(LABEL)
    assert ensure_configured_space(LABEL) == active
    assert VectorSpace.objects.count() == 1


def test_a_space_with_the_same_encoders_reuses_their_vectors_and_runs_no_encoder(gadgets, settings, sent):
    """New fusion weights (or lexical options, or a learned model) change no encoder output:
    the new space copies the image and text vectors of the active one and only fuses again."""
    from unittest import mock

    old_space = VectorSpace.active_for(LABEL)
    settings.SIMILARITY = {**settings.SIMILARITY, "IMAGE_WEIGHT": 0.6, "TEXT_WEIGHT": 0.4}
    new_space = ensure_configured_space(LABEL)
    assert new_space.key != old_space.key
    encoders = backends.encoders_for(new_space.spec)
    with mock.patch.object(type(encoders.image), "encode", side_effect=AssertionError("image encoder ran")), \
            mock.patch.object(type(encoders.text), "encode", side_effect=AssertionError("text encoder ran")), \
            mock.patch("similarity.indexing.encoding.decode_image", side_effect=AssertionError("photo decoded")):
        encode_objects(LABEL, [g.pk for g in gadgets])
    assert VectorSpace.active_for(LABEL) == new_space
    copied = {e.object_id: e for e in new_space.embeddings.all()}
    assert len(copied) == len(gadgets)
    answer = exact_answer(gadgets, new_space.spec)  # encoders run here, outside the patch
    assert observed(gadgets) == answer
    first = copied[gadgets[0].pk]
    np.testing.assert_allclose(first.fused[:len(first.image)], np.sqrt(0.6) * np.asarray(first.image), atol=1e-6)


def test_half_precision_indexes_answer_like_single_precision_and_reuse_the_vectors(gadgets, settings, sent):
    """INDEX_PRECISION "half" builds a space whose HNSW indexes hold halfvec copies: no encoder
    runs (the stored vectors are copied), the scan uses the halfvec index, and the answers
    match the float32 space's to halfvec's precision."""
    from unittest import mock

    from django.test.utils import CaptureQueriesContext

    from similarity.checks import check_settings

    single = VectorSpace.active_for(LABEL)
    before = observed(gadgets)
    settings.SIMILARITY = {**settings.SIMILARITY, "INDEX_PRECISION": "half"}
    assert check_settings() == []
    half = ensure_configured_space(LABEL)
    assert half.key != single.key and half.half_precision and not single.half_precision
    encoders = backends.encoders_for(half.spec)
    with mock.patch.object(type(encoders.image), "encode", side_effect=AssertionError("image encoder ran")), \
            mock.patch.object(type(encoders.text), "encode", side_effect=AssertionError("text encoder ran")):
        encode_objects(LABEL, [g.pk for g in gadgets])
    assert VectorSpace.active_for(LABEL) == half
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name(half, "fused")])
        (definition,) = cursor.fetchone()
        cursor.execute("SET enable_seqscan = off")  # eight rows: the planner would rather scan them all
    assert "halfvec(1792)" in definition and "halfvec_cosine_ops" in definition
    with CaptureQueriesContext(connection) as captured:
        after = observed(gadgets)
    scan = next(q["sql"] for q in captured.captured_queries if "<=>" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {scan}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert f"Index Scan using {index_name(half, 'fused')}" in plan, plan
    for pk, neighbours in before.items():  # the same items, scores within halfvec's precision
        assert {other for other, _ in after[pk]} == {other for other, _ in neighbours}
        assert [score for _, score in after[pk]] == pytest.approx([score for _, score in neighbours], abs=2e-3)



def test_hnsw_build_options_build_a_new_space_from_the_stored_vectors(gadgets, settings, sent):
    """HNSW_BUILD names how a space's indexes are built (ef_construction 128 by default); other
    options build a new space from the stored vectors, no encoder runs, the answers the same.
    pgvector's own defaults keep the key of a space from before the setting."""
    from unittest import mock

    def options(space: VectorSpace) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [index_name(space, "fused")])
            return cursor.fetchone()[0]

    default = VectorSpace.active_for(LABEL)
    assert default.spec["hnsw"] == {"m": 16, "ef_construction": 128}
    assert options(default) == ["m=16", "ef_construction=128"]
    before = observed(gadgets)
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_BUILD": {"m": 8, "ef_construction": 40}}
    wider = ensure_configured_space(LABEL)
    assert wider.key != default.key and wider.spec["hnsw"] == {"m": 8, "ef_construction": 40}
    encoders = backends.encoders_for(wider.spec)
    with mock.patch.object(type(encoders.image), "encode", side_effect=AssertionError("image encoder ran")), \
            mock.patch.object(type(encoders.text), "encode", side_effect=AssertionError("text encoder ran")):
        encode_objects(LABEL, [g.pk for g in gadgets])
    assert VectorSpace.active_for(LABEL) == wider
    assert options(wider) == ["m=8", "ef_construction=40"]
    after = observed(gadgets)
    for pk, neighbours in before.items():
        assert [other for other, _ in after[pk]] == [other for other, _ in neighbours]
    settings.SIMILARITY = {**settings.SIMILARITY, "HNSW_BUILD": {"ef_construction": 64}}
    legacy = ensure_configured_space(LABEL)
    assert "hnsw" not in legacy.spec and legacy.hnsw_build == {"m": 16, "ef_construction": 64}
    encode_objects(LABEL, [g.pk for g in gadgets])
    assert options(legacy) == ["m=16", "ef_construction=64"]
