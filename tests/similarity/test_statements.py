"""Compiled similar-items statements on the test app's host shapes: the app's default
serializer, photos and many-to-many categories prefetched, variants by a value or by a parent
item, no variants at all. Each body equals the ORM's way's."""
from __future__ import annotations

from unittest import mock

import pytest

from similarity.api import mixins
from similarity.indexing.writer import encode_objects
from similarity.tasks import encode_task
from tests.factories import BOOK, GADGET, LISTING, image_bytes, make_book, make_gadget, make_listing

pytestmark = pytest.mark.django_db

RED, BLUE = (220, 30, 30), (30, 30, 220)


@pytest.fixture
def catalog():
    with mock.patch.object(encode_task, "apply_async"):
        gadgets = [
            make_gadget("G1", "red phone pro", image=image_bytes(RED), shelf="Tech > Phones", family="phone"),
            make_gadget("G2", "red phone mini", image=image_bytes(RED), shelf="Tech > Phones", family="phone"),
            make_gadget("G3", "red phone max", image=image_bytes(RED), shelf="Tech > Phones"),
            make_gadget("G4", "blue tablet", image=image_bytes(BLUE), shelf="Tech > Tablets", family="tab"),
            make_gadget("G5", "blue tablet old", image=image_bytes(BLUE), listed=False),
        ]
        first = make_book("B1", "the red river", genres=("Fiction > Rivers", "Travel"))
        books = [
            first,
            make_book("B2", "the red river second edition", genres=("Fiction > Rivers",), edition_of=first),
            make_book("B3", "the blue sea", genres=("Fiction > Seas",)),
            make_book("B4", "red rivers of the north", genres=("Travel",)),
        ]
        listings = [make_listing(f"red lamp {i}", image=image_bytes(RED), section="Home/Lamps") for i in range(4)]
        encode_objects(GADGET, [g.pk for g in gadgets])
        encode_objects(BOOK, [b.pk for b in books])
        encode_objects(LISTING, [listing.pk for listing in listings])
    return {"gadgets": gadgets, "books": books, "listings": listings}


@pytest.mark.parametrize("params", [{"k": 3}, {"k": 10, "include_variants": "true"}, {"k": 2, "mode": "image"}])
def test_host_shapes_write_what_the_orm_writes(client, catalog, params):
    for route, items in catalog.items():
        for item in items:
            url = f"/api/{route}/{item.pk}/similar/"
            with mock.patch.object(mixins._ResultsMixin, "reuse_statements", False):
                expected = client.get(url, params)
            with mock.patch.object(mixins, "similar_to", side_effect=AssertionError("the ORM's way ran")):
                response = client.get(url, params)
            assert response.status_code == expected.status_code == 200, response.content
            assert response.json() == expected.json()


def test_variants_by_value_and_by_parent_are_left_out(client, catalog):
    g1, g2 = catalog["gadgets"][:2]
    ids = [r["item"]["id"] for r in client.get(f"/api/gadgets/{g1.pk}/similar/", {"k": 10}).json()["results"]]
    assert g2.pk not in ids and catalog["gadgets"][2].pk in ids
    b1, b2 = catalog["books"][:2]
    for book, edition in ((b1, b2), (b2, b1)):
        ids = [r["item"]["id"] for r in client.get(f"/api/books/{book.pk}/similar/", {"k": 10}).json()["results"]]
        assert edition.pk not in ids and catalog["books"][3].pk in ids
