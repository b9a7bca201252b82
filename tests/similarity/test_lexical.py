"""The lexical channel: BM25 weights, hashing, the worker's vectors and frequencies, the hybrid read path."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from django.db import connection, transaction
from django.conf import settings
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from pgvector import SparseVector

from similarity.indexing.lexical import rebuild_frequencies
from similarity.indexing.spaces import index_name
from similarity.indexing.writer import encode_objects
from similarity.ml import lexical
from similarity.ml.text_pipeline import tokenize
from similarity.models import DocumentFrequency, Embedding
from similarity.search.queries import hybrid_queryset, similar_to
from similarity.search.lexical import stored_weights
from tests.factories import GADGET, make_gadget, mark_ready, put_vectors, space, vectors_of
from tests.testapp.models import Gadget

DIM = 1792


def tuned(**options):
    """The test settings' SIMILARITY with ``options`` changed (the space's spec stays the same)."""
    return override_settings(SIMILARITY={**settings.SIMILARITY, **options})


# --- similarity.ml.lexical (no database) ---------------------------------------------------


def test_bm25_document_weights_match_a_hand_computation():
    bm25 = lexical.Bm25(k1=1.2, b=0.75)
    weights = bm25.document(["red", "dress", "red"], avgdl=2.0)
    # tf("red") = 2, tf("dress") = 1, length 3, avgdl 2: K = 1.2 * (0.25 + 0.75 * 1.5) = 1.65
    assert weights == {
        lexical.term_index("red"): pytest.approx(2 * 2.2 / (2 + 1.65)),
        lexical.term_index("dress"): pytest.approx(1 * 2.2 / (1 + 1.65)),
    }
    assert lexical.idf(3, 10) == pytest.approx(math.log(1 + 7.5 / 3.5))
    query = bm25.query(weights, {lexical.term_index("red"): 3}, 10)
    assert query[lexical.term_index("red")] == pytest.approx(2 * 2.2 / 3.65 * math.log(1 + 7.5 / 3.5))
    assert query[lexical.term_index("dress")] == pytest.approx(2.2 / 2.65 * math.log(1 + 10.5 / 0.5))  # unseen: df 0


def test_bigrams_are_counted_and_length_normalisation_is_relative():
    bm25 = lexical.Bm25(k1=1.0, b=1.0, ngrams=2)
    assert lexical.terms(["a1", "b2", "c3"], 2) == ["a1", "b2", "c3", "a1 b2", "b2 c3"]
    short = bm25.document(["x9", "y9"], avgdl=3.0)  # 3 terms, at the mean length: tf 1 -> 1.0
    assert short[lexical.term_index("x9 y9")] == pytest.approx(1.0)
    long = bm25.document(["x9", "y9", "z9", "w9"], avgdl=3.5)  # 7 terms, twice the mean
    assert long[lexical.term_index("x9")] == pytest.approx(2 / 3)


def test_a_document_keeps_at_most_the_index_limit_of_terms():
    tokens = [f"t{i}" for i in range(1500)] + ["t0"] * 5
    weights = lexical.Bm25().document(tokens, avgdl=1500)
    assert len(weights) == lexical.MAX_NONZERO == 1000
    assert lexical.term_index("t0") in weights  # the repeated term is the strongest: kept


def test_hashing_is_stable_across_processes():
    expected = {"iphone15": lexical.term_index("iphone15"), "连衣裙": lexical.term_index("连衣裙")}
    code = "from similarity.ml.lexical import term_index; print(term_index('iphone15'), term_index('连衣裙'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "7"})
    assert [int(x) for x in out.stdout.split()] == list(expected.values())
    # A fixed value guards against a change of hash function (stored vectors would stop matching).
    assert lexical.term_index("iphone15") == int.from_bytes(
        __import__("hashlib").blake2b(b"iphone15", digest_size=8).digest(), "little"
    ) % 2**29
    assert all(0 <= v < lexical.DIM for v in expected.values())


def test_chinese_titles_with_model_numbers_match_lexically():
    titles = [
        "Apple/苹果 iPhone 15 64G 黑色 手机",
        "苹果iphone15 64g 全网通 黑色",
        "华为 Mate 60 Pro 512G 手机",
        "红富士 苹果 5斤 新鲜水果",
    ]
    tokens = [tokenize(t) for t in titles]
    assert {"iphone15", "64g"} <= set(tokens[0]) & set(tokens[1])
    bm25 = lexical.Bm25(k1=2.0, b=1.0, ngrams=2)
    matrix, _ = bm25.matrix(tokens, lexical.mean_length(tokens, 2))
    scores = lexical.normalised_scores(matrix[:1], matrix, lexical.document_frequencies(matrix), len(titles))[0]
    assert scores[0] == pytest.approx(1.0)  # itself
    assert scores[1] > 0.3 and scores[1] == max(scores[1:])  # the same phone, written differently
    assert scores[2] < scores[1] and scores[3] < scores[1]


def test_combine_weights_the_two_scores():
    assert lexical.combine(0.8, 0.2, 0.0) == pytest.approx(0.8)
    assert lexical.combine(0.8, 0.2, 1.0) == pytest.approx(0.2)
    assert lexical.combine(np.array([0.8]), np.array([0.2]), 0.25)[0] == pytest.approx(0.65)


# --- the worker ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_worker_writes_lexical_vectors_and_counts_frequencies():
    a = make_gadget("L1", "苹果 iPhone 15 64G 黑色")
    b = make_gadget("L2", "iphone15 64g 白色")
    encode_objects(GADGET, [a.pk, b.pk])
    spec = space(GADGET).spec["lexical"]
    bm25 = lexical.Bm25(**spec)
    stored = stored_weights(vectors_of(a).lexical)
    lengths = [len(lexical.terms(tokenize(g.name), bm25.ngrams)) for g in (a, b)]
    assert stored == pytest.approx(bm25.document(tokenize(a.name), sum(lengths) / 2))
    assert vectors_of(a).lexical_length == lengths[0]
    counts = dict(DocumentFrequency.objects.filter(space=space(GADGET)).values_list("term", "count"))
    assert counts[DocumentFrequency.ITEMS] == 2 and counts[DocumentFrequency.TERMS] == sum(lengths)
    assert counts[lexical.term_index("iphone15")] == 2 and counts[lexical.term_index("白色")] == 1

    # A new title replaces its terms: the old ones are taken back, in the same write.
    b.name = "iphone15 64g 红色"
    b.save()
    encode_objects(GADGET, [b.pk])
    counts = dict(DocumentFrequency.objects.filter(space=space(GADGET)).values_list("term", "count"))
    assert lexical.term_index("白色") not in counts and counts[lexical.term_index("红色")] == 1
    assert counts[DocumentFrequency.ITEMS] == 2 and counts[lexical.term_index("iphone15")] == 2

    # Recounting from the stored vectors gives the same table.
    before = sorted(DocumentFrequency.objects.filter(space=space(GADGET)).values_list("term", "count"))
    assert rebuild_frequencies(space(GADGET)) == 2
    assert sorted(DocumentFrequency.objects.filter(space=space(GADGET)).values_list("term", "count")) == before


@pytest.mark.django_db
def test_frequencies_count_the_buckets_a_long_document_keeps_at_the_new_mean_length(monkeypatch):
    """Over MAX_NONZERO buckets a document keeps its strongest, and which ones can depend on the
    catalog's mean length, known only once the batch is counted: the counts follow the stored vector."""
    from django.contrib.contenttypes.models import ContentType
    from django.db import transaction
    from django.utils import timezone

    from similarity.indexing.lexical import write_lexical

    hashed = lexical.term_index
    fixed = {"a": 1, "b": 1, "c": 2}  # a and b share bucket 1 (tf 1 + 1), c is bucket 2 (tf 3)
    monkeypatch.setattr(lexical, "term_index", lambda t: 3 if " " in t else fixed.get(t, 10 + hashed(t) % 10**8))
    long_tokens = [f"t{i}" for i in range(998)] * 4 + ["a", "b"] + ["c"] * 3  # 1,001 buckets
    s = space(GADGET)
    bm25 = lexical.Bm25(**s.spec["lexical"])
    assert (bm25.k1, bm25.b) == (3.0, 1.0)  # bucket 1 beats bucket 2 at K = k1 (ties by bucket), loses above
    assert 1 in bm25.document(long_tokens) and 2 not in bm25.document(long_tokens)
    gadgets = [make_gadget("long", "long"), make_gadget("short", "short")]
    content_type = ContentType.objects.get_for_model(Gadget)
    rows = [
        (Embedding(space=s, content_type=content_type, object_id=g.pk, content_hash="t", encoded_at=timezone.now()), t)
        for g, t in zip(gadgets, [long_tokens, ["x9"]])
    ]
    with transaction.atomic():
        write_lexical(content_type.pk, rows)
        Embedding.objects.bulk_create([e for e, _ in rows])
    stored = stored_weights(vectors_of(gadgets[0]).lexical)
    assert len(stored) == lexical.MAX_NONZERO and 2 in stored and 1 not in stored  # the short one lowers the mean
    counts = dict(DocumentFrequency.objects.filter(space=s).values_list("term", "count"))
    assert 1 not in counts and counts[2] == 1
    before = sorted(counts.items())
    rebuild_frequencies(s)
    assert sorted(DocumentFrequency.objects.filter(space=s).values_list("term", "count")) == before


