"""The adapter's strategies on the test app's three shapes, on the real database.

``Gadget``: photos in a related table, a foreign-key ``Shelf`` tree (``label``), a variant
value. ``Book``: a many-to-many ``Genre`` tree (parent ``broader``), editions as a foreign key
to a parent book. ``Listing``: a path string split by "/", its photo on the row.
"""
from __future__ import annotations

import datetime

import pytest
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from similarity.indexing.writer import encode_objects
from similarity.ml.taxonomy import LABELS
from similarity.models import Embedding, EmbeddingStatus, EncodingState, state_of
from similarity.registry import get_adapter
from tests.factories import (
    BOOK,
    GADGET,
    LISTING,
    add_photo,
    genre_path,
    image_bytes,
    make_book,
    make_gadget,
    make_listing,
    mark_ready,
    shelf_path,
    vectors_of,
)
from tests.testapp.models import Book, Gadget, GadgetPhoto, Genre, Listing, Shelf

pytestmark = pytest.mark.django_db


@pytest.fixture
def gadgets():
    return get_adapter(GADGET)


@pytest.fixture
def books():
    return get_adapter(BOOK)


@pytest.fixture
def listings():
    return get_adapter(LISTING)


def fetched(adapter, item):
    """``item`` read as the worker reads it (with what the adapter prefetches)."""
    return adapter.get_queryset().get(pk=item.pk)


def pks(queryset) -> list[int]:
    return sorted(queryset.values_list("pk", flat=True))


# What is encoded


def test_text_is_the_title_and_the_text_fields_never_the_category(gadgets):
    gadget = make_gadget("T1", "  无线耳机 X1 ", maker="Acme", notes="降噪 long notes", shelf="Audio > Head Phones")
    item = fetched(gadgets, gadget)
    assert gadgets.get_title(item) == "无线耳机 X1"
    # A vector comes from content: the category is a label to learn and suggest, not input.
    assert gadgets.get_text(item) == "无线耳机 X1\nAcme\n降噪 long notes"


def test_empty_text_fields_are_left_out_and_long_ones_cut(gadgets, books):
    gadget = make_gadget("T2", "杯子", notes="x" * 1000)
    assert gadgets.get_text(fetched(gadgets, gadget)) == "杯子\n" + "x" * gadgets.text_chars
    book = make_book("978-1", "The Long Noir", blurb="A detective story.", genres=("Fiction > Crime",))
    assert books.get_text(fetched(books, book)) == "The Long Noir\nA detective story."


def test_a_path_string_is_read_as_a_label_and_not_encoded(listings):
    listing = make_listing("Steel spade", details="Forged.", section="Garden/Hand Tools")
    assert listings.get_labels(fetched(listings, listing)) == ["Garden > Hand Tools"]
    assert listings.get_text(fetched(listings, listing)) == "Steel spade\nForged."


def test_the_first_photo_by_rank_is_the_one_encoded(gadgets):
    gadget = make_gadget("P1", "three photos")
    add_photo(gadget, image_bytes((1, 1, 1)), rank=5)  # saved first: the lowest key
    first = add_photo(gadget, image_bytes((2, 2, 2)), rank=1)
    add_photo(gadget, image_bytes((3, 3, 3)), rank=1)  # same rank, a later key
    assert gadgets.get_image(fetched(gadgets, gadget)).name == first.picture.name
    # A photo row without a file is passed over.
    GadgetPhoto.objects.create(gadget=gadget, rank=0, picture="")
    assert gadgets.get_image(fetched(gadgets, gadget)).name == first.picture.name
    assert gadgets.get_image(fetched(gadgets, make_gadget("P2", "no photo"))) is None


def test_a_photo_on_the_row_is_the_one_encoded(listings, books):
    listing = make_listing("with photo", image=image_bytes())
    assert listings.get_image(fetched(listings, listing)).name == Listing.objects.get(pk=listing.pk).photo.name
    assert listings.get_image(fetched(listings, make_listing("without photo"))) is None
    assert books.get_image(fetched(books, make_book("978-2", "no photo field"))) is None


