"""The write path: vectors, status, hash skip and bad inputs (fake encoders, real database)."""
from __future__ import annotations

import numpy as np
import pytest
from similarity.indexing.writer import encode_objects
from similarity.models import EmbeddingStatus, Modalities, state_of
from tests.factories import GADGET, LISTING, add_photo, image_bytes, make_gadget, make_listing, vectors_of
from tests.testapp.models import Gadget

pytestmark = pytest.mark.django_db


def encode(*items, force=False):
    return encode_objects(items[0]._meta.label, [item.pk for item in items], force=force)


def test_vectors_and_status_are_written():
    p = make_gadget("A1", "红色 连衣裙 夏季", image=image_bytes((220, 20, 20)), shelf="服装 > 女装")
    report = encode(p)
    p.refresh_from_db()
    assert report.encoded == [p.pk]
    assert state_of(p).status == EmbeddingStatus.READY
    assert state_of(p).modalities == Modalities.IMAGE_TEXT
    vectors = vectors_of(p)
    assert len(vectors.image) == 1280 and len(vectors.text) == 512 and vectors.learned is None
    fused = np.asarray(vectors.fused)
    assert fused.shape == (1792,)
    assert np.linalg.norm(fused) == pytest.approx(1.0, abs=1e-4)
    # The weighted concatenation: image part carries sqrt(0.3) of the norm.
    assert np.linalg.norm(fused[:1280]) == pytest.approx(0.3**0.5, abs=1e-4)
    assert vectors.space.spec["image_encoder"].endswith("ColorHistogramImageEncoder")
    assert vectors.content_hash == state_of(p).content_hash
    assert len(state_of(p).content_hash) == 64 and state_of(p).encoded_at is not None and state_of(p).error == ""


def test_unchanged_content_is_skipped_and_changed_content_re_encoded():
    p = make_gadget("A2", "iPhone 15 Pro 256G 手机", image=image_bytes())
    encode(p)
    p.refresh_from_db()
    first_hash, first_time = state_of(p).content_hash, state_of(p).encoded_at
    assert encode(p).skipped == [p.pk]
    p.refresh_from_db()
    assert state_of(p).encoded_at == first_time

    Gadget.objects.filter(pk=p.pk).update(name="iPhone 15 Pro 512G 手机")
    assert encode(p).encoded == [p.pk]
    p.refresh_from_db()
    assert state_of(p).content_hash != first_hash


def test_force_re_encodes_unchanged_rows():
    p = make_gadget("A3", "牛奶 1L", image=image_bytes())
    encode(p)
    assert encode(p, force=True).encoded == [p.pk]


def test_an_item_without_image_is_text_only_and_says_so():
    p = make_gadget("T1", "纯文本商品 no photo")
    encode(p)
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.READY
    assert state_of(p).modalities == Modalities.TEXT
    assert vectors_of(p).image is None
    fused = np.asarray(vectors_of(p).fused)
    assert not fused[:1280].any() and np.linalg.norm(fused) == pytest.approx(1.0, abs=1e-4)


BAD_IMAGES = {
    "zero bytes": (b"", "empty"),
    "not an image": (b"<html>definitely not a photo</html>", "not an image"),
    "truncated": (image_bytes(size=(300, 300), fmt="JPEG")[:400], "truncated or corrupt"),
    "corrupt": (b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50, "image"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_fails_with_readable_error_and_the_item_stays_saved(name):
    data, reason = BAD_IMAGES[name]
    good = make_gadget("G1", "good one", image=image_bytes())
    bad = Gadget.objects.create(code="B1", name="bad image gadget")
    add_photo(bad, data, name="bad.jpg")

    report = encode(good, bad)
    bad.refresh_from_db()
    good.refresh_from_db()
    assert report.encoded == [good.pk]
    assert state_of(bad).status == EmbeddingStatus.FAILED
    assert reason in state_of(bad).error and state_of(bad).error.startswith("image:")
    assert state_of(good).status == EmbeddingStatus.READY
    assert Gadget.objects.filter(code="B1").exists()


def test_missing_image_file_fails_with_its_name():
    p = make_gadget("M1", "photo deleted from disk", image=image_bytes())
    p.photos.get().picture.storage.delete(p.photos.get().picture.name)
    encode(p)
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.FAILED
    assert "missing from storage" in state_of(p).error


def test_nothing_to_encode_fails():
    p = Gadget.objects.create(code="E1", name="   ")
    encode(p)
    p.refresh_from_db()
    assert state_of(p).status == EmbeddingStatus.FAILED
    assert "no image and no text" in state_of(p).error


def test_missing_rows_are_reported_not_fatal():
    p = make_gadget("X1", "exists", image=image_bytes())
    report = encode_objects(GADGET, [p.pk, 999_999])
    assert report.encoded == [p.pk] and report.missing == [999_999]


def test_a_photo_on_the_row_is_encoded_and_a_bad_one_fails_alone():
    with_photo = make_listing("红色 杯子", image=image_bytes((220, 20, 20)), section="Home/Kitchen")
    broken = make_listing("broken photo", image=b"<html>definitely not a photo</html>")
    without = make_listing("no photo at all")
    report = encode_objects(LISTING, [with_photo.pk, broken.pk, without.pk])
    assert sorted(report.encoded) == sorted([with_photo.pk, without.pk])
    assert (state_of(with_photo).status, state_of(with_photo).modalities) == (EmbeddingStatus.READY, Modalities.IMAGE_TEXT)
    assert len(vectors_of(with_photo).image) == 1280
    assert state_of(broken).status == EmbeddingStatus.FAILED and state_of(broken).error.startswith("image:")
    assert state_of(without).modalities == Modalities.TEXT and vectors_of(without).image is None
