"""Category paths as the app reads them: one object cuts, compares and joins them.

Inside the app a category is a *label*: its path from the root, levels joined by " > "
("服装 > 女装 > 连衣裙"). A host's own format (another separator, a tree of rows, several
categories per item) is turned into labels by its adapter (``similarity.adapters``), so the
rest of the app never splits a path by hand. No Django; used by the ML layer too.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Taxonomy:
    """Labels joined by ``separator``; surrounding spaces of each level are not significant."""

    separator: str = " > "

    def split(self, path: str) -> list[str]:
        """``"A >B > "`` -> ``["A", "B"]`` (empty levels dropped)."""
        if not path:
            return []
        token = self.separator.strip() or self.separator
        return [part.strip() for part in path.split(token) if part.strip()]

    def join(self, names: Iterable[str]) -> str:
        """``["A", "B"]`` -> ``"A > B"``."""
        return self.separator.join(name.strip() for name in names if name and name.strip())

    def normalise(self, path: str) -> str:
        """The canonical spelling of ``path``: ``"A>B >  C"`` -> ``"A > B > C"``."""
        return self.join(self.split(path))

    def level(self, path: str) -> int:
        """How many levels ``path`` has (0 for "")."""
        return len(self.split(path))

    def cut(self, path: str, level: int | None) -> str:
        """The first ``level`` levels of ``path``; a shorter path whole; None: all of it."""
        parts = self.split(path)
        return self.join(parts[:level] if level else parts)

    def at_level(self, path: str, level: int) -> str:
        """The first ``level`` levels of ``path``, or "" when it has fewer (a training label)."""
        parts = self.split(path)
        return self.join(parts[:level]) if len(parts) >= level else ""

    def parent(self, path: str) -> str:
        """``"A > B > C"`` -> ``"A > B"``; "" for a top level."""
        return self.join(self.split(path)[:-1])

    def is_within(self, path: str, ancestor: str) -> bool:
        """Whether ``path`` is ``ancestor`` or below it (levels compared, not characters)."""
        inner, outer = self.split(path), self.split(ancestor)
        return bool(outer) and inner[: len(outer)] == outer

    def child(self, parent: str, name: str) -> str:
        """The label of ``name`` under ``parent`` (a top level when ``parent`` is "")."""
        return self.join([*self.split(parent), name])


LABELS = Taxonomy()  # the app's own labels