def test_the_split_key_is_the_identifier_or_the_key(gadgets, listings):
    assert gadgets.get_split_key(make_gadget("CODE-9", "x")) == "CODE-9"
    listing = make_listing("no identifier")
    assert listings.get_split_key(listing) == str(listing.pk)


# Category labels


def test_labels_of_a_foreign_key_tree(gadgets):
    drill = make_gadget("L1", "drill", shelf="Workshop > Power Tools > Drills")
    assert gadgets.get_labels(fetched(gadgets, drill)) == ["Workshop > Power Tools > Drills"]
    assert gadgets.get_label(fetched(gadgets, drill)) == "Workshop > Power Tools > Drills"
    loose = make_gadget("L2", "no shelf")
    assert (gadgets.get_labels(loose), gadgets.get_label(loose)) == ([], "")
    assert gadgets.category_model() is Shelf
    assert gadgets.category_labels()[shelf_path("Workshop > Power Tools").pk] == "Workshop > Power Tools"


def test_a_category_whose_own_name_has_spaces_is_one_level(gadgets, books):
    shelf = Shelf.objects.create(label="  Power  Tools ", parent=Shelf.objects.create(label="Big Workshop"))
    gadget = Gadget.objects.create(code="L3", name="saw", shelf=shelf)
    (label,) = gadgets.get_labels(fetched(gadgets, gadget))
    assert label == "Big Workshop > Power  Tools"  # the name kept whole, trimmed
    assert LABELS.split(label) == ["Big Workshop", "Power  Tools"]
    book = make_book("978-3", "Dune", genres=("Science Fiction > Space Opera",))
    assert books.get_labels(fetched(books, book)) == ["Science Fiction > Space Opera"]


def test_labels_of_a_many_to_many_tree_most_specific_first(books):
    book = make_book("978-4", "many genres", genres=("Fiction", "Non-fiction > History", "Fiction > Crime > Noir"))
    assert books.get_labels(fetched(books, book)) == ["Fiction > Crime > Noir", "Non-fiction > History", "Fiction"]
    assert books.get_label(fetched(books, book)) == "Fiction > Crime > Noir"
    assert books.get_labels(fetched(books, make_book("978-5", "no genre"))) == []
    assert books.category_model() is Genre
    assert sorted(books.category_labels().values()) == [
        "Fiction", "Fiction > Crime", "Fiction > Crime > Noir", "Non-fiction", "Non-fiction > History",
    ]


@pytest.mark.parametrize(
    "section, labels",
    [
        ("Garden/Hand Tools/Spades", ["Garden > Hand Tools > Spades"]),
        (" Garden / Hand Tools /", ["Garden > Hand Tools"]),  # spaces and empty levels dropped
        ("", []),
        ("/", []),
    ],
)
def test_labels_of_a_path_string_with_its_own_separator(listings, section, labels):
    assert listings.get_labels(make_listing("x", section=section)) == labels
    assert listings.category_model() is None and listings.category_labels() == {}


# Filtering and setting categories, per strategy


