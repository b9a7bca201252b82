"""Ditto-format pairs: parsing, malformed lines, record keys, listings. Pure Python, no database."""
from __future__ import annotations

import pytest

from similarity.ml.matching.pairs import (
    distinct_records, parse_line, parse_record, read_pairs, record_key, to_listing,
)

LEFT = "COL name VAL Apple iPhone15 128G 黑色 手机 COL description VAL 全新 国行 COL price VAL 5999.0 "
RIGHT = "COL name VAL 苹果 iphone 15 128g 黑 COL description VAL  COL price VAL  "
OTHER = "COL title VAL iPhone15 Pro 256G COL manufacturer VAL apple COL price VAL 8999"


def test_parse_line_reads_both_records_and_the_label():
    pair = parse_line(f"{LEFT}\t{RIGHT}\t1\n")
    assert pair.left == {"name": "Apple iPhone15 128G 黑色 手机", "description": "全新 国行", "price": "5999.0"}
    assert pair.right == {"name": "苹果 iphone 15 128g 黑", "description": "", "price": ""}
    assert pair.label == 1


def test_values_may_hold_the_words_col_and_val():
    record = parse_record("COL name VAL col de la VAL d'isere COL price VAL 10")
    assert record == {"name": "col de la VAL d'isere", "price": "10"}


def test_unlabelled_lines():
    assert parse_line(f"{LEFT}\t{OTHER}", labelled=False).label is None


@pytest.mark.parametrize(
    "line, message",
    [
        (f"{LEFT}\t{RIGHT}", "expected 3 tab-separated fields"),
        (f"{LEFT}\t{RIGHT}\t2", "label must be 0 or 1"),
        (f"name VAL x\t{RIGHT}\t0", "must start with 'COL <attr> VAL'"),
        (f"COL name VAL a COL name VAL b\t{RIGHT}\t0", "appears twice"),
    ],
)
def test_malformed_lines_raise(line, message):
    with pytest.raises(ValueError, match=message):
        parse_line(line)


def test_read_pairs_names_the_line_of_a_malformed_pair(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(f"{LEFT}\t{RIGHT}\t1\n\n{LEFT}\t{OTHER}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train.txt, line 3: expected 3"):
        read_pairs(path)


def test_read_pairs_skips_blank_lines(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text(f"{LEFT}\t{RIGHT}\t1\n\n{LEFT}\t{OTHER}\t0\n", encoding="utf-8")
    assert [p.label for p in read_pairs(path)] == [1, 0]


def test_record_keys_are_stable_and_ignore_spacing_and_order():
    a = parse_record(LEFT)
    b = parse_record("COL price VAL 5999.0 COL name VAL Apple  iPhone15 128G 黑色 手机 COL description VAL 全新 国行")
    assert record_key(a) == record_key(b)
    assert record_key(a) != record_key(parse_record(RIGHT))
    assert len(record_key(a)) == 40


def test_distinct_records_keep_first_seen_order():
    pairs = [parse_line(f"{LEFT}\t{RIGHT}\t1"), parse_line(f"{LEFT}\t{OTHER}\t0")]
    records = distinct_records(pairs)
    assert list(records.values()) == [parse_record(LEFT), parse_record(RIGHT), parse_record(OTHER)]


def test_to_listing_maps_either_schema():
    left = to_listing(parse_record(LEFT))
    assert (left.title, left.description, left.brand, left.price) == ("Apple iPhone15 128G 黑色 手机", "全新 国行", "", 5999.0)
    other = to_listing(parse_record(OTHER))
    assert (other.title, other.brand, other.price) == ("iPhone15 Pro 256G", "apple", 8999.0)
    assert to_listing(parse_record(RIGHT)).price is None
