"""Category membership through a many-to-many re-encodes the item, whoever owns the table.

A host's many-to-many categories may use Django's own table or a ``through`` model of the
host's (django-oscar's ``ProductCategory``). Its rows change by the relation's ``add()``,
``remove()``, ``set()`` and ``clear()`` (``m2m_changed``, no save) or, for a ``through`` model,
by saving and deleting rows (a formset): both must schedule the item's encoding. The models
here live in an isolated app registry and have no tables: the signals are sent by hand.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.test.utils import isolate_apps

from similarity import registry
from similarity.adapters import ItemAdapter

LABEL = "adapter_memberships"


class TaggedAdapter(ItemAdapter):
    title_field = "name"
    category_field = "tags"
    category_parent_field = "parent"


@pytest.fixture
def shapes() -> Iterator[dict[str, Any]]:
    """Two registered models: categories through the host's own table, and through Django's."""
    with isolate_apps():

        class Tag(models.Model):
            name = models.CharField(max_length=50)
            parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE)

            class Meta:
                app_label = LABEL

        class Product(models.Model):
            name = models.CharField(max_length=50)
            tags = models.ManyToManyField(Tag, through="ProductTag")

            class Meta:
                app_label = LABEL

        class ProductTag(models.Model):  # the host's own table, as Oscar's ProductCategory
            product = models.ForeignKey(Product, on_delete=models.CASCADE)
            tag = models.ForeignKey(Tag, on_delete=models.CASCADE)

            class Meta:
                app_label = LABEL

        class Article(models.Model):
            name = models.CharField(max_length=50)
            tags = models.ManyToManyField(Tag)  # Django's own table

            class Meta:
                app_label = LABEL

        for model in (Product, Article):
            registry.register(model, TaggedAdapter)
        try:
            yield {"tag": Tag, "product": Product, "through": ProductTag, "article": Article}
        finally:
            for model in (Product, Article):
                registry.unregister(model)


@pytest.fixture
def scheduled() -> Iterator[mock.Mock]:
    with mock.patch("similarity.signal_handlers.enqueue_encode") as enqueue:
        yield enqueue


def test_the_hosts_through_table_is_a_dependency(shapes: dict[str, Any]) -> None:
    adapter = registry.get_adapter(shapes["product"])
    assert (shapes["through"], "product_id") in adapter.dependencies()


@pytest.mark.parametrize("shape", ["product", "article"])
def test_add_and_remove_on_the_relation_re_encode(shapes: dict[str, Any], scheduled: mock.Mock, shape: str) -> None:
    model = shapes[shape]
    through = model._meta.get_field("tags").remote_field.through
    item = model(pk=7, name="green tea")
    for action in ("post_add", "post_remove", "post_clear"):
        m2m_changed.send(sender=through, instance=item, action=action, reverse=False, model=shapes["tag"], pk_set={1}, using="default")
    assert scheduled.call_args_list == [mock.call(model._meta.label, [7])] * 3


def test_add_from_the_category_side_re_encodes_its_items(shapes: dict[str, Any], scheduled: mock.Mock) -> None:
    tag = shapes["tag"](pk=1, name="Tea")
    m2m_changed.send(
        sender=shapes["through"], instance=tag, action="post_add", reverse=True, model=shapes["product"], pk_set={3, 2}, using="default"
    )
    scheduled.assert_called_once_with(f"{LABEL}.Product", [2, 3])


def test_rows_of_the_hosts_through_table_saved_or_deleted_re_encode(shapes: dict[str, Any], scheduled: mock.Mock) -> None:
    row = shapes["through"](product_id=7, tag_id=1)
    post_save.send(sender=shapes["through"], instance=row, created=True, raw=False, using="default")
    post_delete.send(sender=shapes["through"], instance=row, using="default")
    assert scheduled.call_args_list == [mock.call(f"{LABEL}.Product", [7])] * 2


def test_unregistering_disconnects_the_relation(shapes: dict[str, Any], scheduled: mock.Mock) -> None:
    registry.unregister(shapes["product"])
    m2m_changed.send(
        sender=shapes["through"], instance=shapes["product"](pk=7), action="post_add", reverse=False,
        model=shapes["tag"], pk_set={1}, using="default",
    )
    scheduled.assert_not_called()
