"""How the store's items take part in similar items (named in settings.SIMILARITY["MODELS"])."""
from similarity.adapters import ItemAdapter


class StoreItemAdapter(ItemAdapter):
    title_field = "name"
    text_fields = ("maker", "blurb")
    identifier_field = "code"
    image_field = "photos__picture"  # ItemPhoto rows, the first in their order (rank)
    category_field = "shelf"  # the Shelf tree: label and parent
    category_name_field = "label"
    active_field = "listed"
    variant_field = "family"
