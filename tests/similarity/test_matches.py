"""Same-product matching in the app: the endpoint, decisions, fitting, duplicates left out."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from rest_framework.test import APIClient

from similarity.indexing.writer import encode_objects
from similarity.matches.decisions import confirmed_duplicates, decide
from similarity.matches.fitting import fit_matcher, matcher_for
from similarity.matches.scoring import PairRows, same_products
from similarity.models import CatalogFit, MatchStatus, ProductMatch, VectorSpace
from tests.factories import GADGET, make_gadget
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


@pytest.fixture
def phones():
    items = {
        "iphone": make_gadget("P1", "Apple iPhone15 128G 黑色 手机", maker="Apple"),
        "copy": make_gadget("P2", "苹果 iphone15 128g 黑 手机", maker="苹果"),
        "pro": make_gadget("P3", "Apple iPhone15 Pro 256G 手机", maker="Apple"),
        "tea": make_gadget("T1", "西湖龙井 绿茶 250g", maker="龙井"),
    }
    encode_objects(GADGET, [g.pk for g in items.values()])
    return items


def staff(django_user_model, name, *perms):
    user = django_user_model.objects.create_user(name, password="x", is_staff=True)
    user.user_permissions.set([Permission.objects.get(codename=p) for p in perms])
    return user


def url(item):
    return f"/api/gadgets/{item.pk}/same-products/"


def test_the_listing_of_the_same_phone_scores_above_the_other_model(phones):
    found = {s.object.pk: s for s in same_products(phones["iphone"])}
    assert set(found) == {phones["copy"].pk, phones["pro"].pk, phones["tea"].pk}
    assert found[phones["copy"].pk].score > found[phones["pro"].pk].score > found[phones["tea"].pk].score
    assert all(s.decision is None for s in found.values())


def test_the_endpoint_scores_candidates_and_shows_decisions(phones, django_user_model):
    client = APIClient()
    body = client.get(url(phones["iphone"])).json()
    assert body["trained"] is False and body["threshold"] == 0.5
    scores = [row["score"] for row in body["results"]]
    assert scores == sorted(scores, reverse=True) and body["results"][0]["item"]["id"] == phones["copy"].pk

    client.force_authenticate(staff(django_user_model, "merch", "change_gadget"))
    answer = client.post(url(phones["pro"]), {"other": phones["iphone"].pk, "decision": "different"}, format="json")
    assert answer.status_code == 200
    assert answer.json() == {"first": phones["iphone"].pk, "second": phones["pro"].pk, "decision": "different"}
    rows = {row["item"]["id"]: row for row in client.get(url(phones["iphone"])).json()["results"]}
    assert rows[phones["pro"].pk]["decision"] == "different" and rows[phones["pro"].pk]["same"] is False
    match = ProductMatch.objects.get()
    assert match.decided_by.username == "merch" and match.decided_at is not None


@pytest.mark.parametrize(("body", "status"), [
    ({"other": 999999, "decision": "same"}, 404),
    ({"other": "P2", "decision": "same"}, 400),
    ({"decision": "same"}, 400),
    ({"other": 1, "decision": "maybe"}, 400),
])
def test_bad_decisions_are_refused(phones, django_user_model, body, status):
    client = APIClient()
    client.force_authenticate(staff(django_user_model, "merch", "change_gadget"))
    assert client.post(url(phones["iphone"]), body, format="json").status_code == status
    itself = client.post(url(phones["iphone"]), {"other": phones["iphone"].pk, "decision": "same"}, format="json")
    assert itself.status_code == 400 and "other" in itself.json()
    assert not ProductMatch.objects.exists()


def test_only_staff_who_may_change_items_decide(phones, django_user_model):
    client = APIClient()
    body = {"other": phones["copy"].pk, "decision": "same"}
    assert client.post(url(phones["iphone"]), body, format="json").status_code in (401, 403)
    client.force_authenticate(django_user_model.objects.create_user("shopper", password="x"))
    assert client.post(url(phones["iphone"]), body, format="json").status_code == 403
    client.force_authenticate(staff(django_user_model, "viewer", "view_gadget"))
    assert client.post(url(phones["iphone"]), body, format="json").status_code == 403
    assert not ProductMatch.objects.exists()
    assert client.get(url(phones["iphone"])).status_code == 200  # reading is a read


def test_confirmed_duplicates_can_leave_similar_items(phones, settings):
    decide(Gadget, phones["copy"].pk, phones["iphone"].pk, MatchStatus.SAME)
    assert confirmed_duplicates(Gadget, phones["iphone"].pk) == [phones["copy"].pk]
    client = APIClient()

    def similar(**params):
        return [r["item"]["id"] for r in client.get(f"/api/gadgets/{phones['iphone'].pk}/similar/", params).json()["results"]]

    assert phones["copy"].pk in similar()
    assert phones["copy"].pk not in similar(exclude_duplicates="true")
    settings.SIMILARITY = {**settings.SIMILARITY, "EXCLUDE_DUPLICATES": True}
    assert phones["copy"].pk not in similar()
    assert phones["copy"].pk in similar(exclude_duplicates="false")


def test_deleting_an_item_deletes_its_pairs(phones):
    decide(Gadget, phones["iphone"].pk, phones["copy"].pk, MatchStatus.SAME)
    decide(Gadget, phones["pro"].pk, phones["copy"].pk, MatchStatus.DIFFERENT)
    phones["copy"].delete()
    assert not ProductMatch.objects.exists()


def model_catalog(count: int) -> list[tuple[int, int, int]]:
    """``count`` same pairs (one model number written two ways) and ``count`` different ones
    (another model number of the same maker)."""
    pairs = []
    for i in range(count):
        a = make_gadget(f"A{i}", f"华为 手机 HW{i:03d}X 8G 256G", maker="华为")
        b = make_gadget(f"B{i}", f"Huawei 华为 hw-{i:03d}x 256g 手机", maker="Huawei")
        c = make_gadget(f"C{i}", f"华为 手机 HW{i + 500:03d}Z 8G 512G", maker="华为")
        pairs += [(a.pk, b.pk, 1), (a.pk, c.pk, 0)]
    encode_objects(GADGET, list(Gadget.objects.values_list("pk", flat=True)))
    return pairs


def test_the_scorer_trains_on_decisions_and_is_found_again(db):
    pairs = model_catalog(30)
    for a, b, same in pairs[:-8]:
        decide(Gadget, a, b, MatchStatus.SAME if same else MatchStatus.DIFFERENT)
    scorer, stats, report = fit_matcher(Gadget)
    assert report["trained"] is True and report["pairs"] + report["validation_pairs"] == len(pairs) - 8
    assert stats.n == Gadget.objects.count()
    fitted, fitted_stats = matcher_for(Gadget)
    assert fitted.kind == scorer.kind and fitted.threshold == scorer.threshold and fitted_stats.n == stats.n
    assert CatalogFit.objects.get(model_label=GADGET).matcher_report["trained"] is True
    held = pairs[-8:]  # never decided
    rows = PairRows(Gadget, VectorSpace.active_for(GADGET), stats).rows([(a, b) for a, b, _ in held])
    decided = fitted.decide(rows)
    assert decided.tolist() == [bool(same) for *_, same in held]


def test_too_few_decisions_keep_the_default_scorer(db):
    pairs = model_catalog(5)
    for a, b, same in pairs:
        decide(Gadget, a, b, MatchStatus.SAME if same else MatchStatus.DIFFERENT)
    scorer, _, report = fit_matcher(Gadget)
    assert report["trained"] is False and scorer.kind == "default" and "fewer than 20" in report["why"]


def test_a_content_type_is_per_model(phones):
    decide(Gadget, phones["iphone"].pk, phones["copy"].pk, MatchStatus.SAME)
    assert ProductMatch.objects.get().content_type == ContentType.objects.get_for_model(Gadget)


def test_the_scan_queues_likely_duplicates_and_keeps_decisions(phones):
    from similarity.matches.scan import scan

    decide(Gadget, phones["iphone"].pk, phones["pro"].pk, MatchStatus.DIFFERENT)
    found = scan(Gadget)
    assert found["items"] == 4
    open_pairs = set(ProductMatch.objects.filter(status=MatchStatus.OPEN).values_list("first_id", "second_id"))
    assert open_pairs == {tuple(sorted((phones["iphone"].pk, phones["copy"].pk)))}
    assert found["pairs"] == 1
    decided = ProductMatch.objects.get(status=MatchStatus.DIFFERENT)
    assert decided.first_id == phones["iphone"].pk and decided.score is None  # a decision stays as it was
    scan(Gadget)  # again: the same pair, a new score time, no second row
    assert ProductMatch.objects.filter(status=MatchStatus.OPEN).count() == 1


def test_the_command_fits_and_scans(phones, capsys):
    from django.core.management import call_command

    call_command("similarity_matches", "--model", GADGET)
    out = capsys.readouterr().out
    assert "the untrained default (fewer than 20 decisions of each kind), threshold 0.5" in out
    assert "4 items scanned: 1 likely duplicate pairs to review" in out
    assert CatalogFit.objects.get(model_label=GADGET).matcher is not None


def test_the_periodic_job_refreshes_matches(phones):
    from similarity.matches.scan import refresh_quietly

    first = refresh_quietly(Gadget)
    assert first["items"] == 4 and first["pairs"] == 1 and first["fit"]["trained"] is False
    again = refresh_quietly(Gadget)  # nothing encoded since: nothing to scan
    assert again["items"] == 0
    assert CatalogFit.objects.get(model_label=GADGET).matcher_report["last_scan"] == {"items": 0, "pairs": 0}


def test_a_periodic_scan_scores_at_most_its_limit_and_the_next_goes_on(phones, monkeypatch):
    from similarity.matches import scan as scanning

    from django.utils import timezone

    from similarity.models import Embedding

    Embedding.objects.update(encoded_at=timezone.now())  # one bulk write: every item encoded at once
    monkeypatch.setattr(scanning, "SCAN_LIMIT", 3)
    assert scanning.refresh_quietly(Gadget)["items"] == 3
    assert scanning.refresh_quietly(Gadget)["items"] == 1  # the fourth: no item scored twice, none skipped
    assert scanning.refresh_quietly(Gadget)["items"] == 0
    assert scanning.scan(Gadget, limit=10)["items"] == 4 and "until" not in scanning.scan(Gadget, limit=10)
    assert ProductMatch.objects.filter(status=MatchStatus.OPEN).count() == 1
