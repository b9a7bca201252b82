"""What a host's model offers the app: text, photos, categories, active flag, variants.

A host registers its own model with an adapter (``similarity.registry.register``); the model
itself is not changed. Most shops only set attributes naming their fields::

    class ItemAdapter(ItemAdapter):
        title_field = "name"
        text_fields = ("maker", "blurb")
        image_field = "photos__picture"      # through a related table, first by image_order
        image_order = ("rank", "pk")
        category_field = "shelf"             # a tree with a parent foreign key and a name
        active_field = "listed"
        variant_field = "family"
        identifier_field = "code"

Field paths follow relations with ``__``. Categories can be a foreign key or a many-to-many
to a category model (a tree: ``category_parent_field`` and ``category_name_field``, or a
model whose rows name their own path, see ``category_label``), or a text field holding the
path with ``category_separator``. Override a method where a shop's shape is unusual (a
django-oscar shop overrides ``category_label`` and ``create_category``).

Inside the app a category is a *label*: its path joined by " > " (``similarity.ml.taxonomy``).
Runs in every process; reads the database only through the querysets it is given.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from django.db.models import Q

from similarity.ml.taxonomy import LABELS, Taxonomy


class ItemAdapter:
    """The default adapter: every hook reads the fields its attributes name."""

    #: The item's name: encoded first, and the words that explain a match.
    title_field: str = "title"
    #: More text to encode after the title, in this order (each cut to ``text_chars``).
    text_fields: Sequence[str] = ()
    text_chars: int = 300
    #: An exact code (a sku): a text search for it puts that item first.
    identifier_field: str | None = None
    #: The photo: an image field of the model ("photo"), or of a related table with a
    #: foreign key to the item ("photos__picture"); the first by ``image_order`` is encoded.
    image_field: str | None = None
    image_order: Sequence[str] = ()
    #: A foreign key or many-to-many to a category model, or a text field holding a path.
    category_field: str | None = None
    category_separator: str = " > "
    category_name_field: str = "name"
    category_parent_field: str = "parent"
    #: A boolean field: results hold active items only unless asked otherwise.
    active_field: str | None = None
    #: Items sharing a value (a field, or a foreign key to a parent item) are variants of one.
    variant_field: str | None = None
    #: What the held-out split hashes (stable across databases): default the identifier, else pk.
    split_key_field: str | None = None
    #: A date-time field set on every change (``similarity_reindex --since``).
    changed_field: str | None = None
    #: Same-product matching compares the maker's name and the price where the model has them.
    brand_field: str | None = None
    price_field: str | None = None
    #: The API: URL prefix (default: the model's plural name), the host's own serializer and
    #: filter set (dotted paths or classes; defaults are built from the fields above).
    route: str | None = None
    serializer_class: Any = None
    filterset_class: Any = None
    #: OpenAPI examples by operation: "similar", "suggestions", "search", "image_search".
    api_examples: dict[str, list[Any]] | None = None

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.host_paths = Taxonomy(self.category_separator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model._meta.label})"

    # What is encoded

    def get_queryset(self) -> models.QuerySet:
        """The rows the worker reads (with what the hooks below follow, fetched along)."""
        return self.with_related(self.model._default_manager.all())

    def results_queryset(self, queryset: models.QuerySet) -> models.QuerySet:
        """What the API's result rows need for their serializer (similar items, searches):
        by default the photos and categories fetched along; override to annotate instead."""
        return self.with_related(queryset)

    def get_route(self) -> str:
        """The API's URL prefix of this model ("products")."""
        from django.utils.text import slugify

        return self.route or slugify(str(self.model._meta.verbose_name_plural)) or self.model._meta.model_name

    def with_related(self, queryset: models.QuerySet) -> models.QuerySet:
        related = self._image_relation()
        if related:
            queryset = queryset.prefetch_related(related)
        kind = self._category_kind()
        if kind == "fk":
            queryset = queryset.select_related(self.category_field)
        elif kind == "m2m":
            queryset = queryset.prefetch_related(self.category_field)
        return queryset

    def get_text(self, obj: Any) -> str:
        """The text every vector reads: the title, then the text fields. Never the category:
        a vector comes from what the item is, so an uncategorised item is not close to
        other uncategorised ones for lacking a label; categories enter through training."""
        return "\n".join(p for p in [self.get_title(obj), *self._extra_text(obj)] if p)

    def get_title(self, obj: Any) -> str:
        return _text(_value(obj, self.title_field))

    def get_listing(self, obj: Any) -> Any:
        """What same-product matching compares (``similarity.ml.matching.Listing``): the title,
        the text fields as the description, the brand and the price."""
        from similarity.ml.matching.listing import Listing, parse_price

        description = [t for f, t in zip(self.text_fields, self._extra_text(obj)) if f != self.brand_field and t]
        return Listing(
            title=self.get_title(obj),
            description="\n".join(description),
            brand=_text(_value(obj, self.brand_field))[: self.text_chars] if self.brand_field else "",
            price=parse_price(_value(obj, self.price_field)) if self.price_field else None,
        )

    def get_keyword_text(self, obj: Any) -> str:
        """The short text whose words explain a match."""
        return self.get_title(obj)

    def get_image(self, obj: Any) -> Any:
        """The photo to encode as a Django ``File`` (a FieldFile), or None."""
        if not self.image_field:
            return None
        related = self._image_relation()
        if not related:
            image = _value(obj, self.image_field)
            return image if image and getattr(image, "name", "") else None
        attribute = self.image_field[len(related) + 2 :]
        photos = list(getattr(obj, related).all())  # prefetched by get_queryset
        if self.image_order:
            photos.sort(key=lambda photo: tuple(_sortable(_value(photo, f)) for f in self.image_order))
        for photo in photos:
            image = _value(photo, attribute)
            if image and getattr(image, "name", ""):
                return image
        return None

    def get_split_key(self, obj: Any) -> str:
        field = self.split_key_field or self.identifier_field
        return str(_value(obj, field) if field else obj.pk)

    # Categories

    def get_labels(self, obj: Any) -> list[str]:
        """The item's category labels (most specific first); [] when it has none."""
        kind = self._category_kind()
        if kind is None:
            return []
        if kind == "text":
            label = LABELS.join(self.host_paths.split(_text(_value(obj, self.category_field))))
            return [label] if label else []
        nodes = [_value(obj, self.category_field)] if kind == "fk" else list(getattr(obj, self.category_field).all())
        labels = [self.category_label(node) for node in nodes if node is not None]
        return sorted({label for label in labels if label}, key=lambda label: (-LABELS.level(label), label))

    def get_label(self, obj: Any) -> str:
        """The item's one label (training, suggestions): its most specific category; "" if none."""
        labels = self.get_labels(obj)
        return labels[0] if labels else ""

    def category_label(self, node: Any) -> str:
        """A category row's label: its names from the root (override for other trees)."""
        names, seen = [], set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            names.append(_text(getattr(node, self.category_name_field)))
            node = getattr(node, self.category_parent_field, None)
        return LABELS.join(reversed(names))

    def create_category(self, label: str) -> Any:
        """The category row of ``label``, created with its missing ancestors (accepting a
        suggestion to create a category). Override for trees kept otherwise."""
        model = self.category_model()
        node = None
        for name in LABELS.split(label):
            match = {self.category_name_field + "__iexact": name, self.category_parent_field: node}
            node = model._default_manager.filter(**match).first() or model._default_manager.create(
                **{self.category_name_field: name, self.category_parent_field: node}
            )
        return node

    def labelled(self, queryset: models.QuerySet) -> models.QuerySet:
        """The rows of ``queryset`` that have a category."""
        return self._filter_nodes(queryset, None, labelled=True)

    def filter_label(self, queryset: models.QuerySet, label: str) -> models.QuerySet:
        """The rows whose category is exactly ``label`` ("": the uncategorised ones)."""
        if not label:
            return self._filter_nodes(queryset, None, labelled=False)
        return self._filter_nodes(queryset, lambda candidate: candidate.lower() == LABELS.normalise(label).lower())

    def filter_category(self, queryset: models.QuerySet, label: str) -> models.QuerySet:
        """The rows in category ``label`` or below it."""
        wanted = LABELS.normalise(label).lower()
        return self._filter_nodes(queryset, lambda candidate: LABELS.is_within(candidate.lower(), wanted))

    def set_label(self, queryset: models.QuerySet, label: str) -> list[Any]:
        """Put the rows of ``queryset`` under category ``label`` (created if missing); return
        the keys of the rows that changed. The caller re-encodes them."""
        if not LABELS.normalise(label):
            raise ValueError('A category path is needed, e.g. "Home > Kitchen".')
        kind = self._category_kind()
        if kind is None:
            raise ValueError(f"{self.model._meta.label} has no categories: set category_field on its adapter.")
        changing = queryset.exclude(pk__in=self.filter_label(queryset, label).values("pk"))
        pks = list(changing.values_list("pk", flat=True))
        if not pks:
            return []
        rows = self.model._default_manager.filter(pk__in=pks)
        if kind == "text":
            rows.update(**{self.category_field: self.host_paths.join(LABELS.split(label))})
        elif kind == "fk":
            rows.update(**{self.category_field: self.create_category(label)})
        else:
            node = self.create_category(label)
            for row in rows:
                getattr(row, self.category_field).set([node])
        self.touch(rows)
        return pks

    def touch(self, queryset: models.QuerySet) -> None:
        """Mark rows changed (``changed_field`` = now) after a bulk update that skipped save()."""
        if self.changed_field:
            from django.utils import timezone

            queryset.update(**{self.changed_field: timezone.now()})

    def category_model(self) -> type[models.Model] | None:
        kind = self._category_kind()
        if kind in ("fk", "m2m"):
            return self.model._meta.get_field(self.category_field).related_model
        return None

    def category_labels(self) -> dict[Any, str]:
        """Every category row's label by primary key (categories are few; read at once)."""
        model = self.category_model()
        if model is None:
            return {}
        if type(self).category_label is not ItemAdapter.category_label:  # the host's own labels
            return {node.pk: self.category_label(node) for node in model._default_manager.all()}
        # A parent-key tree: one query, the paths walked in memory.
        parent = model._meta.get_field(self.category_parent_field).attname
        rows = {pk: (name, up) for pk, name, up in model._default_manager.values_list("pk", self.category_name_field, parent)}

        def label(pk: Any) -> str:
            names, seen = [], set()
            while pk is not None and pk in rows and pk not in seen:
                seen.add(pk)
                names.append(_text(rows[pk][0]))
                pk = rows[pk][1]
            return LABELS.join(reversed(names))

        return {pk: label(pk) for pk in rows}

    # Queries

    def active(self, queryset: models.QuerySet) -> models.QuerySet:
        """The rows shown to shoppers (all of them without ``active_field``)."""
        return queryset.filter(**{self.active_field: True}) if self.active_field else queryset

    def exclude_variants(self, queryset: models.QuerySet, obj: Any) -> models.QuerySet:
        """``queryset`` without ``obj``'s own variants (items sharing its variant value)."""
        if not self.variant_field:
            return queryset
        field = self.variant_field
        relation = _field(self.model, field)
        if isinstance(relation, models.ForeignKey) and relation.related_model is self.model:
            # A foreign key to a parent item: the parent and all its children are one item.
            parent = getattr(obj, relation.attname) or obj.pk
            return queryset.exclude(Q(**{relation.attname: parent}) | Q(pk=parent))
        value = _value(obj, field)
        return queryset if value in (None, "") else queryset.exclude(**{field: value})

    def search_exact(self, queryset: models.QuerySet, query: str) -> models.QuerySet:
        """Rows whose identifier is exactly ``query`` (case-insensitive)."""
        if not self.identifier_field or not query:
            return queryset.none()
        return queryset.filter(**{f"{self.identifier_field}__iexact": query})

    def search_keywords(self, queryset: models.QuerySet, tokens: list[str]) -> models.QuerySet:
        """Rows whose title contains a token (model numbers such as ``iphone15``, ``64g``).

        Tokens come normalised ("iPhone 15" -> "iphone15"): titles are compared lower-cased
        and without spaces.
        """
        if not tokens:
            return queryset.none()
        from django.db.models import Value
        from django.db.models.functions import Lower, Replace

        squeezed = queryset.annotate(_squeezed=Replace(Lower(self.title_field), Value(" "), Value("")))
        condition = Q()
        for token in tokens:
            condition |= Q(_squeezed__contains=token)
        return squeezed.filter(condition)

    def filter_changed_since(self, queryset: models.QuerySet, when: Any) -> models.QuerySet:
        if not self.changed_field:
            raise ValueError(f"{self.model._meta.label} records no change time: set changed_field on its adapter.")
        return queryset.filter(**{f"{self.changed_field}__gte": when})

    def get_clustering_queryset(self) -> models.QuerySet:
        """The rows clustering looks at: the active ones."""
        return self.active(self.model._default_manager.all())

    # Related tables whose changes re-encode an item

    def dependencies(self) -> list[tuple[type[models.Model], str]]:
        """(model, path from its rows to the item's key) for tables whose changes change what
        an item is encoded from: the photos' table, and the category membership table."""
        found = []
        related = self._image_relation()
        if related:
            relation = self.model._meta.get_field(related)
            found.append((relation.related_model, relation.field.attname))
        if self._category_kind() == "m2m":
            through = self.model._meta.get_field(self.category_field).remote_field.through
            for field in through._meta.get_fields():
                if getattr(field, "related_model", None) is self.model and field.many_to_one:
                    found.append((through, field.attname))
        return found

    # Internals

    def _extra_text(self, obj: Any) -> list[str]:
        return [_text(_value(obj, f))[: self.text_chars] for f in self.text_fields]

    def _image_relation(self) -> str:
        """The related table's name when the photo lives in one ("photos" of "photos__picture")."""
        if not self.image_field or "__" not in self.image_field:
            return ""
        head = self.image_field.split("__", 1)[0]
        field = _field(self.model, head)
        return head if field is not None and (field.one_to_many or field.many_to_many) else ""

    def _category_kind(self) -> str | None:
        if not self.category_field:
            return None
        field = _field(self.model, self.category_field)
        if field is None:
            raise FieldDoesNotExist(f"{self.model._meta.label} has no field {self.category_field!r} (category_field)")
        if field.many_to_many:
            return "m2m"
        if field.many_to_one or field.one_to_one:
            return "fk"
        return "text"

    def _filter_nodes(self, queryset: models.QuerySet, accept: Any, labelled: bool | None = None) -> models.QuerySet:
        """Filter by category: ``accept(label)`` for each category, or labelled/unlabelled."""
        kind, field = self._category_kind(), self.category_field
        if kind is None:  # no categories: every row is unlabelled
            return queryset if labelled is False else queryset.none()
        if labelled is not None:
            if kind == "text":
                empty = Q(**{field: ""}) | Q(**{f"{field}__isnull": True})
                return queryset.exclude(empty) if labelled else queryset.filter(empty)
            return self._by_category(queryset, {f"{field}__isnull": not labelled})
        if kind == "text":
            values = queryset.exclude(**{field: ""}).values_list(field, flat=True).distinct()
            wanted = [v for v in values if v and accept(LABELS.join(self.host_paths.split(v)))]
            return queryset.filter(**{f"{field}__in": wanted})
        nodes = [pk for pk, label in self.category_labels().items() if accept(label)]
        return self._by_category(queryset, {f"{field}__in": nodes})

    def _by_category(self, queryset: models.QuerySet, condition: dict[str, Any]) -> models.QuerySet:
        if self._category_kind() == "fk":
            return queryset.filter(**condition)
        # Many categories per item: a subquery, so an item in two matching ones is one row
        # (no DISTINCT, which would keep the nearest-neighbour scan off its index).
        if next(iter(condition)).endswith("__isnull") and not next(iter(condition.values())):
            return queryset.filter(pk__in=self.model._default_manager.filter(**condition).values("pk"))
        if next(iter(condition)).endswith("__isnull"):  # no category at all
            field = self.category_field
            return queryset.exclude(pk__in=self.model._default_manager.filter(**{f"{field}__isnull": False}).values("pk"))
        return queryset.filter(pk__in=self.model._default_manager.filter(**condition).values("pk"))


def _field(model: type[models.Model], name: str) -> Any:
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


def _value(obj: Any, path: str | None) -> Any:
    """Follow ``a__b`` from ``obj``; None where a link is missing."""
    if not path:
        return None
    for name in path.split("__"):
        if obj is None:
            return None
        obj = getattr(obj, name, None)
        if callable(obj) and not isinstance(obj, models.Model) and not hasattr(obj, "all"):
            obj = obj()
    return obj


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _sortable(value: Any) -> Any:
    return (value is None, value)
