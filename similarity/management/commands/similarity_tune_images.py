"""``manage.py similarity_tune_images``: teach the image network the catalog's own products.

Fine-tunes EfficientNet-Lite0 on the registered model's photos (one class per product, views
synthesised from its photos: ``similarity.ml.encoders.catalog_tuning``) and writes the weights
into MODELS_DIR. Pointing ``SIMILARITY['IMAGE_WEIGHTS']`` at the file makes the workers encode
catalog photos and photo searches with it (the encoder version changes, so the catalog is
re-encoded into a new vector space). Imports torch: run it where the workers run.
"""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from similarity.conf import similarity_settings
from similarity.indexing.encoding import decode_async, read
from similarity.indexing.rows import every_row
from similarity.management.commands._options import model_label
from similarity.registry import get_adapter


class Command(BaseCommand):
    help = (
        "Fine-tune the image network to tell the catalog's products apart from their own photos "
        "(synthetic shop-like views; a few minutes on CPU for 100 products, use a GPU for thousands) "
        "and save it into MODELS_DIR; then set SIMILARITY['IMAGE_WEIGHTS'] to the printed path."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument("--out", help="weights file to write (default: MODELS_DIR/images-<model>-<time>.pth)")
        parser.add_argument("--views", type=int, help="synthetic views per product (default 48)")

    def handle(self, *args, **opts) -> None:
        from django.apps import apps
        from django.utils.module_loading import import_string

        from similarity.ml.encoders.catalog_tuning import CatalogTuningConfig, save_tuned, tune_on_catalog
        from similarity.ml.encoders.image import EfficientNetLiteImageEncoder

        s = similarity_settings
        encoder = import_string(s.IMAGE_ENCODER)
        if not (isinstance(encoder, type) and issubclass(encoder, EfficientNetLiteImageEncoder)):
            raise CommandError(f"similarity_tune_images tunes EfficientNet-Lite0; IMAGE_ENCODER is {s.IMAGE_ENCODER}.")
        label = model_label(opts["model"])
        out = opts["out"] or (
            Path(s.MODELS_DIR) / f"images-{label.lower()}-{time.strftime('%Y%m%d-%H%M%S')}.pth" if s.MODELS_DIR else None
        )
        if out is None:
            raise CommandError("Set SIMILARITY['MODELS_DIR'] to a writable folder, or pass --out.")
        adapter = get_adapter(apps.get_model(label))
        items = [read(row, adapter) for row in every_row(adapter)]
        decode_async(items)()
        photos = [item.image for item in items if item.image is not None]
        if len(photos) < 2:
            raise CommandError(f"{label} has {len(photos)} usable photos; tuning needs two products with photos at least.")
        config = CatalogTuningConfig(**({"views": opts["views"]} if opts["views"] else {}))
        self.stdout.write(f"tuning on {len(photos)} product photos ({len(items) - len(photos)} rows without a usable photo)")
        started = time.perf_counter()

        def progress(step: int, steps: int, loss: float) -> None:
            if step % 10 == 0 or step == steps:
                self.stdout.write(f"step {step}/{steps} loss {loss:.3f} ({time.perf_counter() - started:.0f}s)")

        model = tune_on_catalog(photos, s.IMAGE_WEIGHTS, config, device=s.DEVICE, progress=progress)
        path = save_tuned(model, out)
        self.stdout.write(f"saved to {path}\nSet SIMILARITY['IMAGE_WEIGHTS'] = {str(path)!r} and restart the workers.")
