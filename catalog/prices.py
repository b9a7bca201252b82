"""Read a price cell from a shop's export: digits, commas only between thousands, a point
before the decimals.

Used by the importer. "7,99" is refused rather than guessed: read as thousands it would be
stored as 799.00, read as decimals it might be right; only the shop knows.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal

PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)?")
GROUPED = re.compile(r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?")
CENT = Decimal("0.01")
# Product.price is max_digits=12, decimal_places=2: ten digits before the point.
LIMIT = Decimal("1e10")


class PriceRejected(ValueError):
    """The cell is not a price this importer reads; the message says how to write it."""


def parse_price(raw: str) -> Decimal | None:
    """Return the price rounded half up to cents, None for an empty cell.

    Full-width digits and punctuation (７，９９９．００) are read as their ASCII forms.
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        return None
    if not (PLAIN.fullmatch(text) or GROUPED.fullmatch(text)):
        if "," in text:
            raise PriceRejected(
                f"bad price {raw!r}: a comma may only separate thousands (7,999.00); "
                "write decimals with a point (7.99)"
            )
        raise PriceRejected(f"bad price {raw!r}: expected a non-negative number such as 19.99 or 7,999.00")
    value = Decimal(text.replace(",", ""))
    if value < LIMIT:  # quantize fails beyond 28 digits: compare first
        value = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if value >= LIMIT:
        raise PriceRejected(f"bad price {raw!r}: prices must be below 10,000,000,000")
    return value
