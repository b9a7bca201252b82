"""The products' encoding state moves to the similarity app's own table: the product table
keeps only the shop's columns. Existing rows keep their status, reason and content hash, so
nothing is encoded again."""
from django.db import migrations

COLUMNS = {  # product column -> state column
    "embedding_status": "status",
    "embedding_error": "error",
    "embedding_modalities": "modalities",
    "content_hash": "content_hash",
    "encoded_at": "encoded_at",
    "embedding_requested_at": "requested_at",
    "embedding_claim": "claim",
    "embedding_claimed_at": "claimed_at",
}


def _product_type(apps):
    ContentType = apps.get_model("contenttypes", "ContentType")
    return ContentType.objects.get_or_create(app_label="catalog", model="product")[0]


def to_states(apps, schema_editor) -> None:
    Product = apps.get_model("catalog", "Product")
    EncodingState = apps.get_model("similarity", "EncodingState")
    content_type = _product_type(apps)
    rows = Product.objects.values_list("pk", *COLUMNS).iterator(chunk_size=5000)
    batch = []
    for pk, *values in rows:
        batch.append(EncodingState(content_type=content_type, object_id=pk, **dict(zip(COLUMNS.values(), values))))
        if len(batch) == 5000:
            EncodingState.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    EncodingState.objects.bulk_create(batch, ignore_conflicts=True)


def from_states(apps, schema_editor) -> None:
    Product = apps.get_model("catalog", "Product")
    EncodingState = apps.get_model("similarity", "EncodingState")
    states = EncodingState.objects.filter(content_type=_product_type(apps))
    for state in states.iterator(chunk_size=5000):
        Product.objects.filter(pk=state.object_id).update(
            **{column: getattr(state, field) for column, field in COLUMNS.items()}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("catalog", "0005_variant_group"),
        ("similarity", "0006_encodingstate"),
    ]

    operations = [
        migrations.RunPython(to_states, from_states),
        *[migrations.RemoveField(model_name="product", name=column) for column in COLUMNS],
    ]
