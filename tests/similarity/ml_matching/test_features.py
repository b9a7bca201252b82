"""Pair features on hand-made listings (Chinese and English titles). Pure numpy, no database."""
from __future__ import annotations

import numpy as np
import pytest

from similarity.ml.matching.features import (
    FEATURES, CatalogStats, brand_of, model_numbers, neighbour_ranks, pair_features, prepare_listings, quantities,
)
from similarity.ml.matching.listing import Listing

PHONE = Listing("Apple iPhone15 128G 黑色 手机", price=5999.0)
SAME_PHONE = Listing("苹果 iphone 15 128g 黑", price=5899.0)
PRO_PHONE = Listing("iPhone15 Pro 256G", brand="Apple", price=8999.0)
DISHWASHER = Listing("lg 24 ' lds4821ww semi integrated built in white dishwasher", description="xl tall tub")
SAME_DISHWASHER = Listing("LG LDS-4821WW dishwasher", price=599.0)
OTHER_DISHWASHER = Listing("lg ldf6920bb fully integrated dishwasher")
DENON = Listing("denon dvd-2930ci dvd player", description="the dvd2930ci plays sacd")
DENON_BUY = Listing("Denon universal player", description="model DVD2930CI, black")
LISTINGS = [PHONE, SAME_PHONE, PRO_PHONE, DISHWASHER, SAME_DISHWASHER, OTHER_DISHWASHER, DENON, DENON_BUY]


@pytest.fixture(scope="module")
def prepared():
    return prepare_listings(LISTINGS, CatalogStats.from_listings(LISTINGS))


def features_of(prepared, i: int, j: int) -> dict[str, float]:
    row = pair_features(prepared, [i], [j])[0]
    return dict(zip(FEATURES, row.tolist()))


def test_model_numbers_and_quantities():
    assert model_numbers("苹果 iphone 15 128g 黑") == {"iphone15"}
    assert model_numbers("lg 24 ' lds4821ww dishwasher") == {"lds4821ww"}  # not "lg24": 24 is inches
    assert model_numbers("denon dvd-2930ci") == {"dvd2930ci", "2930ci"}
    assert model_numbers("canon eos 40d 10.1mp") == frozenset()  # too short, and a quantity
    assert quantities("Apple iPhone15 128G 黑色") == {"gb": {"128"}}
    assert quantities("sony 46\" lcd, 65 英寸, 64 GB") == {"in": {"46", "65"}, "gb": {"64"}}


def test_brands_use_the_field_the_title_and_aliases():
    assert brand_of(SAME_PHONE) == ("apple", False)  # 苹果 -> apple
    assert brand_of(PRO_PHONE) == ("apple", True)
    assert brand_of(DISHWASHER) == ("lg", False)


def test_same_phone_in_two_languages(prepared):
    f = features_of(prepared, 0, 1)
    assert f["model_match"] == 1.0 and f["model_conflict"] == 0.0 and f["model_missing"] == 0.0
    assert f["unit_match"] == 1.0 and f["unit_conflict"] == 0.0
    assert f["brand_match"] == 1.0 and f["brand_conflict"] == 0.0
    assert f["price_missing"] == 0.0
    assert f["price_log_ratio"] == pytest.approx(abs(np.log(5999 / 5899)), rel=1e-5)


def test_pro_variant_conflicts_on_storage(prepared):
    f = features_of(prepared, 0, 2)
    assert f["model_match"] == 1.0  # both are iPhone 15 ...
    assert f["unit_conflict"] == 1.0 and f["unit_match"] == 0.0  # ... with 128 GB vs 256 GB
    assert f["brand_match"] == 1.0


def test_model_numbers_compare_without_hyphens(prepared):
    same = features_of(prepared, 3, 4)
    assert same["model_match"] == 1.0 and same["model_conflict"] == 0.0
    other = features_of(prepared, 3, 5)
    assert other["model_match"] == 0.0 and other["model_conflict"] == 1.0
    assert 0.0 < other["model_similarity"] < 0.5


