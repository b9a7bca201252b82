"""Clustering built for large catalogs: fitted on a sample, every item assigned while its
vectors stream past, progress on the run's row, failures recorded, bulk reads of vectors."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from django.contrib.contenttypes.models import ContentType

from similarity.categories import clustering
from similarity.categories.clustering import run_clustering
from similarity.indexing.stored import iter_vectors, read_vectors
from similarity.ml.clusters import fit_clusters
from similarity.models import CategoryCluster, ClusterMember, ClusterRun, Embedding, RunStatus, VectorSpace
from similarity.registry import get_adapter
from tests.factories import GADGET, grouped_gadgets
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog():
    return grouped_gadgets()


def test_stored_vectors_are_read_in_binary_exactly_as_the_orm_reads_them(catalog):
    space = VectorSpace.active_for(GADGET)
    content_type = ContentType.objects.get_for_model(Gadget).pk
    pks = sorted(Gadget.objects.values_list("pk", flat=True))
    expected = dict(Embedding.objects.filter(space=space).values_list("object_id", "fused"))
    chunks = list(iter_vectors(space, "fused", content_type, pks + [10**9], chunk=5))  # one key has no row
    assert [len(keys) for keys, _ in chunks] == [5, 5, 5, 5, 4]
    for keys, vectors in chunks:
        assert vectors.dtype == np.float32 and vectors.shape == (len(keys), 1792)
        for key, vector in zip(keys, vectors):
            np.testing.assert_array_equal(vector, np.asarray(expected[key], np.float32))
    keys, vectors = read_vectors(space, "fused", content_type, list(reversed(pks)))
    assert keys == list(reversed(pks))  # in the order asked
    np.testing.assert_array_equal(vectors[0], np.asarray(expected[pks[-1]], np.float32))
    with pytest.raises(ValueError, match="no vector column"):
        list(iter_vectors(space, "fused; DROP TABLE x", content_type, pks))


def test_a_sample_fits_the_clusters_and_every_item_is_assigned(catalog):
    run = run_clustering(GADGET, k=3, sample=9)  # 9 of the 24 items fit the centres
    assert run.status == RunStatus.DONE and run.products == 24 and run.finished_at is not None
    members = ClusterMember.objects.filter(cluster__run=run)
    assert members.count() == 24
    assert set(members.values_list("object_id", flat=True)) == set(Gadget.objects.values_list("pk", flat=True))
    assert all(0.0 <= d <= 2.0 for d in members.values_list("distance", flat=True))
    # The three groups are far apart: a sample of nine still finds them.
    assert sorted(c.size for c in CategoryCluster.objects.filter(run=run)) == [8, 8, 8]


def test_progress_goes_through_every_stage_and_the_assignment_counts_up(catalog):
    seen: list[tuple[str, int, int]] = []
    original = clustering.Progress._save

    def record(progress):
        seen.append((progress.run.stage, progress.run.done, progress.run.total))
        stored = ClusterRun.objects.get(pk=progress.run.pk)
        assert stored.status == RunStatus.RUNNING  # visible to the admin while it runs
        original(progress)

    with mock.patch.object(clustering.Progress, "_save", record), mock.patch.object(clustering, "READ_CHUNK", 10):
        run = run_clustering(GADGET, k=3)
    stages = list(dict.fromkeys(stage for stage, _, _ in seen))
    assert stages == ["sample", "fit", "assign", "labels", "describe", "store"]
    assigning = [(done, total) for stage, done, total in seen if stage == "assign"]
    assert assigning[0] == (0, 24) and assigning[-1] == (24, 24)
    assert [done for done, _ in assigning] == sorted(done for done, _ in assigning)
    run.refresh_from_db()
    assert (run.status, run.stage, run.done, run.total) == (RunStatus.DONE, "", 0, 0)


def test_a_failure_is_recorded_on_the_run_and_the_earlier_clusters_stay(catalog):
    first = run_clustering(GADGET, k=3)
    with mock.patch.object(clustering, "describe", side_effect=RuntimeError("no memory left")):
        with pytest.raises(RuntimeError):
            run_clustering(GADGET, k=3)
    failed = ClusterRun.objects.exclude(pk=first.pk).get()
    assert failed.status == RunStatus.FAILED and failed.error == "RuntimeError: no memory left"
    assert failed.finished_at is not None
    assert CategoryCluster.objects.filter(run=first).count() == 3


def test_a_run_left_running_by_a_dead_worker_is_closed_by_the_next(catalog):
    stale = ClusterRun.objects.create(model_label=GADGET, column="fused", status=RunStatus.RUNNING, stage="assign")
    run_clustering(GADGET, k=3)
    stale.refresh_from_db()
    assert stale.status == RunStatus.FAILED and "interrupted" in stale.error


def test_labels_of_a_foreign_key_tree_take_a_fixed_number_of_queries(django_assert_max_num_queries):
    from catalog.models import Category, Product

    fruit = Category.get_or_create_path("生鲜 > 水果 > 苹果")
    tea = Category.get_or_create_path("饮料 > 茶")
    products = [Product.objects.create(sku=f"L{i}", title=f"商品 {i}", category=[fruit, tea, None][i % 3]) for i in range(30)]
    pks = [p.pk for p in products]
    adapter = get_adapter(Product)
    progress = mock.Mock()
    with django_assert_max_num_queries(3):
        labels = clustering._labels(Product, pks, progress)
    with mock.patch.object(clustering, "LABEL_CHUNK", 7), django_assert_max_num_queries(6):  # 30 keys, 5 reads
        assert clustering._labels(Product, pks, progress) == labels
    assert labels == [adapter.get_label(p) for p in products]
    assert labels[:3] == ["生鲜 > 水果 > 苹果", "饮料 > 茶", ""]


def test_keywords_come_from_a_sample_of_each_large_cluster(catalog):
    pks = sorted(Gadget.objects.values_list("pk", flat=True))
    assigned = np.array([i % 3 for i in range(len(pks))])
    with mock.patch.object(clustering, "TEXTS_PER_CLUSTER", 2):
        texts = clustering._keyword_texts(Gadget, pks, assigned, seed=0)
    read = [i for i, text in enumerate(texts) if text is not None]
    assert len(read) == 6 and sorted(i % 3 for i in read) == [0, 0, 1, 1, 2, 2]
    adapter = get_adapter(Gadget)
    for i in read:
        assert texts[i] == adapter.get_keyword_text(Gadget.objects.get(pk=pks[i]))


def test_the_fit_runs_on_principal_components_and_keeps_centres_in_the_vectors_space():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 300))
    vectors = np.vstack([c + 0.05 * rng.normal(size=(50, 300)) for c in centres]).astype(np.float32)
    reduced = fit_clusters(vectors, k_candidates=[2, 3, 4, 5, 6], reduce_dims=16)
    full = fit_clusters(vectors, k_candidates=[2, 3, 4, 5, 6], reduce_dims=None)
    assert reduced.k == full.k == 4
    assert reduced.centres.shape == (4, 300)
    np.testing.assert_allclose(np.linalg.norm(reduced.centres, axis=1), 1.0, atol=1e-5)
    labels, distances = reduced.assign(vectors)
    assert len(set(labels[:50])) == 1 and len(set(labels)) == 4
    assert distances.min() >= 0.0 and distances.max() < 0.1


def test_the_review_page_shows_a_running_clustering_and_a_failed_one(admin_client):
    from django.urls import reverse

    url = reverse("admin:similarity_categorycluster_changelist")
    ClusterRun.objects.create(
        model_label=GADGET, column="fused", products=100000, status=RunStatus.RUNNING, stage="assign", done=40000,
        total=100000,
    )
    page = admin_client.get(url).content.decode()
    assert "Clustering 100000 items" in page
    assert "assigning every item to its nearest cluster (40,000 of 100,000, 40%)" in page
    assert "window.location.reload" in page and "No clustering has run yet" not in page
    ClusterRun.objects.update(status=RunStatus.FAILED, error="RuntimeError: no memory left")
    page = admin_client.get(url).content.decode()
    assert "failed:" in page and "RuntimeError: no memory left" in page and "window.location.reload" not in page
    runs = admin_client.get(reverse("admin:similarity_clusterrun_changelist")).content.decode()
    assert "failed" in runs


def test_the_demo_clusters_in_the_background_and_does_not_wait():
    from io import StringIO

    from catalog.management.commands.demo import Command

    grouped_gadgets()
    with mock.patch("similarity.tasks.cluster_task.apply_async") as sent:
        command = Command(stdout=StringIO())
        command._cluster()
    sent.assert_called_once()
    assert not ClusterRun.objects.exists()  # nothing clustered in the demo's own process
    assert sent.call_args.kwargs["args"] == ["catalog.Product"]
    assert "in the background" in command.stdout.getvalue()


def test_periodic_fits_read_a_seeded_sample_of_a_large_catalog(catalog):
    from similarity.learning.classifier import read_stored, stored_vectors

    from tests.factories import put_vectors

    rng = np.random.default_rng(1)
    for items in catalog.values():
        for item in items[::2]:  # half the items have image and text vectors
            put_vectors(item, image=rng.normal(size=1280).tolist(), text=rng.normal(size=512).tolist())
    space = VectorSpace.active_for(GADGET)
    everything = read_stored(GADGET, space, limit=None)
    assert np.any(everything.image != 0, axis=1).sum() == 12
    assert len(everything.pks) == 24
    sample = read_stored(GADGET, space, limit=5)
    assert len(sample.pks) == 5 and set(sample.pks) < set(everything.pks)
    assert read_stored(GADGET, space, limit=5).pks == sample.pks  # seeded: the same rows each time
    rows = {pk: i for i, pk in enumerate(everything.pks)}
    for i, pk in enumerate(sample.pks):
        np.testing.assert_array_equal(sample.image[i], everything.image[rows[pk]])
        np.testing.assert_array_equal(sample.text[i], everything.text[rows[pk]])
        assert sample.paths[i] == everything.paths[rows[pk]]
    stored = dict(Embedding.objects.filter(space=space).values_list("object_id", "text"))
    with_text = next(pk for pk in everything.pks if stored[pk] is not None)
    keys, _, text = stored_vectors(space, [with_text, 10**9])  # a key without vectors is left out
    assert keys == [with_text]
    np.testing.assert_array_equal(text[0], np.asarray(stored[with_text], np.float32))


def test_the_clustering_task_clusters_before_the_slower_refits(catalog):
    from similarity import tasks

    calls = []

    def note(step):  # what had happened when each refit started
        clustered = ClusterRun.objects.filter(status=RunStatus.DONE).exists()
        calls.append((step, clustered))

    with mock.patch("similarity.learning.classifier.refit_quietly", side_effect=lambda label: note("refit")), \
            mock.patch("similarity.matches.scan.refresh_quietly", side_effect=lambda model: note("scan")):
        done = tasks.cluster_task.run(GADGET)
    assert calls == [("refit", True), ("scan", True)]
    assert done[GADGET]["items"] == 24


def test_stored_vectors_are_read_where_django_binds_on_the_client_side(catalog):
    """Django's default psycopg cursor binds on the client and cannot read binary results."""
    import psycopg
    from django.db import connection

    space = VectorSpace.active_for(GADGET)
    content_type = ContentType.objects.get_for_model(Gadget).pk
    pks = sorted(Gadget.objects.values_list("pk", flat=True))
    connection.ensure_connection()
    factory = connection.connection.cursor_factory
    connection.connection.cursor_factory = psycopg.ClientCursor
    try:
        keys, vectors = read_vectors(space, "fused", content_type, pks)
    finally:
        connection.connection.cursor_factory = factory
    assert keys == pks and vectors.shape == (24, 1792)