def test_foreign_key_categories_filter_and_set(gadgets):
    drill = make_gadget("F1", "drill", shelf="Workshop > Power Tools > Drills")
    saw = make_gadget("F2", "saw", shelf="Workshop > Hand Tools")
    pan = make_gadget("F3", "pan", shelf="Kitchen")
    loose = make_gadget("F4", "loose")
    everything = Gadget.objects.all()
    assert pks(gadgets.labelled(everything)) == sorted([drill.pk, saw.pk, pan.pk])
    assert pks(gadgets.filter_label(everything, "")) == [loose.pk]
    assert pks(gadgets.filter_label(everything, "workshop >power tools> DRILLS")) == [drill.pk]
    assert pks(gadgets.filter_label(everything, "Workshop")) == []  # exactly, not below
    assert pks(gadgets.filter_category(everything, "Workshop")) == sorted([drill.pk, saw.pk])
    assert pks(gadgets.filter_category(everything, "Work")) == []  # by level, not by characters
    assert pks(gadgets.filter_category(everything.filter(listed=True).exclude(pk=saw.pk), "Workshop")) == [drill.pk]

    before = Gadget.objects.get(pk=loose.pk).changed
    changed = gadgets.set_label(everything.filter(pk__in=[drill.pk, saw.pk, loose.pk]), "Workshop > Power Tools > Drills")
    assert sorted(changed) == sorted([saw.pk, loose.pk])  # the drill was there already
    assert Gadget.objects.get(pk=loose.pk).changed > before  # changed_field touched: --since finds it
    assert Shelf.objects.filter(label="Drills").count() == 1 and Shelf.objects.filter(label="Workshop").count() == 1
    assert pks(gadgets.filter_label(everything, "Workshop > Power Tools > Drills")) == sorted([drill.pk, saw.pk, loose.pk])

    assert gadgets.set_label(everything.filter(pk=pan.pk), "Kitchen > Cook Ware > Pans") == [pan.pk]
    pans = Shelf.objects.get(label="Pans")
    assert (pans.parent.label, pans.parent.parent.label, pans.parent.parent.parent) == ("Cook Ware", "Kitchen", None)
    assert Shelf.objects.filter(label="Kitchen").count() == 1  # the existing top level reused
    with pytest.raises(ValueError, match="category path is needed"):
        gadgets.set_label(everything, " > ")


def test_many_to_many_categories_filter_and_set(books):
    noir = make_book("M1", "noir", genres=("Fiction > Crime > Noir", "Fiction > Crime"))  # two matching categories
    crime = make_book("M2", "crime", genres=("Fiction > Crime",))
    history = make_book("M3", "history", genres=("Non-fiction > History",))
    bare = make_book("M4", "no genre")
    everything = Book.objects.all()
    # An item in two matching categories is one row, never two.
    assert pks(books.labelled(everything)) == sorted([noir.pk, crime.pk, history.pk])
    assert books.labelled(everything).count() == 3
    assert pks(books.filter_label(everything, "")) == [bare.pk]
    assert pks(books.filter_label(everything, "Fiction > Crime")) == sorted([noir.pk, crime.pk])
    assert books.filter_label(everything, "Fiction > Crime").count() == 2
    assert pks(books.filter_category(everything, "fiction")) == sorted([noir.pk, crime.pk])
    assert books.filter_category(everything, "Fiction").count() == 2
    assert list(books.filter_category(everything, "Fiction")).count(Book.objects.get(pk=noir.pk)) == 1

    changed = books.set_label(everything.filter(pk__in=[noir.pk, bare.pk, history.pk]), "Fiction > Crime > Noir")
    assert sorted(changed) == sorted([bare.pk, history.pk]) and len(changed) == len(set(changed))
    assert [g.name for g in Book.objects.get(pk=history.pk).genres.all()] == ["Noir"]  # replaced, not added
    assert Genre.objects.filter(name="Noir").count() == 1

    assert books.set_label(everything.filter(pk=crime.pk), "Non-fiction > Biography > Scientists") == [crime.pk]
    scientists = Genre.objects.get(name="Scientists")
    assert (scientists.broader.name, scientists.broader.broader.name) == ("Biography", "Non-fiction")
    assert Genre.objects.filter(name="Non-fiction").count() == 1
    assert books.get_labels(fetched(books, crime)) == ["Non-fiction > Biography > Scientists"]


def test_path_string_categories_filter_and_set(listings):
    spade = make_listing("spade", section="Garden/Hand Tools/Spades")
    hose = make_listing("hose", section="Garden / Hoses")
    pan = make_listing("pan", section="Kitchen")
    bare = make_listing("bare")
    everything = Listing.objects.all()
    assert pks(listings.labelled(everything)) == sorted([spade.pk, hose.pk, pan.pk])
    assert pks(listings.filter_label(everything, "")) == [bare.pk]
    assert pks(listings.filter_label(everything, "Garden > Hoses")) == [hose.pk]
    assert pks(listings.filter_category(everything, "garden")) == sorted([spade.pk, hose.pk])
    assert pks(listings.filter_category(everything, "Garden > Hand Tools")) == [spade.pk]
    assert pks(listings.filter_category(everything, "Gard")) == []

    assert listings.set_label(everything.filter(pk__in=[bare.pk, hose.pk]), "Garden > Hoses") == [bare.pk]
    assert Listing.objects.get(pk=bare.pk).section == "Garden/Hoses"  # written in the host's own format
    assert listings.set_label(everything.filter(pk=pan.pk), "Home > Kitchen Knives") == [pan.pk]
    assert Listing.objects.get(pk=pan.pk).section == "Home/Kitchen Knives"
    assert pks(listings.filter_category(everything, "Home")) == [pan.pk]