def test_a_model_number_inside_the_other_text(prepared):
    f = features_of(prepared, 6, 7)
    assert f["model_in_text"] == 1.0  # dvd2930ci appears in the Buy listing's description
    assert f["model_missing"] == 1.0 and f["model_conflict"] == 0.0  # its title has no code


def test_missing_vectors_and_prices_have_indicators(prepared):
    f = features_of(prepared, 3, 5)
    assert f["text_missing"] == 1.0 and f["text_cosine"] == 0.0
    assert f["image_missing"] == 1.0 and f["price_missing"] == 1.0 and f["price_log_ratio"] == 0.0


def test_overlap_features_are_bounded_and_symmetric(prepared):
    rows = pair_features(prepared, np.arange(8), np.arange(8)[::-1])
    flipped = pair_features(prepared, np.arange(8)[::-1], np.arange(8))
    assert rows.shape == (8, len(FEATURES)) and rows.dtype == np.float32
    assert np.allclose(rows, flipped[::-1], atol=1e-6)
    assert rows.min() >= 0.0 and rows.max() <= 3.0
    identical = features_of(prepared, 0, 0)
    assert identical["title_jaccard"] == 1.0 and identical["title_char_cosine"] == pytest.approx(1.0)
    assert identical["unmatched_idf_max"] == 0.0


def test_vectors_give_cosines_and_ranks():
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 0]], np.float32)
    listings = [Listing("a"), Listing("b"), Listing("c"), Listing("d")]
    prepared = prepare_listings(listings, CatalogStats.from_listings(listings), text_vectors=vectors)
    ranks = neighbour_ranks(vectors, [0, 0, 0], [1, 2, 3])
    assert ranks[0].tolist() == [1, 2, 0] and ranks[1].tolist() == [1, 2, 0]  # c is closer to b than to a
    rows = pair_features(prepared, [0, 0, 0], [1, 2, 3], ranks=ranks)
    col = FEATURES.index
    assert rows[0, col("text_cosine")] == pytest.approx(0.9 / np.hypot(0.9, 0.1), rel=1e-5)
    assert rows[:, col("text_missing")].tolist() == [0.0, 0.0, 1.0]
    assert rows[:, col("rank_ab")].tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError, match="one row per listing"):
        prepare_listings(listings, CatalogStats.from_listings(listings), text_vectors=vectors[:2])


def test_editions_platforms_and_versions_tell_a_product_line_apart():
    from similarity.ml.matching.features import editions, platforms

    assert editions("Microsoft Office 2007 Professional") == {"professional"}
    assert editions("Office 2007 专业版 升级版") == {"pro", "upgrade"}
    assert platforms("Adobe Photoshop CS3 for Mac") == {"mac"} and platforms("Windows XP Home") == {"win"}
    pairs = [
        ("Office 2007 Professional", "Office 2007 Standard"),
        ("Apple iPhone15 128G", "Apple iPhone15 Pro 128G"),
        ("Photoshop CS3 Mac", "Photoshop CS3 Windows"),
        ("Norton Antivirus 2007", "Norton Antivirus 2008"),
        ("Office 2007 Professional", "Microsoft Office Professional 2007"),
    ]
    listings = [Listing(title) for pair in pairs for title in pair]
    prepared = prepare_listings(listings, CatalogStats.from_listings(listings))
    rows = pair_features(prepared, list(range(0, len(listings), 2)), list(range(1, len(listings), 2)))
    col = {name: FEATURES.index(name) for name in (
        "edition_conflict", "edition_one_sided", "edition_distance", "platform_conflict", "number_mismatch")}
    assert rows[0, col["edition_conflict"]] == 1 and rows[0, col["edition_distance"]] == 1
    assert rows[1, col["edition_one_sided"]] == 1 and rows[1, col["edition_conflict"]] == 0
    assert rows[2, col["platform_conflict"]] == 1
    assert rows[3, col["number_mismatch"]] == 1
    assert rows[4, [col[n] for n in col]].tolist() == [0, 0, 0, 0, 0]  # the same product, words reordered
