"""The admin review queue of possible duplicates: order, filters, both items per row, the
"Same product" / "Different" buttons, bulk actions, permissions, deleted items, query count."""
from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext

from similarity.matches.decisions import decide
from similarity.models import MatchStatus, ProductMatch
from tests.factories import image_bytes, make_gadget, make_listing
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db

QUEUE = "/admin/similarity/productmatch/"


def pair(a, b, score, status=MatchStatus.OPEN) -> ProductMatch:
    """A pair as the scan stores it (smaller key first)."""
    first, second = sorted((a.pk, b.pk))
    return ProductMatch.objects.create(
        content_type=ContentType.objects.get_for_model(a), first_id=first, second_id=second, score=score, status=status
    )


def decide_url(match: ProductMatch, filters: str = "") -> str:
    return f"{QUEUE}{match.pk}/decide/" + (f"?_changelist_filters={filters}" if filters else "")


def staff(django_user_model, name: str, *codenames: str):
    user = django_user_model.objects.create_user(name, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def gadgets():
    titles = [
        ("H1", "索尼 WH-1000XM5 无线降噪耳机 黑色", (20, 20, 20)),
        ("H2", "Sony WH1000XM5 Wireless Noise Cancelling Headphones, Black", (30, 30, 30)),
        ("S1", "小米蓝牙音箱 Mini", (40, 90, 200)),
        ("S2", "Xiaomi Mi Bluetooth Speaker mini", (50, 100, 210)),
        ("C1", "USB-C 充电线 1米", (220, 220, 220)),
        ("C2", "USB-C cable 2 m", (210, 210, 210)),
    ]
    return {code: make_gadget(code, name, image=image_bytes(colour)) for code, name, colour in titles}


@pytest.fixture
def queue(gadgets):
    """Three open pairs and a decided one, stored out of order."""
    g = gadgets
    return {
        "cables": pair(g["C1"], g["C2"], 0.41),
        "headphones": pair(g["H1"], g["H2"], 0.97),
        "decided": pair(g["H1"], g["S1"], 0.99, MatchStatus.DIFFERENT),
        "speakers": pair(g["S1"], g["S2"], 0.83),
    }


def rows(response) -> list[ProductMatch]:
    return list(response.context["cl"].result_list)


def test_queue_lists_open_pairs_first_by_score_with_both_items(admin_client, gadgets, queue):
    response = admin_client.get(QUEUE)
    assert response.status_code == 200
    assert [m.pk for m in rows(response)] == [queue[k].pk for k in ("headphones", "speakers", "cables", "decided")]
    html = response.content.decode()
    for gadget in gadgets.values():  # both items of every pair: title, link, photo
        assert gadget.name in html
        assert f'href="/admin/testapp/gadget/{gadget.pk}/change/"' in html
        assert gadget.photos.get().picture.url in html
    assert "97%" in html and "41%" in html
    headphones = queue["headphones"]
    assert html.count('class="match-pair"') == 4
    assert f'formaction="{decide_url(headphones)}"' in html
    # open pairs get both buttons; the pair decided "different" keeps "Same product" to correct it
    assert html.count("decide-same") == 4 and html.count("decide-different") == 3
    assert '<option value="mark_same">Mark as same product</option>' in html
    assert "Possible duplicates" in admin_client.get("/admin/").content.decode()


def test_queue_in_chinese(admin_client, gadgets, queue):
    html = admin_client.get(QUEUE, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "索尼 WH-1000XM5 无线降噪耳机 黑色" in html
    assert "同一商品</button>" in html and "不同商品</button>" in html  # the two buttons
    assert "待审核的可能重复商品" in html and "待审核" in html  # the page's title, an open pair's status
    assert "标记为同一商品" in html  # the bulk action


def test_filters_by_status_and_by_model(admin_client, gadgets, queue):
    listings = [make_listing(c, image=image_bytes((90, 160, 60))) for c in ("Garden hose 20 m", "20m garden hose")]
    hoses = pair(*listings, 0.66)
    assert [m.pk for m in rows(admin_client.get(QUEUE, {"status": "different"}))] == [queue["decided"].pk]
    assert [m.pk for m in rows(admin_client.get(QUEUE, {"model": "testapp.listing"}))] == [hoses.pk]
    open_pairs = rows(admin_client.get(QUEUE, {"status": "open", "model": "testapp.gadget"}))
    assert [m.pk for m in open_pairs] == [queue[k].pk for k in ("headphones", "speakers", "cables")]
    html = admin_client.get(QUEUE, {"model": "testapp.listing"}).content.decode()
    assert "Garden hose 20 m" in html and "20m garden hose" in html


@pytest.mark.parametrize("decision", [MatchStatus.SAME, MatchStatus.DIFFERENT])
def test_buttons_record_the_decision_with_the_user_and_return_to_the_filtered_queue(admin_client, admin_user, queue, decision):
    match = queue["headphones"]
    response = admin_client.post(decide_url(match, "status%3Dopen%26p%3D1"), {"decision": decision})
    assert response.status_code == 302 and response["Location"] == f"{QUEUE}?status=open&p=1"
    match.refresh_from_db()
    assert match.status == decision and match.decided_by == admin_user and match.decided_at is not None
    assert match.score == 0.97  # the scan's score stays
    assert LogEntry.objects.filter(user=admin_user, object_id=str(match.pk)).exists()
    page = admin_client.get(response["Location"])
    message = [str(m) for m in page.context["messages"]][0]
    verdict = "Marked as the same product" if decision == MatchStatus.SAME else "Marked as different products"
    assert message.startswith(verdict) and "索尼 WH-1000XM5 无线降噪耳机 黑色" in message
    assert match.pk not in [m.pk for m in rows(page)]  # gone from the open queue


def test_a_decision_can_be_changed_and_bad_requests_change_nothing(admin_client, queue):
    match = queue["decided"]
    admin_client.post(decide_url(match), {"decision": "same"})
    match.refresh_from_db()
    assert match.status == MatchStatus.SAME
    assert admin_client.get(decide_url(match)).status_code == 405
    response = admin_client.post(decide_url(match), {"decision": "open"}, follow=True)
    assert "Choose" in response.content.decode()
    match.refresh_from_db()
    assert match.status == MatchStatus.SAME
    assert admin_client.post(f"{QUEUE}999999/decide/", {"decision": "same"}).status_code == 404


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("mark_same", MatchStatus.SAME, "2 pairs marked as the same product."),
        ("mark_different", MatchStatus.DIFFERENT, "2 pairs marked as different products."),
    ],
)
def test_bulk_actions_decide_the_selected_pairs(admin_client, admin_user, queue, action, status, message):
    chosen = [queue["headphones"].pk, queue["speakers"].pk]
    response = admin_client.post(QUEUE + "?status=open", {"action": action, "_selected_action": chosen}, follow=True)
    assert message in response.content.decode()
    decided = ProductMatch.objects.filter(pk__in=chosen)
    assert {(m.status, m.decided_by_id) for m in decided} == {(status, admin_user.pk)}
    assert ProductMatch.objects.get(pk=queue["cables"].pk).status == MatchStatus.OPEN