@pytest.mark.django_db
def test_the_sweeper_recounts_frequencies_after_a_delete():
    from similarity.indexing.lexical import frequencies_drifted
    from similarity.indexing.sweep import sweep

    kept = make_gadget("L1", "苹果 iPhone 15 64G 黑色")
    gone = make_gadget("L2", "iphone15 64g 白色")
    encode_objects(GADGET, [kept.pk, gone.pk])
    s = space(GADGET)

    def counts() -> dict[int, int]:
        return dict(DocumentFrequency.objects.filter(space=s).values_list("term", "count"))

    assert not frequencies_drifted(s)
    gone.delete()  # its vectors go with it; its terms are still counted
    assert Embedding.objects.filter(space=s, lexical__isnull=False).count() == 1
    assert counts()[DocumentFrequency.ITEMS] == 2 and counts()[lexical.term_index("白色")] == 1
    assert frequencies_drifted(s)

    sweep(GADGET)
    length = vectors_of(kept).lexical_length
    expected = {lexical.term_index(t): 1 for t in lexical.terms(tokenize(kept.name), s.spec["lexical"]["ngrams"])}
    assert counts() == {**expected, DocumentFrequency.ITEMS: 1, DocumentFrequency.TERMS: length}
    assert lexical.term_index("白色") not in counts() and counts()[lexical.term_index("iphone15")] == 1
    assert not frequencies_drifted(s)
    sweep(GADGET)  # nothing drifted: the counts stay
    assert counts() == {**expected, DocumentFrequency.ITEMS: 1, DocumentFrequency.TERMS: length}


