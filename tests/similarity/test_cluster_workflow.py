"""Clusters stored and decided: runs, suggestions, accept / reject / rename, re-runs, the command."""
from __future__ import annotations

import io
from unittest import mock
from unittest.mock import ANY

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from similarity.categories.clustering import ClusteringUnavailable, run_clustering
from similarity.categories.decisions import DecisionError, accept, apply_label, reject, rename_cluster, suggest_for
from similarity.categories.suggestions import Suggestion, cut_label, likely_miscategorised
from similarity.models import (
    CategoryCluster,
    CategorySuggestion,
    ClusterMember,
    ClusterRun,
    Decision,
    EmbeddingStatus,
    state_of,
)
from similarity.registry import get_adapter, registered_models
from tests.factories import GADGET, grouped_gadgets, make_gadget, shelf_path
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db

@pytest.fixture
def user():
    return get_user_model().objects.create_superuser("merch", "m@example.com", "pw")


@pytest.fixture
def catalog():
    return grouped_gadgets()


def label_of(item) -> str:
    item.refresh_from_db()
    return get_adapter(item).get_label(item)


@pytest.fixture
def sent_clustering():
    with mock.patch("similarity.tasks.cluster_task.apply_async") as sent:
        yield sent


def suggestions(kind: str | None = None):
    rows = CategorySuggestion.objects.filter(status=Decision.OPEN)
    return rows.filter(kind=kind) if kind else rows


def test_run_stores_clusters_members_and_the_three_kinds_of_suggestion(catalog):
    run = run_clustering(GADGET, k=3)
    assert run.k == 3 and run.products == 24 and run.column == "fused"
    clusters = {c.majority_label: c for c in CategoryCluster.objects.filter(run=run)}
    assert set(clusters) == {"饮料 > 茶", "生鲜 > 水果", ""}
    assert {c.size for c in clusters.values()} == {8}
    assert ClusterMember.objects.filter(cluster__run=run).count() == 24
    fruit = clusters["生鲜 > 水果"]
    assert fruit.purity == 1.0 and "苹果" in fruit.keywords
    members = list(fruit.members.all())
    assert [m.distance for m in members] == sorted(m.distance for m in members)

    assign = {s.target_label: s for s in suggestions("assign")}
    tea_ids = sorted(p.pk for p in catalog["tea"][:2])
    assert sorted(assign["饮料 > 茶"].object_ids) == tea_ids
    assert sorted(assign["生鲜 > 水果"].object_ids) == sorted(p.pk for p in catalog["apples"][:2])
    move = suggestions("move").get()
    assert (move.source_label, move.target_label, move.object_ids) == ("生鲜 > 水果", "饮料 > 茶", [catalog["tea"][7].pk])
    create = suggestions("create").get()
    assert sorted(create.object_ids) == sorted(p.pk for p in catalog["earphones"])
    assert create.parent_label == "" and "耳机" in create.name
    assert "Create new category" in create.describe()


def test_accept_assign_sets_categories_reencodes_and_logs(catalog, user):
    run_clustering(GADGET, k=3)
    suggestion = suggestions("assign").get(target_label="饮料 > 茶")
    done = accept(suggestion, user)
    assert done.status == Decision.ACCEPTED and done.decided_by == user and done.changed == 2
    tea = shelf_path("饮料 > 茶")
    for p in catalog["tea"][:2]:
        p.refresh_from_db()
        assert p.shelf == tea
        assert state_of(p).status == EmbeddingStatus.PENDING  # re-encoded with the new category
    logged = LogEntry.objects.filter(user=user)
    assert logged.filter(object_id=str(suggestion.pk), change_message__startswith="Accepted").exists()
    assert set(logged.filter(content_type__model="gadget").values_list("object_id", flat=True)) == {
        str(p.pk) for p in catalog["tea"][:2]
    }
    with pytest.raises(DecisionError, match="already accepted"):
        accept(suggestion, user)


def test_accept_move_leaves_items_that_moved_since(catalog, user):
    run_clustering(GADGET, k=3)
    move = suggestions("move").get()
    stray = catalog["tea"][7]
    stray.shelf = shelf_path("饮料 > 咖啡")  # someone fixed it differently meanwhile
    stray.save()
    assert accept(move, user).changed == 0
    assert label_of(stray) == "饮料 > 咖啡"