# Variants, identifiers, keywords


def test_variants_share_a_value(gadgets):
    red = make_gadget("V1", "mug red", family="MUG")
    blue = make_gadget("V2", "mug blue", family="MUG")
    plate = make_gadget("V3", "plate", family="PLATE")
    lone = make_gadget("V4", "lone")  # no family: a variant of nothing
    everything = Gadget.objects.all()
    assert pks(gadgets.exclude_variants(everything, red)) == sorted([plate.pk, lone.pk])
    assert pks(gadgets.exclude_variants(everything, blue)) == sorted([plate.pk, lone.pk])
    assert pks(gadgets.exclude_variants(everything, lone)) == sorted([red.pk, blue.pk, plate.pk, lone.pk])


def test_variants_by_a_foreign_key_to_a_parent_item(books, listings):
    first = make_book("E1", "first edition")
    second = make_book("E2", "second edition", edition_of=first)
    third = make_book("E3", "third edition", edition_of=first)
    other = make_book("E4", "another book")
    everything = Book.objects.all()
    for book in (first, second, third):  # the parent and all its children are one item
        assert pks(books.exclude_variants(everything, book)) == [other.pk], book.heading
    assert pks(books.exclude_variants(everything, other)) == sorted([first.pk, second.pk, third.pk])
    listing = make_listing("no variants")
    assert pks(listings.exclude_variants(Listing.objects.all(), listing)) == [listing.pk]


def test_search_by_identifier_and_keywords(gadgets, books, listings):
    phone = make_gadget("SKU-15P", "Apple iPhone 15 Pro 256G")
    case = make_gadget("CASE-1", "iPhone 15 手机壳")
    galaxy = make_gadget("S24", "Galaxy S24")
    everything = Gadget.objects.all()
    assert pks(gadgets.search_exact(everything, "sku-15p")) == [phone.pk]
    assert pks(gadgets.search_exact(everything, "SKU-15")) == []
    assert pks(gadgets.search_exact(everything, "")) == []
    assert pks(gadgets.search_keywords(everything, ["iphone15"])) == sorted([phone.pk, case.pk])
    assert pks(gadgets.search_keywords(everything, ["256g", "s24"])) == sorted([phone.pk, galaxy.pk])
    assert pks(gadgets.search_keywords(everything, [])) == []
    book = make_book("978-0-14", "War and Peace")
    assert pks(books.search_exact(Book.objects.all(), "978-0-14")) == [book.pk]
    assert pks(books.search_keywords(Book.objects.all(), ["warand"])) == [book.pk]
    make_listing("no identifier")
    assert pks(listings.search_exact(Listing.objects.all(), "no identifier")) == []


def test_active_items(gadgets, listings):
    shown, hidden = make_gadget("A1", "shown"), make_gadget("A2", "hidden", listed=False)
    assert pks(gadgets.active(Gadget.objects.all())) == [shown.pk]
    assert pks(gadgets.get_clustering_queryset()) == [shown.pk]
    assert hidden.pk not in pks(gadgets.get_clustering_queryset())
    listing = make_listing("no flag: always active")
    assert pks(listings.active(Listing.objects.all())) == [listing.pk]


# What re-encodes an item


def pending(model) -> list[int]:
    return sorted(
        EncodingState.objects.for_model(model).filter(status=EmbeddingStatus.PENDING).values_list("object_id", flat=True)
    )


def settle(model) -> None:
    mark_ready(model.objects.all())
    assert pending(model) == []


def test_the_tables_each_adapter_depends_on(gadgets, books, listings):
    assert gadgets.dependencies() == [(GadgetPhoto, "gadget_id")]
    assert books.dependencies() == [(Book.genres.through, "book_id")]
    assert listings.dependencies() == []


