"""How the test app's models take part: one adapter per strategy, attributes only."""
from __future__ import annotations

from similarity.adapters import ItemAdapter


class GadgetAdapter(ItemAdapter):
    """Photos in a related table, a foreign-key category tree, a variant value field."""

    title_field = "name"
    text_fields = ("maker", "notes")
    identifier_field = "code"
    image_field = "photos__picture"
    image_order = ("rank", "pk")
    category_field = "shelf"
    category_name_field = "label"
    active_field = "listed"
    variant_field = "family"
    changed_field = "changed"


class BookAdapter(ItemAdapter):
    """Categories as a many-to-many tree, variants as a foreign key to a parent item, no photo."""

    title_field = "heading"
    text_fields = ("blurb",)
    identifier_field = "isbn"
    category_field = "genres"
    category_parent_field = "broader"
    active_field = "in_print"
    variant_field = "edition_of"


class ListingAdapter(ItemAdapter):
    """A path string with its own separator, the photo on the row, no identifier or flag."""

    title_field = "caption"
    text_fields = ("details",)
    image_field = "photo"
    category_field = "section"
    category_separator = "/"
