"""Encoders moved from ``similarity.encoders`` to ``similarity.ml.encoders``: rewrite the
dotted paths stored in each vector space's spec (and its key, a hash of the spec), so that
existing vectors keep serving instead of being rebuilt for a configuration that is the same."""
from __future__ import annotations

import hashlib
import json

from django.db import migrations

OLD, NEW = "similarity.encoders.", "similarity.ml.encoders."


def _key(spec: dict) -> str:
    # The same fingerprint as similarity.indexing.spaces.spec_key, frozen here.
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _moved(old: str, new: str):
    def rewrite(apps, schema_editor) -> None:
        VectorSpace = apps.get_model("similarity", "VectorSpace")
        for space in VectorSpace.objects.all():
            spec = dict(space.spec)
            changed = False
            for field in ("image_encoder", "text_encoder"):
                path = spec.get(field) or ""
                if path.startswith(old):
                    spec[field] = new + path[len(old):]
                    changed = True
            if changed:
                space.spec, space.key = spec, _key(spec)
                space.save(update_fields=["spec", "key"])

    return rewrite


class Migration(migrations.Migration):
    dependencies = [("similarity", "0004_clusters")]

    operations = [migrations.RunPython(_moved(OLD, NEW), _moved(NEW, OLD))]
