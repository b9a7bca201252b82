"""Statements compiled once per shape and run again with other values (web process).

The similar-items request runs the same two statements every time (the item, then the
neighbour scan) with other values of a few parameters: the item's key, its variant group.
Building and compiling those querysets with the ORM took most of the request's Python time,
so a view compiles each shape once per thread (``compiled``), from a queryset built with
placeholder values (``KEY_SLOT``...), and later requests run the same SQL with their own
values (``CompiledQuery.fetch``). Rows become model instances the way the ORM's own iterable
makes them: the model's fields, ``select_related`` objects, annotations and the database's
converters, then the queryset's ``prefetch_related`` lookups.

The caller owns the cache key: it must name everything the SQL depends on besides the slots
(the view, the database, the vector space, ``k``...). Compiled statements are forgotten when
a setting changes.

Prepared (``SIMILARITY['PREPARE_STATEMENTS']``, on by default where the app's connections are
its own sessions): every value but the slots is written into the SQL as a literal, and the
statement is prepared once per database connection (psycopg 3, parameters bound by the
server). PostgreSQL then plans it once instead of on every request. The literals matter: the
vector space's HNSW indexes are partial (``WHERE space_id = <pk>``), and a plan made for a
*parameter* there could not use them (it would read every vector); with the space's key
written in, the generic plan is the one each request got before, the item's key its only
parameter.
"""
from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.core.signals import setting_changed
from django.db import connections, models
from django.db.models import prefetch_related_objects
from django.db.models.query import ModelIterable, get_related_populators

from similarity.conf import similarity_settings

#: Placeholders a template queryset is built with. Negative and near the bottom of a 32-bit
#: integer (a database never hands out such a key), so that no constant of a statement is
#: mistaken for one; each slot of a statement needs its own placeholder.
KEY_SLOT = -2_147_480_047
INTEGER_SLOT = -2_147_480_053
TEXT_SLOT = "\x1esimilarity-slot\x1e"

#: Shapes kept per thread (each is a few kilobytes: the SQL and its compiler); a filtered
#: shape is one per combination of filter values.
CACHE_SIZE = 1024

#: What Django writes into SQL for a parameter, and for a percent sign.
_PLACEHOLDERS = re.compile(r"(%s|%%)")
#: psycopg's ``prepare_threshold`` while a compiled statement runs on a connection where
#: automatic preparation is off (Django's default): never reached, so only the statements
#: this module asks for are prepared.
_EXPLICIT_ONLY = 2**31 - 1


class NotCompilable(Exception):
    """The queryset cannot run as a compiled statement: the ORM answers instead."""


class CompiledQuery:
    """A model queryset compiled once; ``fetch`` runs it with other values of its slots."""

    def __init__(self, queryset: models.QuerySet, slots: dict[str, Any]) -> None:
        """Compile ``queryset``, built with the placeholder ``slots[name]`` for each slot.

        Where ``preparing(queryset.db)``, every other value is written into the SQL and the
        statement is prepared on its first run (``prepared``; not where a value has no
        literal form: the statement then runs with all its parameters, as the ORM runs it).

        Raises:
            NotCompilable: not a plain model queryset, SQL without a placeholder (or with one
                that the ORM rewrote), or a statement the ORM would not run (an empty ``IN``).
        """
        query = queryset.query
        if queryset._iterable_class is not ModelIterable or queryset._known_related_objects or query.combinator:
            raise NotCompilable("only plain model querysets are compiled")
        self.using = queryset.db
        compiler = query.get_compiler(using=self.using)
        try:
            sql, params = compiler.as_sql()
        except (EmptyResultSet, FullResultSet) as exc:
            raise NotCompilable(f"the ORM does not run this queryset as one statement ({exc!r})") from None
        self.sql, self.params = sql, list(params)
        self.slots = {
            name: [i for i, param in enumerate(self.params) if type(param) is type(value) and param == value]
            for name, value in slots.items()
        }
        missing = [name for name, positions in self.slots.items() if not positions]
        if missing:
            raise NotCompilable(f"no parameter holds the placeholder of {missing}")
        self.prepared = False
        if preparing(self.using):
            kept = {i for positions in self.slots.values() for i in positions}
            inlined = inline_constants(self.sql, self.params, kept, connections[self.using])
            if inlined is not None:
                self.sql, order = inlined
                self.params = [self.params[i] for i in order]
                self.slots = {name: [order.index(i) for i in positions] for name, positions in self.slots.items()}
                self.prepared = True
        columns = [expression for expression, *_ in compiler.select[: compiler.col_count]]
        if compiler.has_composite_fields(columns):
            raise NotCompilable("composite fields are read by the ORM")
        # What ModelIterable works out for every execution, once.
        self.compiler = compiler  # its connection is this thread's: the cache is per thread
        self.width = compiler.col_count if compiler.has_extra_select else None
        self.converters = compiler.get_converters(columns)
        klass_info = compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [column[0].target.attname for column in compiler.select[self.start : self.end]]
        self.related = get_related_populators(klass_info, compiler.select, self.using)
        self.annotations = list(compiler.annotation_col_map.items())
        self.prefetch = tuple(queryset._prefetch_related_lookups)

    def fetch(self, **values: Any) -> list[Any]:
        """Run the statement with ``values`` in its slots; return the model instances."""
        params = list(self.params)
        for name, positions in self.slots.items():
            value = values[name]
            for i in positions:
                params[i] = value
        connection = connections[self.using]
        with connection.cursor() as cursor:
            if self.prepared:
                with connection.execute_wrapper(_run_prepared):
                    cursor.execute(self.sql, params)
            else:
                cursor.execute(self.sql, params)
            rows: Any = cursor.fetchall()
        if self.width is not None:
            rows = [row[: self.width] for row in rows]
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        objects = []
        for row in rows:
            obj = self.model.from_db(self.using, self.init_list, row[self.start : self.end])
            for populator in self.related:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            objects.append(obj)
        if self.prefetch and objects:
            prefetch_related_objects(objects, *self.prefetch)
        return objects


