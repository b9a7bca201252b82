"""Similar items from statements compiled once per shape (similarity.search.statements): the
same bodies as the ORM's way, each request's own values, and the ORM's way wherever a shape
may depend on code of the host's own."""
from __future__ import annotations

from unittest import mock

import pytest
from django.db.models import Value
from django.test import override_settings

from catalog.models import Product
from similarity.api import mixins
from similarity.registry import get_adapter
from similarity.search import statements
from similarity.search.statements import KEY_SLOT, CompiledQuery, NotCompilable, compiled, integer_key
from tests.catalog.test_api_similarity import shop, similar, skus  # noqa: F401 (shop is a fixture)

pytestmark = pytest.mark.django_db

SHAPES = [
    {"k": 3}, {"k": 20}, {}, {"k": 5, "mode": "image"}, {"k": 5, "mode": "text"},
    {"k": 20, "include_variants": "true"}, {"k": 20, "include_variants": "false"},
]


def orm_way(client, product, **params):
    with mock.patch.object(mixins._ResultsMixin, "reuse_statements", False):
        return similar(client, product, **params)


def compiled_way(client, product, **params):
    # The ORM's scan never runs: the compiled statement answers.
    with mock.patch.object(mixins, "similar_to", side_effect=AssertionError("the ORM's way ran")):
        return similar(client, product, **params)


@pytest.mark.parametrize("params", SHAPES)
def test_compiled_statements_write_what_the_orm_writes(client, shop, params):  # noqa: F811
    Product.objects.filter(sku__in=["C1", "D1"]).update(variant_group="chiffon")
    for name in ("query", "cheap", "dear", "phone", "loose"):
        product = shop[name]
        expected = orm_way(client, product, **params)
        assert compiled_way(client, product, **params) == expected
        assert compiled_way(client, product, **params) == expected  # the second time from the cache


def test_each_request_reads_its_own_values(client, shop):  # noqa: F811
    Product.objects.filter(sku__in=["C1", "D1"]).update(variant_group="chiffon")
    # Same shape (a variant group), other values: each item leaves out its own variants.
    assert "D1" not in skus(compiled_way(client, shop["cheap"], k=20))
    assert "Q1-L" not in skus(compiled_way(client, shop["query"], k=20))
    assert "D1" in skus(compiled_way(client, shop["query"], k=20))
    # A change of a row is seen by the next request: nothing of it is kept with the statement.
    Product.objects.filter(sku="D1").update(is_active=False)
    assert "D1" not in skus(compiled_way(client, shop["query"], k=20))
    Product.objects.filter(sku="Q1").update(title="全新 标题")
    assert compiled_way(client, shop["query"], k=20)["results"] == orm_way(client, shop["query"], k=20)["results"]


def filtered_shapes(shop):  # noqa: F811
    dresses, women = shop["query"].category, shop["query"].category.parent
    return [
        {"k": 20, "category": dresses.pk}, {"k": 20, "category": women.pk}, {"k": 20, "category": shop["phone"].category.pk},
        {"k": 20, "is_active": "false"}, {"k": 20, "is_active": "true", "category": women.pk},
        {"k": 20, "brand": "apple"}, {"k": 20, "price_min": "100", "price_max": "900"},
        {"k": 5, "mode": "image", "embedding_status": "ready"}, {"k": 20, "sku": ""},
    ]


def test_filtered_statements_write_what_the_orm_writes(client, shop):  # noqa: F811
    for params in filtered_shapes(shop):
        for name in ("query", "cheap", "phone", "loose"):
            expected = orm_way(client, shop[name], **params)
            assert compiled_way(client, shop[name], **params) == expected, params
            assert compiled_way(client, shop[name], **params) == expected, params  # from the cache


def test_each_combination_of_filter_values_is_its_own_statement(client, shop):  # noqa: F811
    dresses, shirts = shop["query"].category, shop["shirt"].category
    assert set(skus(compiled_way(client, shop["query"], k=20, category=dresses.pk))) == {"C1", "D1"}
    assert skus(compiled_way(client, shop["query"], k=20, category=shirts.pk)) == ["S1"]
    assert skus(compiled_way(client, shop["query"], k=20, category=dresses.pk, price_max="100")) == ["C1"]
    assert "X1" in skus(compiled_way(client, shop["query"], k=20, is_active="false"))
    # Rows are read by each request: a product moved into the category shows at once.
    Product.objects.filter(sku="S1").update(category=dresses)
    assert set(skus(compiled_way(client, shop["query"], k=20, category=dresses.pk))) == {"C1", "D1", "S1"}