def test_accept_create_with_a_new_name_creates_the_category(catalog, user):
    run_clustering(GADGET, k=3)
    create = suggestions("create").get()
    done = accept(create, user, name="  蓝牙  耳机 ")
    assert done.applied_label == "蓝牙 耳机" and done.changed == 8
    assert {label_of(g) for g in catalog["earphones"]} == {"蓝牙 耳机"}
    assert Gadget.objects.filter(code__startswith="earphones", shelf__label="蓝牙 耳机", shelf__parent=None).count() == 8


@pytest.mark.parametrize("name, error", [("", "empty"), ("A > B", "cannot contain"), ("x" * 201, "at most 200")])
def test_bad_names_are_refused_and_change_nothing(catalog, user, name, error):
    run_clustering(GADGET, k=3)
    cluster = suggestions("create").get().cluster
    with pytest.raises(DecisionError, match=error):
        rename_cluster(cluster, name, user)
    cluster.refresh_from_db()
    assert cluster.name == suggestions("create").get().name


def test_rename_cluster_renames_its_create_suggestion_and_logs(catalog, user):
    run_clustering(GADGET, k=3)
    create = suggestions("create").get()
    rename_cluster(create.cluster, "耳机", user)
    create.refresh_from_db()
    assert (create.name, create.target_label) == ("耳机", "耳机")
    assert LogEntry.objects.filter(object_id=str(create.cluster.pk), change_message__contains="耳机").exists()
    with pytest.raises(DecisionError, match="Only a suggested new category"):
        accept(suggestions("assign").first(), user, name="other")


def test_rerun_replaces_open_suggestions_keeps_decided_and_does_not_repeat_rejected(catalog, user):
    first = run_clustering(GADGET, k=3)
    accepted = accept(suggestions("assign").get(target_label="饮料 > 茶"), user)
    rejected = reject(suggestions("move").get(), user)
    open_before = set(suggestions().values_list("pk", flat=True))

    second = run_clustering(GADGET, k=3)
    assert CategorySuggestion.objects.filter(pk__in=open_before).count() == 0  # replaced
    assert CategorySuggestion.objects.get(pk=accepted.pk).status == Decision.ACCEPTED  # kept, with its cluster
    assert CategorySuggestion.objects.get(pk=rejected.pk).cluster.run_id == first.pk
    assert not suggestions("move").exists()  # rejected: not suggested again
    assert not suggestions("assign").filter(target_label="饮料 > 茶").exists()  # done: nothing left to assign
    assert suggestions("create").get().cluster.run_id == second.pk
    # clusters of the first run nobody decided on are gone; the run stays for its decided ones
    assert set(CategoryCluster.objects.filter(run=first).values_list("pk", flat=True)) == {
        accepted.cluster_id, rejected.cluster_id
    }


def test_clustering_needs_active_vectors():
    make_gadget("X1", "无向量的商品")
    with pytest.raises(ClusteringUnavailable, match="encode it first"):
        run_clustering(GADGET)


def test_unlisted_gadgets_are_not_clustered(catalog):
    Gadget.objects.filter(code__startswith="apples").update(listed=False)
    run = run_clustering(GADGET, k=2)
    assert run.products == 16
    assert not ClusterMember.objects.filter(object_id__in=[p.pk for p in catalog["apples"]]).exists()


def test_neighbour_vote_suggestions_group_by_change(catalog):
    made = suggest_for(GADGET, [p.pk for p in catalog["tea"]] + [catalog["apples"][0].pk])
    by_change = {(s.kind, s.source_label, s.target_label): s for s in made}
    assign_tea = by_change[("assign", "", "饮料 > 茶")]
    assert sorted(assign_tea.object_ids) == sorted(p.pk for p in catalog["tea"][:2])
    assert by_change[("move", "生鲜 > 水果", "饮料 > 茶")].object_ids == [catalog["tea"][7].pk]
    assert by_change[("assign", "", "生鲜 > 水果")].object_ids == [catalog["apples"][0].pk]
    assert all(s.cluster is None and 0.5 <= s.confidence <= 1 for s in made)
    # asking again for one item takes it out of the earlier suggestion
    suggest_for(GADGET, [catalog["tea"][0].pk])
    assign_tea.refresh_from_db()
    assert assign_tea.object_ids == [catalog["tea"][1].pk] and assign_tea.size == 1