@pytest.mark.django_db
def test_each_space_has_a_sparsevec_hnsw_index():
    s = space(GADGET)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name(s, "lexical")])
        (definition,) = cursor.fetchone()
    assert "hnsw" in definition and "sparsevec_ip_ops" in definition and f"space_id = {s.pk}" in definition


# --- the read path ---------------------------------------------------------------------------


def vec(*head: float) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(head)] = head
    return (v / np.linalg.norm(v)).tolist()


def lexical_gadget(code: str, title: str, vector: list[float], avgdl: float = 4.0) -> Gadget:
    g = Gadget.objects.create(code=code, name=title)
    mark_ready(Gadget.objects.filter(pk=g.pk))
    bm25 = lexical.Bm25(**space(GADGET).spec["lexical"])
    weights = bm25.document(tokenize(title), avgdl)
    put_vectors(g, fused=vector, lexical=SparseVector(weights, lexical.DIM) if weights else None)
    return g


def count_frequencies() -> None:
    rebuild_frequencies(space(GADGET))


@pytest.mark.django_db
def test_a_lexically_identical_item_comes_first_when_dense_vectors_tie():
    q = lexical_gadget("q", "华为 mate60 pro 512g 雅丹黑", vec(1, 0))
    other = lexical_gadget("other", "小米 14 ultra 白色 16g", vec(1, 0.2))
    twin = lexical_gadget("twin", "华为 mate60 pro 512g 雅丹黑", vec(1, 0.2))  # same dense score as other
    lexical_gadget("far", "红富士 苹果 5斤", vec(0, 1))
    count_frequencies()
    with tuned(LEXICAL_WEIGHT=0.5):
        result = similar_to(q, k=3)
    assert [n.object.code for n in result][:2] == ["twin", "other"]
    cosine = 1 / np.sqrt(1.04)
    assert result[0].score == pytest.approx(0.5 * cosine + 0.5 * 1.0, abs=1e-4)  # a copy scores 1 lexically
    assert result[1].score == pytest.approx(0.5 * cosine, abs=1e-4)  # nothing in common


