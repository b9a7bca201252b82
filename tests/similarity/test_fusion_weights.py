"""The fixed fusion's weights chosen on the catalog's categorised items, and the space rebuilt
from the stored encoder outputs."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from similarity.indexing.spaces import configured_spec, ensure_configured_space
from similarity.indexing.writer import encode_objects
from similarity.learning.weights import fit_fusion_weights, fitted_weights, fuse_rows
from similarity.ml.fusion.fixed import fuse
from similarity.models import CatalogFit, SpaceState, VectorSpace
from similarity.tasks import encode_task
from tests.factories import GADGET, image_bytes, make_gadget

pytestmark = pytest.mark.django_db
SHELVES = {"数码 > 手机": (30, 30, 200), "食品 > 茶叶": (30, 200, 30), "服装 > 裙子": (200, 30, 30)}
WORDS = "新品 上市 特价 包邮 热卖 正品 促销 爆款 推荐 限时 精选 好货".split()


@pytest.fixture(autouse=True)
def fitting_on(settings):
    """The suite's settings turn fitting off (tests/settings.py); here it is what is tested."""
    settings.SIMILARITY = {**settings.SIMILARITY, "FIT_FUSION_WEIGHTS": True}


def catalog(*, titles_say_what_it_is: bool) -> list:
    rng = np.random.default_rng(5)
    made = []
    with mock.patch.object(encode_task, "apply_async"):
        for n, (shelf, colour) in enumerate(SHELVES.items()):
            for i in range(12):
                if titles_say_what_it_is:  # the title names the shelf; the photo is any colour
                    title, photo = f"{shelf.split(' > ')[1]} {shelf.split(' > ')[1]} 款{i}", tuple(int(c) for c in rng.integers(0, 255, 3))
                else:  # shop-floor titles: the same words everywhere; the photo tells
                    title, photo = " ".join(rng.choice(WORDS, size=3, replace=False)), colour
                made.append(make_gadget(f"W{n}-{i}", title, shelf=shelf, image=image_bytes(photo)))
        encode_objects(GADGET, [g.pk for g in made])
    return made


def test_uninformative_titles_give_the_photo_the_weight_and_the_space_is_rebuilt_without_encoders(sent):
    made = catalog(titles_say_what_it_is=False)
    old = VectorSpace.active_for(GADGET)
    report = fit_fusion_weights(GADGET)
    scores = {float(k): v for k, v in report["p@10_by_image_share"].items()}
    assert report["in_use"] == 0.3 and report["image_weight"] == max(scores, key=scores.get) >= 0.7
    assert scores[report["image_weight"]] >= report["in_use_p@10"] + 0.01
    assert fitted_weights(GADGET) == (report["image_weight"], report["text_weight"])
    assert configured_spec(GADGET)["image_weight"] == report["image_weight"]

    space = ensure_configured_space(GADGET)
    assert space.state == SpaceState.BUILDING and space.key != old.key
    with mock.patch("similarity.indexing.encoding.decode_image", side_effect=AssertionError("photo decoded again")):
        encode_objects(GADGET, [g.pk for g in made])
    assert VectorSpace.active_for(GADGET) == space
    row = space.embeddings.get(object_id=made[0].pk)
    expected = fuse(np.asarray(row.image), np.asarray(row.text), image_dim=len(row.image), text_dim=len(row.text),
                    image_weight=report["image_weight"], text_weight=report["text_weight"])
    np.testing.assert_allclose(row.fused, expected, atol=1e-6)


def test_informative_titles_keep_the_text_weight_and_nothing_is_rebuilt(sent):
    catalog(titles_say_what_it_is=True)
    old = VectorSpace.active_for(GADGET)
    report = fit_fusion_weights(GADGET)
    assert report["image_weight"] <= 0.3  # the text tells; at most as much photo as before
    if report["image_weight"] == report["in_use"]:
        assert ensure_configured_space(GADGET) == old  # the same configuration: nothing to build


def test_fitting_is_off_by_setting_and_needs_categorised_items(settings):
    with mock.patch.object(encode_task, "apply_async"):
        few = [make_gadget(f"F{i}", f"杯子 {i}", shelf="家居 > 杯子", image=image_bytes((9, 9, 9))) for i in range(5)]
        encode_objects(GADGET, [g.pk for g in few])
    assert fit_fusion_weights(GADGET) is None  # 5 categorised items: nothing to choose on
    assert fitted_weights(GADGET) is None
    CatalogFit.objects.create(model_label=GADGET, image_weight=0.85, text_weight=0.15)
    assert fitted_weights(GADGET) == (0.85, 0.15) and configured_spec(GADGET)["image_weight"] == 0.85
    settings.SIMILARITY = {**settings.SIMILARITY, "FIT_FUSION_WEIGHTS": False}
    assert fitted_weights(GADGET) is None and configured_spec(GADGET)["image_weight"] == 0.3


def test_fuse_rows_is_fuse_row_by_row():
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(3, 4)), rng.normal(size=(3, 5))
    has_image, has_text = np.array([True, False, True]), np.array([True, True, False])
    rows = fuse_rows(image, has_image, text, has_text, 0.7)
    for i in range(3):
        expected = fuse(image[i] if has_image[i] else None, text[i] if has_text[i] else None,
                        image_dim=4, text_dim=5, image_weight=0.7, text_weight=0.3)
        np.testing.assert_allclose(rows[i], expected, atol=1e-6)