def test_view_only_staff_see_the_queue_but_cannot_decide(client, django_user_model, queue):
    client.force_login(staff(django_user_model, "viewer", "view_productmatch", "view_gadget"))
    response = client.get(QUEUE)
    html = response.content.decode()
    assert response.status_code == 200 and "索尼 WH-1000XM5 无线降噪耳机 黑色" in html
    assert "decide-same" not in html and "mark_same" not in html
    match = queue["headphones"]
    assert client.post(decide_url(match), {"decision": "same"}).status_code == 403
    client.post(QUEUE, {"action": "mark_same", "_selected_action": [match.pk]})
    match.refresh_from_db()
    assert match.status == MatchStatus.OPEN and match.decided_by is None


def test_deciding_also_needs_the_change_permission_on_the_items(client, django_user_model, queue):
    """Change on the pairs alone is not enough: ``may_decide`` asks for change on the item's model."""
    client.force_login(staff(django_user_model, "pairs-only", "view_productmatch", "change_productmatch", "view_gadget"))
    html = client.get(QUEUE).content.decode()
    assert "decide-same" not in html
    match = queue["headphones"]
    assert client.post(decide_url(match), {"decision": "same"}).status_code == 403
    response = client.post(QUEUE, {"action": "mark_same", "_selected_action": [match.pk]}, follow=True)
    assert "nothing was decided" in response.content.decode()
    match.refresh_from_db()
    assert match.status == MatchStatus.OPEN

    client.force_login(staff(django_user_model, "merch", "view_productmatch", "change_productmatch", "change_gadget"))
    assert client.post(decide_url(match), {"decision": "same"}).status_code == 302
    match.refresh_from_db()
    assert match.status == MatchStatus.SAME