@pytest.mark.django_db
def test_the_sql_score_is_the_offline_score():
    titles = ["iphone15 64g 黑色 手机", "iphone15 128g 黑色", "苹果 iphone15 手机 壳", "红富士 苹果 5斤"]
    vectors = [vec(1, 0), vec(1, 1), vec(1, 2), vec(0, 1)]
    gadgets = [lexical_gadget(f"g{i}", t, v, avgdl=3.0) for i, (t, v) in enumerate(zip(titles, vectors))]
    count_frequencies()
    with tuned(LEXICAL_WEIGHT=0.6, LEXICAL_CANDIDATES=10):
        result = {n.object.code: n.score for n in similar_to(gadgets[0], k=3)}
    bm25 = lexical.Bm25(**space(GADGET).spec["lexical"])
    matrix, _ = bm25.matrix([tokenize(t) for t in titles], 3.0)
    lex = lexical.normalised_scores(matrix[:1], matrix, lexical.document_frequencies(matrix), 4)[0]
    dense = np.asarray(vectors) @ np.asarray(vectors[0])
    expected = lexical.combine(dense, lex, 0.6)
    assert result == pytest.approx({f"g{i}": float(expected[i]) for i in (1, 2, 3)}, abs=1e-4)


@pytest.mark.django_db
def test_weight_zero_gives_exactly_the_dense_order_in_one_statement():
    q = lexical_gadget("q", "华为 mate60 pro 512g", vec(1, 0))
    for i in range(6):
        lexical_gadget(f"p{i}", "华为 mate60 pro 512g" if i % 2 else f"杂项 {i}", vec(1, i))
    count_frequencies()
    current = space(GADGET)
    with tuned(LEXICAL_WEIGHT=0.0):
        with CaptureQueriesContext(connection) as queries:
            result = similar_to(q, k=6, space=current)
    assert [n.object.code for n in result] == [f"p{i}" for i in range(6)]
    assert [n.score for n in result] == pytest.approx([float(np.dot(vec(1, 0), vec(1, i))) for i in range(6)], abs=1e-5)
    statements = [x["sql"] for x in queries.captured_queries]
    assert not any("lexical" in sql for sql in statements)
    assert sum(sql.startswith('SELECT "testapp_gadget"') for sql in statements) == 1
    with tuned(LEXICAL_WEIGHT=0.9):
        hybrid = [n.object.code for n in similar_to(q, k=6)]
    assert hybrid[:3] == ["p1", "p3", "p5"]  # the lexical twins move up


def indexed_catalog(n: int = 2000) -> tuple[list[Gadget], lexical.Bm25]:
    """``n`` gadgets of six random words with fused and lexical vectors, counted and analyzed."""
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone

    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(300)]
    gadgets = Gadget.objects.bulk_create([Gadget(code=f"r{i}", name=" ".join(rng.choice(words, 6))) for i in range(n)])
    bm25 = lexical.Bm25(**space(GADGET).spec["lexical"])
    content_type = ContentType.objects.get_for_model(Gadget)
    Embedding.objects.bulk_create([
        Embedding(
            space=space(GADGET), content_type=content_type, object_id=g.pk, content_hash="t", encoded_at=timezone.now(),
            fused=vec(*rng.normal(size=8)), lexical=SparseVector(bm25.document(g.name.split(), 12.0), lexical.DIM),
        )
        for g in gadgets
    ])
    count_frequencies()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE testapp_gadget")
        cursor.execute(f'ANALYZE "{Embedding._meta.db_table}"')
    return gadgets, bm25


@pytest.mark.django_db(transaction=True)  # TRUNCATE afterwards: no dead index entries left for later tests
def test_plan_uses_the_sparsevec_index_for_lexical_candidates():
    gadgets, bm25 = indexed_catalog()
    weights = bm25.document(gadgets[0].name.split(), 12.0)
    current = space(GADGET)
    with tuned(LEXICAL_CANDIDATES=10):
        ordered = hybrid_queryset(vec(1), weights, 0.9, k=10, mode="fused", queryset=Gadget.objects.all(), space=current)
        plan = ordered.explain()
        found = list(ordered)
    assert f"Index Scan using {index_name(current, 'lexical')}" in plan, plan
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    assert len(found) == 10 and found[0].pk == gadgets[0].pk  # its own words, found by the sparse index