def preparing(using: str) -> bool:
    """Whether compiled statements on database ``using`` are prepared.

    ``PREPARE_STATEMENTS`` "auto" (the default) prepares them where the scan settings live on
    the connection (``SCAN_SETTINGS`` "connection"): not behind a pooler in transaction mode,
    which may hand the next statement to a server session that never saw the preparation.
    Only psycopg 3 with parameters bound by the server prepares statements.
    """
    setting = similarity_settings.PREPARE_STATEMENTS
    if setting == "auto":
        setting = similarity_settings.SCAN_SETTINGS == "connection"
    connection = connections[using]
    if setting is not True or connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3 and connection.settings_dict.get("OPTIONS", {}).get("server_side_binding") is True


def inline_constants(sql: str, params: list[Any], keep: set[int], connection: Any) -> tuple[str, list[int]] | None:
    """Return ``sql`` with every parameter but those at the positions ``keep`` written in as a
    literal (quoted by psycopg as its client-side binding quotes them), and the positions of
    the parameters left, in order; None where that cannot be done safely (a placeholder other
    than Django's ``%s``, a value psycopg has no literal for).
    """
    from psycopg import Error as PsycopgError
    from psycopg.sql import Literal

    connection.ensure_connection()
    pieces, order, index = [], [], 0
    for piece in _PLACEHOLDERS.split(sql):
        if piece == "%s":
            if index >= len(params):
                return None
            if index in keep:
                order.append(index)
            else:
                try:
                    piece = Literal(params[index]).as_string(connection.connection).replace("%", "%%")
                except (PsycopgError, TypeError, ValueError):
                    return None
            index += 1
        elif piece != "%%" and "%" in piece:
            return None
        pieces.append(piece)
    if index != len(params):
        return None
    return "".join(pieces), order


def _run_prepared(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
    """Execute wrapper (innermost): run the statement prepared on this connection.

    Stands for Django's own last step (``CursorWrapper._execute``) with psycopg's ``prepare``:
    the host's execute wrappers and Django's query log still see the statement.
    """
    db = context["connection"]
    db.validate_no_broken_transaction()
    raw = db.connection
    threshold = raw.prepare_threshold
    if threshold is None:  # psycopg prepares nothing then, even when asked
        raw.prepare_threshold = _EXPLICIT_ONLY
    try:
        with db.wrap_database_errors:
            return context["cursor"].cursor.execute(sql, params, prepare=True)
    finally:
        raw.prepare_threshold = threshold


_local = threading.local()
_generation = 0  # bumped by a settings change: every thread's statements are stale


def compiled(key: Hashable, build: Callable[[], CompiledQuery], *, lifetime: float | None = None) -> CompiledQuery | None:
    """Return this thread's statement for ``key``, calling ``build`` the first time.

    None when ``build`` raised ``NotCompilable`` (remembered too: the caller takes the ORM's
    path for that shape without trying again). ``lifetime``: seconds after which the
    statement is built again (for SQL that depends on rows, such as a category's subtree);
    None: until a setting changes or the cache drops it (the least recently used go first).
    """
    cache = getattr(_local, "statements", None)
    if cache is None or _local.generation != _generation:
        cache = _local.statements = OrderedDict()
        _local.generation = _generation
    now = time.monotonic()
    entry = cache.get(key)
    if entry is not None and (entry[1] is None or now < entry[1]):
        cache.move_to_end(key)
        return entry[0]
    try:
        statement = build()
    except NotCompilable:
        statement = None
    cache.pop(key, None)
    if len(cache) >= CACHE_SIZE:
        cache.popitem(last=False)
    cache[key] = (statement, None if lifetime is None else now + lifetime)
    return statement


def integer_key(field: models.Field, value: Any, using: str) -> int | None:
    """Return ``value`` (a URL's text) as the integer key ``field`` holds, None when it is not one.

    None sends the request the ORM's way, which answers a malformed or out-of-range key
    with its own 404.
    """
    if not isinstance(field, (models.IntegerField, models.AutoField)):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    low, high = connections[using].ops.integer_field_range(field.get_internal_type())
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def _forget(**kwargs: Any) -> None:
    global _generation
    _generation += 1


setting_changed.connect(_forget)