def test_apply_label_moves_one_item(catalog, user):
    item = catalog["tea"][7]
    assert apply_label(item, "饮料 > 茶", user) is True
    assert label_of(item) == "饮料 > 茶" and state_of(item).status == EmbeddingStatus.PENDING
    assert apply_label(item, "饮料 > 茶", user) is False


def test_command_prints_clusters_and_suggestions(catalog):
    out = io.StringIO()
    call_command("similarity_cluster", "--model", GADGET, "--k", "3", stdout=out)
    text = out.getvalue()
    assert "24 items -> 3 clusters" in text
    assert "Create new category" in text and "Move 1 item from" in text
    assert ClusterRun.objects.count() == 1
    with pytest.raises(CommandError, match="at least 2"):
        call_command("similarity_cluster", "--model", GADGET, "--k", "1")


def test_task_sends_clustering_to_the_training_queue(sent_clustering):
    call_command("similarity_cluster", "--model", GADGET, "--async", stdout=io.StringIO())
    assert sent_clustering.call_args.kwargs["queue"].startswith("similarity-training")


def test_clusters_compare_with_categories_at_the_label_level(catalog):
    """Apples each in their own leaf ("生鲜 > 水果 > 苹果 N") still make one pure fruit cluster."""
    for i, apple in enumerate(catalog["apples"][2:]):
        apple.shelf = shelf_path(f"生鲜 > 水果 > 苹果 {i}")
        apple.save()
    run = run_clustering(GADGET, k=3)
    fruit = CategoryCluster.objects.get(run=run, majority_label="生鲜 > 水果")
    assert fruit.purity == 1.0 and fruit.labelled == 6
    assert not fruit.suggestions.filter(kind="create").exists()
    assert fruit.suggestions.get(kind="assign").size == 2
    # the tea filed under fruit moves from the fruit subtree, at the label level
    move = suggestions("move").get()
    assert (move.source_label, move.target_label) == ("生鲜 > 水果", "饮料 > 茶")


@pytest.mark.parametrize(
    "path, level, cut",
    [("A > B > C", 2, "A > B"), ("A", 2, "A"), ("", 2, ""), ("A > B > C", None, "A > B > C"), ("A>B > C", 1, "A")],
)
def test_cut_label(path, level, cut):
    assert cut_label(path, level) == cut


@pytest.mark.parametrize(
    "current, best, confidence, level, flagged",
    [
        ("饮料 > 茶", "生鲜 > 水果", 0.9, 2, True),
        ("饮料 > 茶", "生鲜 > 水果", 0.4, 2, False),  # no clear vote
        ("饮料 > 茶 > 龙井", "饮料 > 茶", 0.9, 2, False),  # the leaf is below the winner
        ("饮料", "饮料 > 茶", 0.9, 2, False),  # a refinement
        ("", "饮料 > 茶", 0.9, 2, False),  # uncategorised: nothing to flag
        ("饮料 > 茶 > 龙井", "饮料 > 茶 > 红茶", 0.9, None, True),
    ],
)
def test_likely_miscategorised(current, best, confidence, level, flagged):
    assert likely_miscategorised(current, [Suggestion(best, confidence, 3)], level) is flagged


def test_cluster_task_runs_every_model_and_reports_skips(settings):
    from similarity.tasks import cluster_task

    every = {model._meta.label: {"skipped": ANY} for model in registered_models()}
    assert GADGET in every and cluster_task.run() == every  # nothing encoded yet
    grouped_gadgets()
    done = cluster_task.run(GADGET)[GADGET]
    assert done["items"] == 24 and done["run"] == ClusterRun.objects.get().pk


def test_clustering_is_scheduled_daily_on_the_training_queue(settings):
    from config.celery import app  # the project's Celery app, configured by similarity.celery

    entry = app.conf.beat_schedule["similarity-cluster"]
    assert entry["task"] == "similarity.cluster" and entry["schedule"] == 24 * 3600
    assert entry["options"]["queue"] == settings.SIMILARITY["TRAINING_QUEUE"]
