"""Read a catalog CSV: its encoding checked before anything is imported, its header, then
its records with line numbers.

Used by the importer, in the process that imports. A file that does not decode is refused
as a whole, naming the first bad line and the encoding it more likely is; a line the csv
module cannot parse is one bad record, and reading goes on with the next line.
"""
from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENCODING = "utf-8-sig"
# Tried in this order on the lines that did not decode: UTF-8, then Simplified Chinese
# (GB18030 also reads GBK and GB2312), Traditional Chinese, Japanese, and last Windows-1252,
# which reads almost any bytes.
LIKELY_ENCODINGS = ("utf-8-sig", "gb18030", "big5", "shift_jis", "cp1252")
GUESS_SAMPLE_BYTES = 1024 * 1024
# The csv module's limit per field (131,072 by default) is raised so that a long field is
# read whole and refused by the importer with its row; past the limit, the csv module stops
# mid-field and the rest of a quoted field would be read as rows of its own.
CSV_FIELD_LIMIT = 16 * 1024 * 1024


class CsvFileError(ValueError):
    """The file cannot be imported at all; the message says what to do."""


@dataclass(frozen=True)
class Record:
    """One CSV record: its line number and values, or why it could not be parsed."""

    line: int
    values: dict[str, str]
    error: str = ""


def check_encoding(path: Path, encoding: str) -> None:
    """Decode the whole file; raise CsvFileError naming the first bad line and a likely encoding."""
    decoder = _decoder(encoding)
    line, start, end = 0, 0, 0
    with path.open("rb") as handle:
        try:
            for line, raw in enumerate(handle, 1):
                start, end = end, end + len(raw)
                decoder.decode(raw)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            handle.seek(start)
            likely = guess_encoding(handle.read(GUESS_SAMPLE_BYTES), tried=encoding)
            advice = (
                f"it looks like {likely}: rerun with --encoding {likely}"
                if likely
                else "save it as UTF-8, or pass --encoding with the encoding it was saved in"
            )
            raise CsvFileError(f"{path.name}: line {max(line, 1)} is not valid {encoding} ({exc.reason}); {advice}") from None


def guess_encoding(sample: bytes, *, tried: str = "") -> str | None:
    """Return the first of LIKELY_ENCODINGS, other than ``tried``, that decodes ``sample``
    (which may end mid-character)."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # "Unicode text" from Excel
        return "utf-16"
    for encoding in LIKELY_ENCODINGS:
        if tried and _codec_name(encoding) == _codec_name(tried):
            continue
        try:
            codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def count_rows(path: Path, encoding: str = DEFAULT_ENCODING) -> int:
    """Count data records (for the progress bar); undecodable bytes are counted, not refused."""
    _decoder(encoding)
    count = 0
    with path.open(newline="", encoding=encoding, errors="replace") as handle, _field_limit(CSV_FIELD_LIMIT):
        reader = csv.reader(handle)
        while True:
            try:
                next(reader)
            except StopIteration:
                break
            except csv.Error:
                pass
            count += 1
    return max(0, count - 1)


def read_records(
    path: Path, *, columns: tuple[str, ...], required: tuple[str, ...], encoding: str = DEFAULT_ENCODING
) -> tuple[list[str], Iterator[Record]]:
    """Check the encoding and that the header has the ``required`` columns; return the header
    and an iterator of records."""
    check_encoding(path, encoding)
    handle = path.open(newline="", encoding=encoding)
    reader = csv.DictReader(handle)
    try:
        with _field_limit(CSV_FIELD_LIMIT):
            header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        handle.close()
        raise CsvFileError(f"{path.name}: the header line cannot be read ({exc}); fix the first line of the file") from None
    missing = [c for c in required if c not in header]
    if missing:
        handle.close()
        raise CsvFileError(f"{path.name}: missing required column(s) {', '.join(missing)}; expected header {','.join(columns)}")
    reader.fieldnames = header

    def records() -> Iterator[Record]:
        with handle, _field_limit(CSV_FIELD_LIMIT):
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    # The csv module counts a line once it is parsed: the bad one is the next.
                    yield Record(reader.line_num + 1, {}, f"the line cannot be read as CSV ({exc}); fix it in the file")
                    continue
                yield Record(reader.line_num, {k: (v or "").strip() for k, v in row.items() if k})

    return header, records()


def _decoder(encoding: str) -> codecs.IncrementalDecoder:
    try:
        return codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise CsvFileError(f"unknown encoding {encoding!r}; use e.g. utf-8-sig, gb18030, big5 or shift_jis") from None


def _codec_name(encoding: str) -> str:
    return codecs.lookup(encoding).name.removesuffix("-sig")


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)
