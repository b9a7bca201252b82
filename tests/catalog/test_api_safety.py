"""API safety: who may read and write, per-scope rate limits, parameters that fail with 400."""
from __future__ import annotations

import uuid

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.urls import URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from catalog.models import Product
from similarity.api.permissions import ReadOrStaffWrite
from similarity.api.throttling import ActionScopedRateThrottle
from similarity.checks import check_api
from tests.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_throttle_counters():
    # Counters live in the default cache, which outlives a test's database transaction.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def require_token(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "API_REQUIRE_TOKEN": True}


def make_user(name: str, *, staff: bool = False) -> User:
    # No password: hashing one costs more than the whole request under test.
    return User.objects.create(username=name, is_staff=staff)


def with_rates(settings, **rates: str | None) -> None:
    rest = settings.REST_FRAMEWORK
    settings.REST_FRAMEWORK = {**rest, "DEFAULT_THROTTLE_RATES": {**rest["DEFAULT_THROTTLE_RATES"], **rates}}


# Reads


def test_anonymous_reads_by_default(client):
    make_product("R1", "公开 商品")
    response = client.get("/api/products/")
    assert response.status_code == 200 and response.json()["count"] == 1


def test_require_token_refuses_anonymous_reads(client, require_token):
    p = make_product("R1", "受保护 商品")
    for url in ("/api/products/", f"/api/products/{p.pk}/", f"/api/products/{p.pk}/similar/"):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == "Token"


def test_require_token_admits_a_token(client, require_token):
    make_product("R1", "受保护 商品")
    token = Token.objects.create(user=make_user("reader"))
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/products/").status_code == 200


def test_require_token_refuses_a_wrong_token(client, require_token):
    Token.objects.create(user=make_user("reader"))
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-key")
    assert client.get("/api/products/").status_code == 401


def test_require_token_admits_a_session(client, require_token):
    client.force_login(make_user("browser"))
    assert client.get("/api/products/").status_code == 200


# Writes


@pytest.mark.parametrize("method", ["post", "delete"])
def test_product_writes_need_staff(client, method):
    p = make_product("W1", "写 测试")
    url = "/api/products/" if method == "post" else f"/api/products/{p.pk}/"
    assert getattr(client, method)(url, {"sku": "NEW"}, format="json").status_code == 401

    client.force_authenticate(make_user("shopper"))
    assert getattr(client, method)(url, {"sku": "NEW"}, format="json").status_code == 403

    # Staff need the model permission of the method, as in the admin.
    clerk = make_user("clerk", staff=True)
    client.force_authenticate(clerk)
    assert getattr(client, method)(url, {"sku": "NEW"}, format="json").status_code == 403
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["view_product", "change_product"]))
    client.force_authenticate(User.objects.get(pk=clerk.pk))  # permissions are cached per user object
    assert getattr(client, method)(url, {"sku": "NEW"}, format="json").status_code == 403
    # With it, the viewset being read-only, the method itself is refused.
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["add_product", "delete_product"]))
    client.force_authenticate(User.objects.get(pk=clerk.pk))
    assert getattr(client, method)(url, {"sku": "NEW"}, format="json").status_code == 405
    assert Product.objects.count() == 1


class Echo(APIView):
    """A write endpoint under the project's default permissions."""

    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        return Response({"ok": True})

    def delete(self, request):
        return Response(status=204)


class PhotoSearch(Echo):
    """POST that only reads, like a search by photo."""

    post_is_read = True


class PriceEcho(Echo):
    """A write endpoint without a model that names the permission its writes need."""

    write_permissions = ["catalog.change_product"]


def call(view_class, method: str, user: User | None = None):
    request = getattr(APIRequestFactory(), method)("/x/")
    if user is not None:
        force_authenticate(request, user=user)
    return view_class.as_view()(request)


def test_default_permission_class_is_wired():
    assert Echo().get_permissions()[0].__class__ is ReadOrStaffWrite