@pytest.mark.django_db(transaction=True)  # TRUNCATE afterwards: no dead index entries left for later tests
def test_hybrid_statement_reads_only_the_candidates_rows():
    """No sequential scan of the vectors: the candidates come from both indexes, and their
    rows are then read by key (the scoring once joined every vector row of the space)."""
    gadgets, _ = indexed_catalog()
    current = space(GADGET)
    listed = Gadget.objects.filter(listed=True)
    with tuned(LEXICAL_WEIGHT=0.75, LEXICAL_CANDIDATES=10), CaptureQueriesContext(connection) as captured:
        found = similar_to(gadgets[0], k=10, queryset=listed, space=current)
    assert len(found) == 10 and gadgets[0].pk not in {n.object.pk for n in found}
    statements = [q["sql"] for q in captured.captured_queries]
    scan = next(sql for sql in statements if sql.startswith('SELECT "testapp_gadget"'))
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:  # the settings the query ran with
            if sql.startswith("SELECT set_config("):
                cursor.execute(sql)
        cursor.execute(f"EXPLAIN {scan}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Seq Scan on {Embedding._meta.db_table}" not in plan, plan
    assert f"Index Scan using {index_name(current, 'fused')}" in plan, plan
    assert f"Index Scan using {index_name(current, 'lexical')}" in plan, plan
    # The caller's filter still decides which rows can come back.
    Gadget.objects.filter(pk__in=[n.object.pk for n in found[:3]]).update(listed=False)
    with tuned(LEXICAL_WEIGHT=0.75, LEXICAL_CANDIDATES=10):
        again = similar_to(gadgets[0], k=10, queryset=listed, space=current)
    assert len(again) == 10 and not {n.object.pk for n in found[:3]} & {n.object.pk for n in again}


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, set()),
        ({"LEXICAL_WEIGHT": 1.5}, {"similarity.E026"}),
        ({"LEXICAL_WEIGHT": "0.5"}, {"similarity.E026"}),
        ({"LEXICAL_BM25": {"k1": 1.2, "b": 2}}, {"similarity.E027"}),
        ({"LEXICAL_BM25": {"ngrams": 3}}, {"similarity.E027"}),
        ({"LEXICAL_BM25": {"k1": 1.5}}, set()),  # the others keep their defaults
        ({"LEXICAL_CANDIDATES": 0}, {"similarity.E028"}),
    ],
)
def test_lexical_settings_are_checked(options, expected):
    from similarity.checks import check_settings

    with tuned(**options):
        ids = {m.id for m in check_settings()}
    assert ids & {"similarity.E026", "similarity.E027", "similarity.E028"} == expected


# --- text search -----------------------------------------------------------------------------


def text_gadget(code: str, title: str, *head: float) -> Gadget:
    """A gadget with a text vector (``head`` padded with zeros) and the worker's lexical vector."""
    g = Gadget.objects.create(code=code, name=title)
    mark_ready(Gadget.objects.filter(pk=g.pk))
    bm25 = lexical.Bm25(**space(GADGET).spec["lexical"])
    tokens = tokenize(title)
    v = np.zeros(space(GADGET).dims["text"], dtype=np.float32)
    v[: len(head)] = head
    put_vectors(
        g, text=(v / np.linalg.norm(v)).tolist(), lexical=SparseVector(bm25.document(tokens, 6.0), lexical.DIM),
        lexical_length=len(lexical.terms(tokens, bm25.ngrams)),
    )
    return g


def text_query(*head: float) -> np.ndarray:
    v = np.zeros(space(GADGET).dims["text"], dtype=np.float32)
    v[: len(head)] = head
    return v / np.linalg.norm(v)


