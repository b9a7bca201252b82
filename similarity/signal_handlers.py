"""Signal receivers: module-level one-liners that call the named scheduling function.

Connected by ``similarity.registry.register`` for each registered model: the item itself
saved, a row of a related table the adapter depends on saved or deleted (a photo), and a
change of category membership (many-to-many); an item deleted with such rows.
"""
from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from similarity.indexing.queue import enqueue_encode, forget_encoding

# related model -> [(registered model label, attribute holding the item's key)]
_watched: dict[type, list[tuple[str, str]]] = {}


def item_saved(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """post_save of a registered model: encode the item after commit."""
    if not raw:  # loaddata: fixtures carry their own state
        enqueue_encode(instance._meta.label, [instance.pk])


def item_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """post_delete of a registered model with watched rows: forget the state they re-made."""
    forget_encoding(instance._meta.label, [instance.pk])


def related_changed(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """post_save / post_delete of a related row (a photo): re-encode its item."""
    if raw:
        return
    for label, attribute in _watched.get(sender, []):
        key = getattr(instance, attribute, None)
        if key is not None:
            enqueue_encode(label, [key])


def membership_changed(sender: Any, instance: Any, action: str, reverse: bool, model: Any, pk_set: Any, **kwargs: Any) -> None:
    """m2m_changed of a category membership table: re-encode the items it moved."""
    for label, attribute in _watched.get(sender, []):
        if not reverse and action in ("post_add", "post_remove", "post_clear"):
            enqueue_encode(label, [instance.pk])
        elif reverse and action in ("post_add", "post_remove") and pk_set:
            enqueue_encode(label, sorted(pk_set))
        elif reverse and action == "pre_clear":
            enqueue_encode(label, list(sender._default_manager.filter(**{_source(sender, attribute): instance.pk}).values_list(attribute, flat=True)))


def watch(related: type, model: type, attribute: str) -> None:
    """Re-encode ``model``'s item ``attribute`` points at whenever a ``related`` row changes."""
    entry = (model._meta.label, attribute)
    if entry in _watched.setdefault(related, []):
        return
    _watched[related].append(entry)
    if not related._meta.auto_created:
        uid = f"similarity_{related._meta.label_lower}_{model._meta.label_lower}"
        post_save.connect(related_changed, sender=related, dispatch_uid=f"{uid}_saved")
        post_delete.connect(related_changed, sender=related, dispatch_uid=f"{uid}_deleted")
        # The item deleted with its related rows: their post_delete ran while it still existed.
        post_delete.connect(item_deleted, sender=model, dispatch_uid=f"similarity_{model._meta.label_lower}_deleted")


def unwatch(related: type, model: type) -> None:
    _watched[related] = [entry for entry in _watched.get(related, []) if entry[0] != model._meta.label]
    uid = f"similarity_{related._meta.label_lower}_{model._meta.label_lower}"
    post_save.disconnect(sender=related, dispatch_uid=f"{uid}_saved")
    post_delete.disconnect(sender=related, dispatch_uid=f"{uid}_deleted")
    post_delete.disconnect(sender=model, dispatch_uid=f"similarity_{model._meta.label_lower}_deleted")


def _source(through: type, item_attribute: str) -> str:
    """The other foreign key of a many-to-many table (the category's)."""
    for field in through._meta.get_fields():
        if field.many_to_one and field.attname != item_attribute:
            return field.attname
    raise LookupError(f"{through._meta.label} has no second foreign key")