@pytest.mark.parametrize(
    ("view", "method", "who", "status"),
    [
        (Echo, "get", "anonymous", 200),
        (Echo, "post", "anonymous", 401),
        (Echo, "post", "user", 403),
        (Echo, "post", "staff", 403),  # no model: nothing says which permission a write needs
        (Echo, "post", "superuser", 200),
        (Echo, "delete", "user", 403),
        (Echo, "delete", "staff", 403),
        (Echo, "delete", "superuser", 204),
        (PriceEcho, "post", "staff", 403),
        (PriceEcho, "post", "staff with change_product", 200),
        (PriceEcho, "post", "user with change_product", 403),  # not staff
        (PhotoSearch, "post", "anonymous", 200),
        (PhotoSearch, "post", "user", 200),
        (PhotoSearch, "delete", "user", 403),
    ],
)
def test_permission_by_method_and_user(view, method, who, status):
    user = None
    if who != "anonymous":
        user = make_user(who.split()[0], staff=who.startswith(("staff", "superuser")))
        user.is_superuser = who == "superuser"
        user.save()
        if who.endswith("change_product"):
            user.user_permissions.add(Permission.objects.get(codename="change_product"))
            user = User.objects.get(pk=user.pk)
    assert call(view, method, user).status_code == status


def test_post_is_read_needs_a_user_when_tokens_are_required(require_token):
    assert call(PhotoSearch, "post").status_code == 401
    user = make_user("u")
    assert call(PhotoSearch, "post", user).status_code == 200
    assert call(Echo, "post", user).status_code == 403


# Throttling


def test_third_similar_call_is_a_429_with_retry_after(client, settings):
    with_rates(settings, similar="2/min")
    p = make_product("T1", "限流 测试")
    url = f"/api/products/{p.pk}/similar/"
    assert [client.get(url).status_code for _ in range(2)] == [200, 200]
    third = client.get(url)
    assert third.status_code == 429
    assert 0 < int(third["Retry-After"]) <= 60
    # The limit is per scope and client, not per URL; other scopes keep their own budget.
    other = make_product("T2", "限流 测试 2")
    assert client.get(f"/api/products/{other.pk}/similar/").status_code == 429
    assert client.get("/api/products/").status_code == 200


def test_scopes_are_counted_per_user(client, settings):
    with_rates(settings, read="1/min")
    assert client.get("/api/products/").status_code == 200
    assert client.get("/api/products/").status_code == 429
    client.force_authenticate(make_user("u"))
    assert client.get("/api/products/").status_code == 200


def test_a_rotating_x_forwarded_for_does_not_dodge_the_limit(client, settings):
    with_rates(settings, read="5/min")
    statuses = [
        client.get("/api/products/", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(150)
    ]
    assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}