def expected_lexical(query: str, titles: dict[str, str]) -> dict[str, float]:
    """Each title's lexical score for ``query`` as the offline functions give it (the query
    weighted as a document of the catalog's mean length, divided by its self-score)."""
    bm25 = lexical.Bm25(**space(GADGET).spec["lexical"])
    tokens = {code: tokenize(t) for code, t in titles.items()}
    docs = {code: bm25.document(t, 6.0) for code, t in tokens.items()}
    df: dict[int, int] = {}
    for weights in docs.values():
        for term in weights:
            df[term] = df.get(term, 0) + 1
    avgdl = sum(len(lexical.terms(t, bm25.ngrams)) for t in tokens.values()) / len(tokens)
    q = bm25.query(bm25.document(tokenize(query), avgdl), df, len(docs))
    own = bm25.document(tokenize(query), avgdl)
    self_score = sum(q[t] * own[t] for t in q)
    return {code: sum(q[t] * d.get(t, 0.0) for t in q) / self_score for code, d in docs.items()}


@pytest.mark.django_db
def test_text_search_ranks_the_lexical_match_first_when_dense_scores_tie():
    from similarity.search.text import search

    titles = {"case": "华为 Mate 60 手机壳 透明", "other": "小米 14 手机壳 透明", "far": "红富士 苹果 5斤"}
    gadgets = {
        "case": text_gadget("case", titles["case"], 1, 0.2),
        "other": text_gadget("other", titles["other"], 1, 0.2),  # the same cosine as "case"
        "far": text_gadget("far", titles["far"], 0, 1),
    }
    count_frequencies()
    query = "华为 mate60 手机壳"
    with tuned(LEXICAL_WEIGHT=0.75):
        hits = search(query, text_query(1, 0), queryset=Gadget.objects.all(), space=space(GADGET), k=3)
        by_code = search(" far ", text_query(1, 0), queryset=Gadget.objects.all(), space=space(GADGET), k=3)
    assert [h.object.code for h in hits] == ["case", "other", "far"]
    lex = expected_lexical(query, titles)
    assert 0.5 < lex["case"] < 1.0 and 0 < lex["other"] < 0.3 and lex["far"] == 0
    cosine = 1 / np.sqrt(1.04)
    assert [h.score for h in hits] == pytest.approx(
        [0.25 * cosine + 0.75 * lex["case"], 0.25 * cosine + 0.75 * lex["other"], 0.0], abs=1e-4
    )
    assert hits[0].text_similarity == pytest.approx(cosine, abs=1e-4)
    assert hits[0].shared_keywords == ["华为", "mate60", "手机", "壳"]
    # An exact identifier still comes first, whatever it scores.
    assert [h.object.code for h in by_code][0] == "far" and by_code[0].exact
    assert gadgets["far"].pk == by_code[0].object.pk


@pytest.mark.django_db
def test_text_search_weight_zero_keeps_the_keyword_share_order():
    from similarity.search.text import KEYWORD_WEIGHT, search

    # 华为, 手机 and 壳 are common in this catalog, mate60 is rare: the keyword share and
    # BM25 disagree about which of two densely tied items matches the query better.
    for i in range(8):
        text_gadget(f"filler{i}", f"华为 手机壳 防摔 款{i}", 0, 1, i)
    text_gadget("common", "华为 手机壳 通用款", 1, 0.3)
    text_gadget("rare", "mate60 保护套", 1, 0.3)
    count_frequencies()
    query, vector = "华为 mate60 手机壳", text_query(1, 0)
    with tuned(LEXICAL_WEIGHT=0.0):
        dense = search(query, vector, queryset=Gadget.objects.all(), space=space(GADGET), k=4)
    with tuned(LEXICAL_WEIGHT=0.75):
        hybrid = search(query, vector, queryset=Gadget.objects.all(), space=space(GADGET), k=4)
    cosine = 1 / np.sqrt(1.09)
    # w = 0: cosine + KEYWORD_WEIGHT * share of the query's 4 tokens, as before the lexical channel.
    assert [h.object.code for h in dense] == ["common", "rare", "filler0", "filler1"]
    assert [h.score for h in dense] == pytest.approx(
        [cosine + KEYWORD_WEIGHT * 3 / 4, cosine + KEYWORD_WEIGHT / 4, KEYWORD_WEIGHT * 3 / 4, KEYWORD_WEIGHT * 3 / 4],
        abs=1e-4,
    )
    assert [h.object.code for h in hybrid][:2] == ["rare", "common"]  # the rare model number weighs more
