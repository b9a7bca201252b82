"""The registry on the test app: what registering gives a model, and what a host reads when
something is wrong. The test app's models are registered by tests.settings (SIMILARITY["MODELS"])."""
from __future__ import annotations

import io

import pytest
from django.contrib import admin
from django.contrib.contenttypes.fields import GenericRelation
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from similarity import registry
from similarity.admin import SimilarityAdminMixin
from similarity.indexing.writer import encode_objects
from similarity.registry import (
    NotRegistered,
    adapter_or_none,
    get_adapter,
    is_registered,
    register,
    registered_models,
    unregister,
)
from tests.factories import GADGET, add_photo, genre_path, image_bytes, make_book, make_gadget, make_listing
from tests.testapp.adapters import BookAdapter, GadgetAdapter, ListingAdapter
from tests.testapp.admin import GadgetAdmin
from tests.testapp.models import Book, Gadget, Listing, Shelf

pytestmark = pytest.mark.django_db


@pytest.fixture
def restore_registry():
    """Put the registry back as the settings made it (the same adapter instances, in order)."""
    saved = dict(registry._registry)
    yield
    for label, adapter in saved.items():
        if label not in registry._registry:  # unregistered by the test: connect it again
            register(adapter.model, type(adapter))
    registry._registry.clear()
    registry._registry.update(saved)


def test_the_models_named_in_settings_are_registered_with_their_adapters():
    assert {Gadget, Book, Listing} <= set(registered_models())
    for model, adapter_class in ((Gadget, GadgetAdapter), (Book, BookAdapter), (Listing, ListingAdapter)):
        adapter = get_adapter(model)
        assert type(adapter) is adapter_class and adapter.model is model
        assert get_adapter(model._meta.label) is adapter and get_adapter(model()) is adapter
        assert is_registered(model) and adapter_or_none(model) is adapter
    assert not is_registered(Shelf) and adapter_or_none(Shelf) is None


def test_an_unregistered_model_is_an_error_that_says_what_to_do():
    known = ", ".join(sorted(model._meta.label for model in registered_models()))
    with pytest.raises(NotRegistered) as error:
        get_adapter(Shelf)
    assert str(error.value) == (
        f"testapp.Shelf is not registered with similarity (registered: {known}): add it to "
        "SIMILARITY['MODELS'] or call similarity.register() in its AppConfig.ready()."
    )
    assert isinstance(error.value, LookupError)
    with pytest.raises(NotRegistered, match=r"^nope\.Nothing is not registered"):
        get_adapter("nope.Nothing")


def test_registering_adds_generic_relations_and_no_column():
    relations = {f.name: f for f in Gadget._meta.private_fields if isinstance(f, GenericRelation)}
    assert set(relations) == {"similarity_embeddings", "similarity_states", "similarity_matches_first", "similarity_matches_second"}
    assert relations["similarity_matches_second"].object_id_field_name == "second_id"
    assert relations["similarity_states"].related_model._meta.label == "similarity.EncodingState"
    assert not [f.name for f in Gadget._meta.concrete_fields if "similarity" in f.name]
    with connection.cursor() as cursor:
        columns = [c.name for c in connection.introspection.get_table_description(cursor, "testapp_gadget")]
    assert not [c for c in columns if "similarity" in c or "embedding" in c]


def test_registering_needs_no_migration_in_the_hosts_app():
    out = io.StringIO()
    call_command("makemigrations", "testapp", "--check", "--dry-run", stdout=out)  # exits 1 on changes
    assert "No changes detected" in out.getvalue()


def test_registering_twice_is_harmless(restore_registry, django_capture_on_commit_callbacks):
    again = register(Gadget, GadgetAdapter)
    assert register("testapp.Gadget", "tests.testapp.adapters.GadgetAdapter") is get_adapter(Gadget)
    assert type(again) is GadgetAdapter and registered_models().count(Gadget) == 1
    names = [f.name for f in Gadget._meta.private_fields]
    assert names.count("similarity_embeddings") == 1 and names.count("similarity_states") == 1
    # The signals are connected once: one scheduling per save, not one per registration.
    with django_capture_on_commit_callbacks() as scheduled:
        gadget = make_gadget("T1", "saved once")
    assert len(scheduled) == 1
    with django_capture_on_commit_callbacks() as scheduled:
        add_photo(gadget, image_bytes())
    assert len(scheduled) == 1
    register(Book, BookAdapter)
    book = make_book("T2", "added once")
    with django_capture_on_commit_callbacks() as scheduled:
        book.genres.add(genre_path("Fiction"))
    assert len(scheduled) == 1


def test_an_adapter_must_be_an_item_adapter(restore_registry):
    with pytest.raises(ImproperlyConfigured, match="testapp.Shelf must subclass similarity.adapters.ItemAdapter"):
        register(Shelf, object)
    assert not is_registered(Shelf)


def test_unregistering_stops_scheduling(restore_registry, django_capture_on_commit_callbacks):
    gadget = make_gadget("U1", "registered")
    unregister(Gadget)
    assert not is_registered(Gadget)
    with django_capture_on_commit_callbacks() as scheduled:
        gadget.name = "edited while unregistered"
        gadget.save()
        add_photo(gadget, image_bytes())
    assert scheduled == []


def test_a_model_registered_in_settings_gets_its_model_admin_extended(admin_client):
    model_admin = admin.site._registry[Gadget]
    assert isinstance(model_admin, SimilarityAdminMixin) and isinstance(model_admin, GadgetAdmin)
    assert model_admin.list_display[:2] == ("code", "name")  # the host's own columns stay
    assert Book not in admin.site._registry  # a model without an admin gets none
    gadget = make_gadget("AD1", "蓝牙 耳机 admin", image=image_bytes(), shelf="数码 > 耳机")
    encode_objects(GADGET, [gadget.pk])
    listing = admin_client.get("/admin/testapp/gadget/").content.decode()
    assert 'id="encoding-status"' in listing and "AD1" in listing and "1 ready" in listing
    assert "reencode_selected" in listing and "suggest_categories" in listing
    change = admin_client.get(f"/admin/testapp/gadget/{gadget.pk}/change/")
    assert change.status_code == 200
    assert "similar items" in change.content.decode().lower()


def test_each_registered_model_gets_its_api(client):
    gadget = make_gadget("API1", "无线 耳机", image=image_bytes(), shelf="数码 > 耳机", listed=False)
    book = make_book("API2", "Dune", genres=("Fiction > Science Fiction", "Classics"))
    listing = make_listing("Steel spade", section="Garden/Hand Tools", image=image_bytes())
    (item,) = client.get("/api/gadgets/").json()["results"]
    assert (item["id"], item["title"], item["categories"], item["is_active"]) == (gadget.pk, "无线 耳机", ["数码 > 耳机"], False)
    assert item["image"].endswith(".png") and item["embedding_status"] == "pending"
    (item,) = client.get("/api/books/", {"category": genre_path("Fiction").pk}).json()["results"]
    assert (item["id"], item["categories"]) == (book.pk, ["Fiction > Science Fiction", "Classics"])
    assert client.get("/api/books/", {"category": genre_path("Classics").pk}).json()["count"] == 1
    (item,) = client.get("/api/listings/", {"category": "Garden"}).json()["results"]
    assert (item["id"], item["categories"], item["is_active"]) == (listing.pk, ["Garden > Hand Tools"], True)
    assert client.get("/api/listings/", {"category": "Kitchen"}).json()["count"] == 0
