"""The encoding state of registered items moves into a table of the app's own: the host's
model gets no column (see catalog's migration 0006 for the demo's data)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("similarity", "0005_encoders_moved_to_ml"),
    ]

    operations = [
        migrations.CreateModel(
            name="EncodingState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("object_id", models.BigIntegerField()),
                ("status", models.CharField(choices=[("pending", "pending"), ("ready", "ready"), ("failed", "failed")], default="pending", max_length=16, verbose_name="embedding status")),
                ("error", models.TextField(blank=True, verbose_name="embedding error")),
                ("modalities", models.CharField(blank=True, choices=[("image+text", "image + text"), ("text", "text only (no image)"), ("image", "image only (no text)")], max_length=16, verbose_name="encoded from")),
                ("content_hash", models.CharField(blank=True, max_length=64, verbose_name="content hash")),
                ("encoded_at", models.DateTimeField(blank=True, null=True, verbose_name="encoded at")),
                ("requested_at", models.DateTimeField(blank=True, null=True, verbose_name="encoding requested")),
                ("claim", models.CharField(blank=True, max_length=64)),
                ("claimed_at", models.DateTimeField(blank=True, null=True)),
                ("content_type", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="contenttypes.contenttype")),
            ],
            options={
                "verbose_name": "encoding state",
                "verbose_name_plural": "encoding states",
                "indexes": [models.Index(fields=["content_type", "status", "requested_at"], name="similarity_state_queue")],
                "constraints": [models.UniqueConstraint(fields=("content_type", "object_id"), name="similarity_one_state_per_item")],
            },
        ),
    ]
