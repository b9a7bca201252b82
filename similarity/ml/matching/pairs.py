"""Labelled candidate pairs in the Ditto / Magellan benchmark format, and their records.

Pure Python, any process (the offline benchmark, the Django import of a throw-away catalog).
One pair per line, three tab-separated fields::

    COL name VAL lg 24 ' lds4821ww dishwasher COL price VAL 1999.0 <TAB> COL name VAL ... <TAB> 1

A record is ``COL <attr> VAL <value>`` repeated; an attribute name is one word and a value
runs to the next ``COL <word> VAL``. So a value may contain the words COL and VAL, but not
the three-word sequence "COL word VAL", which the format cannot tell from a new attribute.
"""
from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from similarity.ml.matching.listing import Listing, parse_price

__all__ = [
    "Record", "LabelledPair", "parse_record", "parse_line", "read_pairs", "record_key",
    "distinct_records", "to_listing",
]

Record = dict[str, str]

_FIELD_RE = re.compile(r"(?:^|(?<=\s))COL (\S+) VAL(?=\s|$)")
_SPACES_RE = re.compile(r"\s+")
TITLE_ATTRS = ("name", "title")
BRAND_ATTRS = ("manufacturer", "brand")
DESCRIPTION_ATTRS = ("description",)
PRICE_ATTRS = ("price",)


@dataclass(frozen=True)
class LabelledPair:
    """Two records and whether they are the same product (None: unlabelled)."""

    left: Record
    right: Record
    label: int | None


def parse_record(text: str) -> Record:
    """Return ``{attr: value}`` of one serialised record (values stripped, order kept).

    Raises:
        ValueError: the text does not start with ``COL <attr> VAL`` or repeats an attribute.
    """
    text = text.strip()
    matches = list(_FIELD_RE.finditer(text))
    if not matches or matches[0].start() != 0:
        raise ValueError(f"a record must start with 'COL <attr> VAL', got {text[:40]!r}")
    record: Record = {}
    for match, following in zip(matches, matches[1:] + [None]):
        attr = match.group(1)
        if attr in record:
            raise ValueError(f"attribute {attr!r} appears twice in one record")
        end = following.start() if following else len(text)
        record[attr] = text[match.end():end].strip()
    return record


def parse_line(line: str, *, labelled: bool = True) -> LabelledPair:
    """Parse one line: two records and, when ``labelled``, a label 0 or 1.

    Raises:
        ValueError: wrong number of tab-separated fields, a bad label or a bad record.
    """
    fields = line.rstrip("\r\n").split("\t")
    expected = 3 if labelled else 2
    if len(fields) != expected:
        what = "left record, right record, label 0/1" if labelled else "left record, right record"
        raise ValueError(f"expected {expected} tab-separated fields ({what}), found {len(fields)}")
    label = None
    if labelled:
        if fields[2].strip() not in ("0", "1"):
            raise ValueError(f"the label must be 0 or 1, got {fields[2].strip()!r}")
        label = int(fields[2])
    return LabelledPair(parse_record(fields[0]), parse_record(fields[1]), label)


def read_pairs(path: str | os.PathLike[str], *, labelled: bool = True) -> list[LabelledPair]:
    """Read a split file (blank lines skipped).

    Raises:
        ValueError: a malformed line, naming the file and the 1-based line number.
    """
    with open(path, encoding="utf-8") as handle:
        return list(_parse_lines(handle, os.fspath(path), labelled))


def _parse_lines(lines: Iterable[str], name: str, labelled: bool) -> Iterator[LabelledPair]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield parse_line(line, labelled=labelled)
        except ValueError as exc:
            raise ValueError(f"{name}, line {number}: {exc}; fix or remove that line") from None


def record_key(record: Record) -> str:
    """A stable key of a record: sha1 hex of its attributes and NFKC, space-collapsed values."""
    canonical = "\n".join(
        f"{attr}\t{_SPACES_RE.sub(' ', unicodedata.normalize('NFKC', value)).strip()}"
        for attr, value in sorted(record.items())
    )
    return hashlib.sha1(canonical.encode("utf-8")).hexdigest()


def distinct_records(pairs: Iterable[LabelledPair]) -> dict[str, Record]:
    """Return ``{record_key: record}`` of every record in ``pairs``, in first-seen order."""
    records: dict[str, Record] = {}
    for pair in pairs:
        for record in (pair.left, pair.right):
            records.setdefault(record_key(record), record)
    return records


def to_listing(record: Record) -> Listing:
    """Map a record's attributes onto a ``Listing`` (name/title, description, manufacturer/brand, price)."""

    def first(names: tuple[str, ...]) -> str:
        return next((record[n] for n in names if record.get(n, "").strip()), "")

    return Listing(
        title=first(TITLE_ATTRS), description=first(DESCRIPTION_ATTRS), brand=first(BRAND_ATTRS),
        price=parse_price(first(PRICE_ATTRS)),
    )
