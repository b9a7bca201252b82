"""A listing as matching sees it: the product data a shop stores, nothing derived.

Pure Python, any process. Everything the pair features read comes from these four fields,
the stored vectors and catalog statistics, so the web process can score a pair from rows it
already has.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["Listing", "parse_price"]

TEXT_CHARS = 300  # each field cut as the adapter cuts it (``ItemAdapter.text_chars``)
_PRICE_RE = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Listing:
    """One product offer: its title, description, brand (manufacturer) and price.

    ``price`` is None when unknown; an empty brand means "not given" (features then use the
    first title word).
    """

    title: str
    description: str = ""
    brand: str = ""
    price: float | None = None

    def text(self, chars: int = TEXT_CHARS) -> str:
        """The text the dense vector reads: title, brand, description, each cut to ``chars``."""
        parts = [self.title, self.brand, self.description]
        return "\n".join(p[:chars] for p in parts if p and p.strip())


def parse_price(value: object) -> float | None:
    """Return a positive price from ``value`` ("$1,299.00", 12.5, "") or None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        found = _PRICE_RE.search(str(value).replace(",", ""))
        if not found:
            return None
        number = float(found.group())
    return number if math.isfinite(number) and number > 0 else None
