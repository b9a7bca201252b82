"""similarity_reindex (selections, --sync, sending) and similarity_status (counts, queue depth)."""
from __future__ import annotations

from similarity.models import state_of

import datetime
import io
import json
import uuid

import pytest
from celery import Task
from django.core.management import CommandError, call_command
from django.utils import timezone

from similarity.indexing.writer import encode_objects
from similarity.tasks import encode_task
from tests.factories import GADGET as LABEL
from tests.factories import make_gadget, states
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalog(sent):
    phone = make_gadget("P1", "华为 Mate 60 手机", shelf="数码 > 手机")
    case = make_gadget("P2", "手机壳 硅胶", shelf="数码 > 手机 > 配件")
    shirt = make_gadget("P3", "纯棉 T恤", shelf="服装 > 上衣")
    broken = make_gadget("P4", "   ")  # nothing to encode: fails
    encode_objects(LABEL, [g.pk for g in (phone, case, shirt, broken)])
    return {g.code: g for g in (phone, case, shirt, broken)}


def run(command, *args) -> str:
    """Run ``command`` on the gadgets (the demo's catalog is the first registered model)."""
    out = io.StringIO()
    if "--model" not in args:
        args = ("--model", LABEL, *args)
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def encoded_at(code: str):
    return state_of(Gadget.objects.get(code=code)).encoded_at


def test_sync_reindex_of_failed_rows_touches_only_them(catalog):
    before = {code: encoded_at(code) for code in catalog}
    out = run("similarity_reindex", "--failed", "--sync")
    assert "0 encoded, 0 unchanged, 1 failed" in out
    after = {code: encoded_at(code) for code in catalog}
    assert [code for code in catalog if after[code] != before[code]] == ["P4"]


def test_sync_force_reindex_of_a_category_includes_its_subtree(catalog):
    before = {code: encoded_at(code) for code in catalog}
    out = run("similarity_reindex", "--category", "数码 >手机", "--sync", "--force")
    assert "2 encoded" in out
    changed = sorted(code for code in catalog if encoded_at(code) != before[code])
    assert changed == ["P1", "P2"]


def test_unforced_reindex_skips_unchanged_content(catalog):
    assert "0 encoded, 3 unchanged, 1 failed" in run("similarity_reindex", "--sync")


def test_since_selects_recently_changed_rows(catalog, sent, django_capture_on_commit_callbacks):
    Gadget.objects.filter(code__in=["P1", "P2", "P4"]).update(changed=timezone.now() - datetime.timedelta(days=3))
    yesterday = (timezone.localdate() - datetime.timedelta(days=1)).isoformat()
    with django_capture_on_commit_callbacks(execute=True):
        out = run("similarity_reindex", "--since", yesterday)
    assert out.startswith("1 rows marked pending; 1 tasks sent")
    assert list(Gadget.objects.filter(similarity_states__status="pending").values_list("code", flat=True)) == ["P3"]
    assert sent.call_args.kwargs["args"] == [LABEL]


def test_missing_sends_every_row_that_is_not_ready(catalog, sent, settings, django_capture_on_commit_callbacks):
    settings.SIMILARITY = {**settings.SIMILARITY, "BATCH_SIZE": 1}
    states(Gadget.objects.filter(code="P2")).update(status="pending")
    with django_capture_on_commit_callbacks(execute=True):
        out = run("similarity_reindex", "--missing")
    assert out.startswith("2 rows marked pending; 2 tasks sent")
    assert sent.call_count == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "last week"], "not an ISO date"),
        (["--model", "testapp.Shelf"], "is not registered"),
        (["--model", "nope.Nothing"], "--model 'nope.Nothing'"),
    ],
)
def test_bad_options_are_clear_errors(catalog, args, message):
    with pytest.raises(CommandError, match=message):
        run("similarity_reindex", *args)


def test_status_counts_versions_oldest_pending_and_queue_depth(catalog, settings):
    queue = f"similarity-status-{uuid.uuid4().hex[:8]}"
    settings.SIMILARITY = {**settings.SIMILARITY, "QUEUE": queue}
    requested = timezone.now() - datetime.timedelta(minutes=5)
    states(Gadget.objects.filter(code="P3")).update(status="pending", requested_at=requested)
    assert json.loads(run("similarity_status", "--json"))["queue_depth"] == 0
    for _ in range(2):  # two real messages in Redis, nobody consuming this queue
        Task.apply_async(encode_task, args=[LABEL], queue=queue)
    try:
        status = json.loads(run("similarity_status", "--json"))
    finally:
        from celery import current_app

        with current_app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
    assert status["by_status"] == {"pending": 1, "ready": 2, "failed": 1}
    assert status["total"] == 4 and status["claimed"] == 0
    assert status["queue"] == queue and status["queue_depth"] == 2
    assert 299 <= status["oldest_pending_age_s"] < 400
    (space,) = status["spaces"]
    # P3 is pending but keeps its vectors; P4 failed and is not counted.
    assert (space["state"], space["vectors"], space["coverage"]) == ("active", 3, 1.0)
    assert space["dims"] == {"image": 1280, "text": 512, "fused": 1792} and space["learned"] is None
    text = run("similarity_status")
    assert "ready 2 · pending 1 (0 claimed by workers) · failed 1" in text and "2 tasks waiting" not in text
    assert f"vector space {space['key']} (active): 3 rows, coverage 100.0%" in text


def test_admin_list_shows_the_status_summary(admin_client, catalog):
    html = admin_client.get("/admin/testapp/gadget/").content.decode()
    assert 'id="encoding-status"' in html
    assert "3 ready · 0 pending (0 being encoded) · 1 failed" in html
