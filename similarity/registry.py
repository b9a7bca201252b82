"""Which of the host's models take part, each with its adapter; no fork, no column.

A host names them in settings::

    SIMILARITY = {"MODELS": {"store.Item": "store.similarity.ItemAdapter"}}

or registers them from its ``AppConfig.ready()``::

    similarity.register(Item, ItemAdapter)

Registering connects the signals that schedule encoding (the item saved, and the related
tables the adapter names: photos, category membership) and gives the model two relations
the app's queries follow, ``similarity_embeddings`` and ``similarity_states`` (generic
relations: no column, no migration in the host's app; deleting an item deletes its rows
there too). Runs in every process.
"""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib.contenttypes.fields import GenericRelation
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models.signals import m2m_changed, post_save
from django.utils.module_loading import import_string

from similarity.adapters import ItemAdapter

EMBEDDINGS = "similarity_embeddings"
STATES = "similarity_states"
# A possible duplicate names the item as its first or its second: deleting the item deletes it.
MATCHES = {"similarity_matches_first": "first_id", "similarity_matches_second": "second_id"}

_registry: dict[str, ItemAdapter] = {}


class NotRegistered(LookupError):
    """The model was not registered with the app."""


def register(model: type[models.Model] | str, adapter: type[ItemAdapter] | str | None = None) -> ItemAdapter:
    """Make ``model`` take part, described by ``adapter`` (a class or dotted path; default
    ``ItemAdapter``); return the adapter instance. Call it from ``AppConfig.ready()``."""
    if isinstance(model, str):
        model = apps.get_model(model)
    if isinstance(adapter, str):
        adapter = import_string(adapter)
    adapter_class = adapter or ItemAdapter
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ItemAdapter)):
        raise ImproperlyConfigured(f"The adapter of {model._meta.label} must subclass similarity.adapters.ItemAdapter.")
    instance = adapter_class(model)
    label = model._meta.label
    if label not in _registry:
        _add_relations(model)
        _connect(model, instance)
    _registry[label] = instance
    extend_admin(model)
    return instance


def extend_admin(model: type[models.Model]) -> None:
    """Give the ModelAdmin registered for ``model`` the similarity panels (``SIMILARITY["ADMIN"]``).

    Called when a model is registered and once all apps are ready: the host's admin modules
    are imported by django.contrib.admin's own start-up, in whichever order the apps come.
    """
    from similarity.conf import similarity_settings

    if not similarity_settings.ADMIN or not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib import admin

    if model in admin.site._registry:
        from similarity.admin.items import extend

        extend(model)


def unregister(model: type[models.Model] | str) -> None:
    """Take ``model`` out (tests); its relations stay until the process ends."""
    label = model if isinstance(model, str) else model._meta.label
    adapter = _registry.pop(label, None)
    if adapter is not None:
        _disconnect(adapter)


def register_from_settings() -> None:
    """Register what ``SIMILARITY["MODELS"]`` names (app start-up)."""
    from similarity.conf import similarity_settings

    for label, adapter in (similarity_settings.MODELS or {}).items():
        register(label, adapter)


def get_adapter(model: type[models.Model] | models.Model | str) -> ItemAdapter:
    """The adapter of a registered model (a class, an instance or an "app.Model" label)."""
    label = model if isinstance(model, str) else model._meta.label
    try:
        return _registry[label]
    except KeyError:
        known = ", ".join(sorted(_registry)) or "none"
        raise NotRegistered(
            f"{label} is not registered with similarity (registered: {known}): add it to SIMILARITY['MODELS'] "
            "or call similarity.register() in its AppConfig.ready()."
        ) from None


def is_registered(model: type[models.Model] | models.Model | str) -> bool:
    label = model if isinstance(model, str) else model._meta.label
    return label in _registry


def registered_models() -> list[type[models.Model]]:
    """Every registered model, in registration order."""
    return [adapter.model for adapter in _registry.values()]


def adapters() -> list[ItemAdapter]:
    return list(_registry.values())


def _add_relations(model: type[models.Model]) -> None:
    """Give ``model`` the generic relations the app's queries follow (no column is added)."""
    names = {f.name for f in model._meta.private_fields}
    for name, target in ((EMBEDDINGS, "similarity.Embedding"), (STATES, "similarity.EncodingState")):
        if name not in names:
            GenericRelation(target).contribute_to_class(model, name)
    for name, column in MATCHES.items():
        if name not in names:
            GenericRelation("similarity.ProductMatch", object_id_field=column).contribute_to_class(model, name)
    apps.clear_cache()  # field lookups of every model are cached


def _connect(model: type[models.Model], adapter: ItemAdapter) -> None:
    from similarity import signal_handlers as handlers

    uid = f"similarity_{model._meta.label_lower}"
    post_save.connect(handlers.item_saved, sender=model, dispatch_uid=f"{uid}_saved")
    for related, path in adapter.dependencies():
        handlers.watch(related, model, path)
        if _is_membership(model, related):  # add(), remove(), set(), clear(): m2m_changed, not save
            m2m_changed.connect(handlers.membership_changed, sender=related, dispatch_uid=f"{uid}_m2m")


def _disconnect(adapter: ItemAdapter) -> None:
    from similarity import signal_handlers as handlers

    uid = f"similarity_{adapter.model._meta.label_lower}"
    post_save.disconnect(sender=adapter.model, dispatch_uid=f"{uid}_saved")
    for related, _ in adapter.dependencies():
        handlers.unwatch(related, adapter.model)
        if _is_membership(adapter.model, related):
            m2m_changed.disconnect(sender=related, dispatch_uid=f"{uid}_m2m")


def _is_membership(model: type[models.Model], related: type[models.Model]) -> bool:
    """Whether ``related`` is the table of one of ``model``'s many-to-many fields: Django's
    own or the host's ``through`` model (django-oscar's ProductCategory), whose rows change
    by save and delete (watched) or by the relation's add() and remove() (m2m_changed)."""
    return any(field.remote_field.through is related for field in model._meta.many_to_many)


def adapter_or_none(model: Any) -> ItemAdapter | None:
    try:
        return get_adapter(model)
    except NotRegistered:
        return None