def test_no_add_form(admin_client):
    assert admin_client.get(QUEUE + "add/").status_code == 403
    assert f'href="{QUEUE}add/"' not in admin_client.get(QUEUE).content.decode()


def test_deleting_an_item_deletes_its_pairs(gadgets, queue):
    gadgets["H1"].delete()
    assert not ProductMatch.objects.filter(pk__in=[queue["headphones"].pk, queue["decided"].pk]).exists()


def test_a_pair_whose_item_is_gone_shows_deleted_and_can_be_deleted(admin_client, gadgets):
    """Rows deleted behind Django's back (raw SQL, another service) leave a pair behind."""
    lonely = make_gadget("X1", "没有照片的耳机")
    match = pair(gadgets["H1"], lonely, 0.9)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Gadget._meta.db_table} WHERE id = %s", [lonely.pk])
    response = admin_client.get(QUEUE)
    html = response.content.decode()
    assert response.status_code == 200
    assert "deleted" in html and f"#{lonely.pk}" in html and gadgets["H1"].name in html
    assert "decide-same" not in html and f'href="{QUEUE}{match.pk}/delete/"' in html
    assert admin_client.get(f"{QUEUE}{match.pk}/change/").status_code == 200

    response = admin_client.post(decide_url(match), {"decision": "same"}, follow=True)
    assert "was deleted" in response.content.decode()
    response = admin_client.post(QUEUE, {"action": "mark_same", "_selected_action": [match.pk]}, follow=True)
    assert "1 pair skipped" in response.content.decode()
    match.refresh_from_db()
    assert match.status == MatchStatus.OPEN

    assert admin_client.post(f"{QUEUE}{match.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not ProductMatch.objects.filter(pk=match.pk).exists()


def test_change_page_shows_both_items(admin_client, gadgets, queue):
    html = admin_client.get(f"{QUEUE}{queue['speakers'].pk}/change/").content.decode()
    assert gadgets["S1"].name in html and gadgets["S2"].name in html
    assert 'name="score"' not in html  # read-only


def test_queue_queries_do_not_grow_with_rows(admin_client, django_assert_max_num_queries):
    def page_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(QUEUE).status_code == 200
        return len(queries)

    def add_pairs(start: int, n: int) -> None:
        for i in range(start, start + n):
            a = make_gadget(f"A{i}", f"蓝牙耳机 {i}", image=image_bytes((10 * i % 255, 40, 40)))
            b = make_gadget(f"B{i}", f"Bluetooth earphones {i}", image=image_bytes((10 * i % 255, 50, 40)))
            pair(a, b, 0.5 + i / 100)
        listings = [make_listing(f"listing {start}-{k}", image=image_bytes()) for k in range(2)]
        pair(*listings, 0.3)

    add_pairs(0, 2)
    few = page_queries()
    add_pairs(2, 20)  # 24 rows on the page, two models
    with django_assert_max_num_queries(few):
        response = admin_client.get(QUEUE)
    assert len(rows(response)) == 24
    # session, user, count, rows; then per model on the page: its items, their photos
    assert few <= 7
    decide(Gadget, 10**9, 10**9 + 1, MatchStatus.SAME)  # a pair whose items never existed adds no query either
    with django_assert_max_num_queries(few):
        admin_client.get(QUEUE)
