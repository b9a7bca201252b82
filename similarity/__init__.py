"""similarity: product vectors, nearest neighbours and category tools for Django shops.

A host adds ``similarity`` to INSTALLED_APPS, names its product model and an adapter in
``SIMILARITY["MODELS"]`` (or calls ``similarity.register``), includes ``similarity.urls`` and
calls ``similarity.celery.configure(app)``: see docs/INSTALL.md. Saving an item schedules its
encoding on a Celery worker; the API, the admin panels and the functions below read the
vectors.

The public API, importable from here once Django is set up:

- ``register(Model, Adapter)``, ``get_adapter(Model)``: what takes part, and how;
- ``enqueue_encode(label, pks)``, ``collect_encodes()``: schedule encoding (bulk imports);
- ``similar_to(obj, k=...)``, ``nearest(vector, queryset=...)``: neighbours;
- ``suggest(obj)``: likely categories; ``encoding_status(label)``: where encoding stands.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.9.0"

_PUBLIC = {
    "register": "similarity.registry",
    "get_adapter": "similarity.registry",
    "enqueue_encode": "similarity.indexing.queue",
    "collect_encodes": "similarity.indexing.queue",
    "similar_to": "similarity.search.queries",
    "nearest": "similarity.search.queries",
    "suggest": "similarity.categories.suggestions",
    "encoding_status": "similarity.indexing.status",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not import models before the app registry is ready.
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'similarity' has no attribute {name!r}")