def test_the_header_is_ignored_even_where_the_host_never_set_num_proxies(client, settings):
    settings.REST_FRAMEWORK = {k: v for k, v in settings.REST_FRAMEWORK.items() if k != "NUM_PROXIES"}
    with_rates(settings, read="2/min")
    statuses = [client.get("/api/products/", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 429, 429]


def test_behind_one_proxy_the_client_address_it_adds_is_counted(client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    with_rates(settings, read="1/min")
    # The proxy appends the address it saw; whatever the client wrote before it is ignored.
    first = client.get("/api/products/", HTTP_X_FORWARDED_FOR="1.1.1.1, 203.0.113.7")
    spoofed = client.get("/api/products/", HTTP_X_FORWARDED_FOR="9.9.9.9, 203.0.113.7")
    other = client.get("/api/products/", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert (first.status_code, spoofed.status_code, other.status_code) == (200, 429, 200)


def test_view_throttle_scope_wins_over_the_action(settings):
    with_rates(settings, search="1/min")

    class Search(Echo):
        throttle_scope = "search"
        action = "list"  # would be "read" without throttle_scope

    assert [call(Search, "get").status_code for _ in range(2)] == [200, 429]


def test_views_without_a_scope_are_not_throttled(settings):
    with_rates(settings, read="1/min")
    assert [call(Echo, "get").status_code for _ in range(3)] == [200, 200, 200]


def test_action_scopes_map_the_viewset_actions():
    throttle = ActionScopedRateThrottle()

    class View:
        action = "category_suggestions"

    assert throttle.get_scope(View()) == "suggestions"
    View.action = "retrieve"
    assert throttle.get_scope(View()) == "read"


def api_views(patterns=None):
    """Yield (route, DRF view instance) for every DRF view and viewset action in the URLconf."""
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            yield from api_views(entry.url_patterns)
            continue
        cls = getattr(entry.callback, "cls", None)
        if not (isinstance(cls, type) and issubclass(cls, APIView)):
            continue
        view = cls(**getattr(entry.callback, "initkwargs", {}))
        for action in (getattr(entry.callback, "actions", None) or {None: None}).values():
            view.action = action
            yield str(entry.pattern), view


def test_every_throttle_scope_in_the_urlconf_has_a_rate():
    # A scope without a rate is a 500 on every request of that endpoint.
    throttle = ActionScopedRateThrottle()
    rates = api_settings.DEFAULT_THROTTLE_RATES
    scopes = {route: throttle.get_scope(view) for route, view in api_views()}
    assert {"read", "similar"} <= set(scopes.values())
    assert {route: scope for route, scope in scopes.items() if scope and scope not in rates} == {}


def test_throttle_counts_in_a_shared_redis_cache(client, settings):
    # With CACHE_URL set, all web processes count in Redis; the limit must hold there too.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/14",
            "KEY_PREFIX": f"test-{uuid.uuid4().hex}",  # private keys; never flush a shared db
        }
    }
    with_rates(settings, similar="2/min")
    p = make_product("T1", "限流 测试")
    url = f"/api/products/{p.pk}/similar/"
    assert [client.get(url).status_code for _ in range(3)] == [200, 200, 429]
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    stored = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"]).keys(f"{prefix}:*")
    assert [key.decode().split(":", 2)[2] for key in stored] == ["throttle_similar_127.0.0.1"]


# Parameters


@pytest.mark.parametrize("k", ["0", "101", "abc"])
def test_bad_k_on_similar_is_a_400(client, k):
    p = make_product("K1", "k 测试")
    response = client.get(f"/api/products/{p.pk}/similar/", {"k": k})
    assert response.status_code == 400
    assert "k" in response.json()


@pytest.mark.parametrize(
    "params",
    [
        {"category": "abc"},
        {"category": "1.5"},
        {"embedding_status": "nope"},
        {"is_active": "maybe"},
        # Given empty: a 400 naming it, not "no filter".
        {"category": ""},
        {"embedding_status": ""},
        {"is_active": ""},
        {"price_min": ""},
        {"price_max": ""},
    ],
)
def test_bad_list_filters_are_a_400(client, params):
    make_product("F1", "过滤 测试")
    response = client.get("/api/products/", params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_an_unknown_category_filters_everything_out(client):
    make_product("F1", "过滤 测试", category="服装 > 女装")
    response = client.get("/api/products/", {"category": "987654"})
    assert response.status_code == 200 and response.json()["count"] == 0


def test_empty_text_filters_filter_nothing_out(client):
    make_product("F1", "过滤 测试", brand="ACME")
    assert client.get("/api/products/", {"sku": "", "brand": ""}).json()["count"] == 1


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.0", "", "last"])
def test_bad_page_is_a_400_naming_it(client, page):
    make_product("F1", "过滤 测试")
    response = client.get("/api/products/", {"page": page})
    assert response.status_code == 400 and list(response.json()) == ["page"]


def test_page_past_the_last_is_a_404(client):
    make_product("F1", "过滤 测试")
    assert client.get("/api/products/", {"page": "1"}).status_code == 200
    assert client.get("/api/products/", {"page": "2"}).json() == {"detail": "Invalid page."}


# Settings checks


def test_api_settings_pass_checks():
    assert check_api() == []


def test_require_token_must_be_a_bool(settings):
    settings.SIMILARITY = {**settings.SIMILARITY, "API_REQUIRE_TOKEN": "false"}
    assert [e.id for e in check_api()] == ["similarity.E007"]


def test_missing_or_malformed_rates_are_errors(settings):
    rest = settings.REST_FRAMEWORK
    rates = {k: v for k, v in rest["DEFAULT_THROTTLE_RATES"].items() if k != "similar"}
    settings.REST_FRAMEWORK = {**rest, "DEFAULT_THROTTLE_RATES": {**rates, "read": "lots"}}
    (error,) = check_api()
    assert error.id == "similarity.E008"
    assert "['similar']" in error.msg and "'read': 'lots'" in error.msg