def test_a_filtered_statement_is_built_again_after_its_lifetime(client, shop):  # noqa: F811
    dresses = shop["query"].category
    with mock.patch.object(mixins, "CompiledQuery", wraps=CompiledQuery) as built:
        compiled_way(client, shop["cheap"], k=20)  # the item's statement and the unfiltered one
        before = built.call_count
        compiled_way(client, shop["cheap"], k=20, category=dresses.pk)
        compiled_way(client, shop["dear"], k=20, category=dresses.pk)  # the same shape: no variants
        assert built.call_count == before + 1
        later = statements.time.monotonic() + 61  # ProductFilter.statement_lifetime is 60 s
        with mock.patch.object(statements.time, "monotonic", return_value=later):
            compiled_way(client, shop["cheap"], k=20, category=dresses.pk)
            assert built.call_count == before + 2
            compiled_way(client, shop["cheap"], k=20)  # unfiltered statements never expire
        assert built.call_count == before + 2


def test_without_a_lifetime_or_with_other_parameters_filters_go_the_orms_way(client, shop):  # noqa: F811
    dresses = shop["query"].category
    with mock.patch.object(mixins, "similar_to", wraps=mixins.similar_to) as orm:
        similar(client, shop["query"], k=20, exclude_duplicates="true")
        similar(client, shop["query"], k=20, unknown="1")
        # A value that could be taken for a placeholder is never compiled.
        assert similar(client, shop["query"], k=20, category=str(statements.KEY_SLOT))["results"] == []
        # An unknown category empties the queryset: the ORM's way answers (no statement to run).
        assert similar(client, shop["query"], k=20, category=999999)["results"] == []
        assert orm.call_count == 4
        with mock.patch.object(mixins, "reuse_lifetime", return_value=None):
            assert set(skus(similar(client, shop["query"], k=20, category=dresses.pk))) == {"C1", "D1"}
        assert orm.call_count == 5
        similar(client, shop["query"], k=20, category=dresses.pk)
        assert orm.call_count == 5


def test_a_bad_filter_value_is_a_400_every_time(client, shop):  # noqa: F811
    for _ in range(2):
        response = client.get(f"/api/products/{shop['query'].pk}/similar/", {"category": "abc"})
        assert response.status_code == 400 and "category" in response.json(), response.content


def test_only_a_filter_set_that_sets_a_lifetime_itself_allows_reuse():
    from similarity.api.filters import ItemFilterSet, reuse_lifetime

    class Hosts(ItemFilterSet):
        pass

    class Trusted(ItemFilterSet):
        statement_lifetime = 5.0

    class Child(Trusted):
        pass

    assert reuse_lifetime(ItemFilterSet) == 60.0
    assert reuse_lifetime(Hosts) is None and reuse_lifetime(Child) is None
    assert reuse_lifetime(Trusted) == 5.0
    adapter = get_adapter(Product)
    assert reuse_lifetime(ItemFilterSet.for_adapter(adapter)) == 60.0  # the demo's ProductFilter sets it


def test_a_missing_or_malformed_item_is_a_404(client, shop):  # noqa: F811
    for key in ("999999", "abc", str(2**40), "-1"):
        response = client.get(f"/api/products/{key}/similar/")
        assert response.status_code == 404, (key, response.content)
        with mock.patch.object(mixins._ResultsMixin, "reuse_statements", False):
            assert response.json() == client.get(f"/api/products/{key}/similar/").json()


def test_a_view_overriding_a_query_method_never_reuses_statements(client, shop):  # noqa: F811
    from similarity.api.views import views_of

    viewset = views_of(Product)["viewset"]
    assert mixins._app_queries(viewset)

    class OwnCandidates(viewset):
        def get_candidates(self):
            return super().get_candidates().filter(price__lt=500)

    assert not mixins._app_queries(OwnCandidates)
    assert not mixins._app_queries(type("OwnBackend", (viewset,), {"filter_backends": [object]}))