def test_saving_or_deleting_a_photo_re_encodes_its_gadget():
    gadget, other = make_gadget("R1", "photo"), make_gadget("R2", "bystander")
    settle(Gadget)
    photo = add_photo(gadget, image_bytes())
    assert pending(Gadget) == [gadget.pk]
    settle(Gadget)
    photo.rank = 3
    photo.save()
    assert pending(Gadget) == [gadget.pk]
    settle(Gadget)
    photo.delete()
    assert pending(Gadget) == [gadget.pk]
    assert state_of(other).status == EmbeddingStatus.READY


def test_category_membership_changes_re_encode_from_either_side():
    book, other = make_book("R3", "one"), make_book("R4", "two")
    fiction, history = genre_path("Fiction"), genre_path("History")
    settle(Book)
    book.genres.add(fiction)
    assert pending(Book) == [book.pk]
    settle(Book)
    book.genres.remove(fiction)
    assert pending(Book) == [book.pk]
    book.genres.add(fiction, history)
    settle(Book)
    book.genres.clear()
    assert pending(Book) == [book.pk]

    # From the category's side (the reverse relation).
    settle(Book)
    fiction.books.add(book, other)
    assert pending(Book) == sorted([book.pk, other.pk])
    settle(Book)
    fiction.books.remove(other)
    assert pending(Book) == [other.pk]
    settle(Book)
    fiction.books.clear()
    assert pending(Book) == [book.pk]
    settle(Book)
    history.books.set([other])
    assert pending(Book) == [other.pk]
    settle(Book)
    history.books.clear()
    assert pending(Book) == [other.pk]


def rows_of(item) -> tuple[int, int]:
    content_type = ContentType.objects.get_for_model(item)
    return (
        EncodingState.objects.filter(content_type=content_type, object_id=item.pk).count(),
        Embedding.objects.filter(content_type=content_type, object_id=item.pk).count(),
    )


def test_deleting_an_item_deletes_its_state_and_vectors():
    gone = make_gadget("X1", "gone", image=image_bytes((200, 10, 10)))
    add_photo(gone, image_bytes((10, 200, 10)), rank=1)
    by_queryset = make_gadget("X2", "gone too", image=image_bytes((10, 10, 200)))
    kept = make_gadget("X3", "kept", image=image_bytes())
    encode_objects(GADGET, [gone.pk, by_queryset.pk, kept.pk])
    book = make_book("X4", "gone book", genres=("Fiction",))
    encode_objects(BOOK, [book.pk])
    listing = make_listing("gone listing", image=image_bytes(), section="A/B")
    encode_objects(LISTING, [listing.pk])
    assert {rows_of(item) for item in (gone, by_queryset, kept, book, listing)} == {(1, 1)}

    gone.delete()  # its photos go with it: their signals must not schedule it again
    Gadget.objects.filter(pk=by_queryset.pk).delete()
    book.delete()
    listing.delete()
    assert [rows_of(item) for item in (gone, by_queryset, book, listing)] == [(0, 0)] * 4
    assert rows_of(kept) == (1, 1) and vectors_of(kept) is not None


def test_deleting_a_category_tree_with_its_items_leaves_no_state():
    gadget = make_gadget("X5", "on a doomed shelf", image=image_bytes(), shelf="Doomed > Shelf")
    encode_objects(GADGET, [gadget.pk])
    Gadget.objects.filter(shelf__parent__label="Doomed").delete()
    assert rows_of(gadget) == (0, 0)


def test_the_changed_field_selects_recent_edits(gadgets):
    old, new = make_gadget("C1", "old"), make_gadget("C2", "new")
    Gadget.objects.filter(pk=old.pk).update(changed=timezone.now() - datetime.timedelta(days=3))
    since = timezone.now() - datetime.timedelta(days=1)
    assert pks(gadgets.filter_changed_since(Gadget.objects.all(), since)) == [new.pk]
    with pytest.raises(ValueError, match="records no change time"):
        get_adapter(LISTING).filter_changed_since(Listing.objects.all(), since)
