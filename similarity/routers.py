"""Read replicas: which database the READ path reads (web process).

``SIMILARITY["READ_DATABASES"]`` names database aliases, PostgreSQL streaming replicas of the
primary, that similar items, searches, recommendations, same-product and category-suggestion
reads may use. Writes (the encoding worker, decisions, the admin) and every read outside a
``reading()`` block use the primary, so the worker and the sweeper never read a lagging copy.

A read picks one replica at random and keeps it for the whole block (``reading()``; the app's
API views open one per read request), so every statement of a request reads one database. A
replica that refuses a connection is left out for ``RETRY_AFTER`` seconds and the read goes to
another one, or to the primary: the shopper gets an answer, not a 500.

One statement never mixes databases: the neighbour scan joins the host's table with the app's
vectors, so the host's queryset itself is moved with ``.using(alias)`` (``for_reading``), and
the scan settings follow every connection (``similarity.search.scan`` runs on each alias's
``connection_created``). ``SimilarityRouter`` (optional, in ``DATABASE_ROUTERS``) sends the
app's own lookups beside the scan (a stored BM25 vector, document frequencies, history
vectors) to the same replica; without it they read the primary.
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import OperationalError, connections, router

from similarity.conf import similarity_settings

logger = logging.getLogger(__name__)

#: Seconds a read database that refused a connection is left out of the choice.
RETRY_AFTER = 30.0

_current: ContextVar[str | None] = ContextVar("similarity_read_database", default=None)
_down_until: dict[str, float] = {}  # alias -> time.monotonic() when it may be tried again


def read_databases() -> list[str]:
    """Return the aliases of ``SIMILARITY["READ_DATABASES"]`` (a single alias may be a string)."""
    value = similarity_settings.READ_DATABASES
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def primary_database() -> str:
    """Return the alias the app writes to: the database every read falls back to."""
    from similarity.models import Embedding

    return router.db_for_write(Embedding)


def choose_read_database() -> str:
    """Return a read database at random that accepts a connection; the primary when none does."""
    now = time.monotonic()
    candidates = [alias for alias in read_databases() if _down_until.get(alias, 0.0) <= now]
    random.shuffle(candidates)
    for alias in candidates:
        if _connects(alias):
            return alias
    return primary_database()


def _connects(alias: str) -> bool:
    connection = connections[alias]
    if connection.in_atomic_block:  # already in use by this thread: it answers
        return True
    try:
        connection.close_if_health_check_failed()  # a persistent connection the replica dropped
        connection.ensure_connection()
    except OperationalError as exc:
        _down_until[alias] = time.monotonic() + RETRY_AFTER
        logger.warning(
            "Read database %r refused a connection (%s); similarity reads leave it out for %.0f s.",
            alias, str(exc).strip(), RETRY_AFTER,
        )
        return False
    return True


@contextmanager
def reading(using: str | None = None) -> Iterator[str]:
    """Send the block's similarity reads to one database and yield its alias.

    ``using`` names it; by default one of ``READ_DATABASES`` is chosen (``choose_read_database``),
    or the primary when none is set or none answers. A block inside another keeps the outer
    block's database.
    """
    current = _current.get()
    if current is not None:
        yield current
        return
    alias = using or (choose_read_database() if read_databases() else primary_database())
    token = _current.set(alias)
    try:
        yield alias
    finally:
        _current.reset(token)


def current_read_database() -> str | None:
    """Return the database of the enclosing ``reading()`` block, None outside one."""
    return _current.get()


def for_reading(queryset: Any) -> Any:
    """Return ``queryset`` on the enclosing ``reading()`` block's database.

    Unchanged outside a block, and when the caller chose a database with ``.using()``.
    """
    alias = _current.get()
    if alias is None or queryset._db is not None:
        return queryset
    return queryset.using(alias)


class SimilarityRouter:
    """Database router: inside ``reading()``, reads of the app's own tables go to the block's
    database, with the neighbour scan; it decides nothing else (writes, migrations, other apps).

    ``DATABASE_ROUTERS = ["similarity.routers.SimilarityRouter", ...]``.
    """

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if model._meta.app_label == "similarity":
            return _current.get()
        return None

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        """Rows read from a replica may relate to rows of the primary: they are copies of them."""
        same = {primary_database(), *read_databases()}
        if obj1._state.db in same and obj2._state.db in same:
            return True
        return None