def test_a_host_variant_hook_goes_the_orms_way_unless_variants_are_wanted(client, shop):  # noqa: F811
    adapter = get_adapter(Product)
    with mock.patch.object(type(adapter), "exclude_variants", lambda self, queryset, obj: queryset.exclude(sku="C1")):
        with mock.patch.object(mixins, "similar_to", wraps=mixins.similar_to) as orm:
            assert "C1" not in skus(similar(client, shop["query"], k=20))
            assert orm.call_count == 1
            assert "C1" in skus(compiled_way(client, shop["query"], k=20, include_variants="true"))


def test_a_compiled_query_reads_what_the_orm_reads(shop, django_assert_num_queries):  # noqa: F811
    queryset = Product.objects.select_related("category").prefetch_related("images").annotate(one=Value(1))
    statement = CompiledQuery(queryset.filter(pk=KEY_SLOT).order_by("pk"), {"key": KEY_SLOT})
    for product in shop.values():
        with django_assert_num_queries(2):  # the row with its category, then its photos
            (found,) = statement.fetch(key=product.pk)
        expected = queryset.get(pk=product.pk)
        assert [getattr(found, f.attname) for f in Product._meta.concrete_fields] == [
            getattr(expected, f.attname) for f in Product._meta.concrete_fields
        ]
        assert found.one == 1 and found._state.db == "default" and not found._state.adding
        with django_assert_num_queries(0):
            assert found.category == expected.category
            assert [i.pk for i in found.images.all()] == [i.pk for i in expected.images.all()]
    assert statement.fetch(key=999999) == []


@pytest.mark.parametrize(
    "queryset",
    [
        lambda: Product.objects.filter(pk=KEY_SLOT).none(),
        lambda: Product.objects.filter(pk__in=[]),
        lambda: Product.objects.filter(pk=KEY_SLOT).values("pk"),
        lambda: Product.objects.filter(sku="x"),  # no placeholder
    ],
)
def test_what_cannot_be_compiled_says_so(queryset):
    with pytest.raises(NotCompilable):
        CompiledQuery(queryset(), {"key": KEY_SLOT})


def test_statements_are_compiled_once_and_forgotten_when_a_setting_changes():
    build = mock.Mock(return_value="statement")
    assert compiled(("test", 1), build) == compiled(("test", 1), build) == "statement"
    assert build.call_count == 1
    with override_settings(SIMILARITY_TEST_SETTING=1):
        assert compiled(("test", 1), build) == "statement"
    assert build.call_count == 2
    failing = mock.Mock(side_effect=NotCompilable("no"))
    assert compiled(("test", 2), failing) is None and compiled(("test", 2), failing) is None
    assert failing.call_count == 1  # the ORM's way from then on, without trying again


def test_integer_keys_are_the_ones_the_column_holds():
    pk = Product._meta.pk
    assert integer_key(pk, "42", "default") == 42
    assert integer_key(pk, "abc", "default") is None
    assert integer_key(pk, str(2**63), "default") is None
    assert integer_key(Product._meta.get_field("sku"), "42", "default") is None
    assert statements.CACHE_SIZE > len(SHAPES) * 3


def test_parameters_are_validated_once_per_combination_and_again_after_a_settings_change(client, shop, settings):  # noqa: F811
    mixins._validated_similar.cache_clear()
    with mock.patch.object(mixins, "SimilarQuerySerializer", wraps=mixins.SimilarQuerySerializer) as serializer:
        for _ in range(3):
            similar(client, shop["query"], k=3, price_max=500)
            similar(client, shop["cheap"], k=3)  # the filter is not one of its parameters
        assert serializer.call_count == 1
        assert client.get(f"/api/products/{shop['query'].pk}/similar/", {"k": 50}).status_code == 200
        settings.SIMILARITY = {**settings.SIMILARITY, "MAX_K": 20}
        response = client.get(f"/api/products/{shop['query'].pk}/similar/", {"k": 50})
        assert response.status_code == 400 and response.json() == {"k": ["k must be at most 20."]}
        assert client.get(f"/api/products/{shop['query'].pk}/similar/", {"k": 50}).status_code == 400  # errors are not kept
