"""``manage.py similarity_fit``: fit the category classifier and the fusion weights on the
categorised items (what the periodic clustering job also does)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from similarity.indexing.spaces import ensure_configured_space
from similarity.learning.classifier import fit_classifier, read_stored
from similarity.learning.weights import fit_fusion_weights
from similarity.management.commands._options import model_label
from similarity.models import VectorSpace


class Command(BaseCommand):
    help = (
        "Fit one calibrated category classifier per category level on the categorised items' stored "
        "text and image vectors (uncategorised items' suggestions then come from it), and choose the "
        "fixed fusion's image/text weights on them (FIT_FUSION_WEIGHTS). The periodic clustering job "
        "does the same."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument(
            "--train-split-only", action="store_true",
            help="use no category of the held-out split (the sku-hash test split), as training does: "
            "for evaluating with similarity_evaluate afterwards",
        )

    def handle(self, *args, **opts) -> None:
        label = model_label(opts["model"])
        space = VectorSpace.active_for(label)
        if space is None:
            raise CommandError(f"{label} has no active vectors yet: encode the catalog first.")
        stored = read_stored(label, space)  # once, for both fits
        held = stored.held_out_keys() if opts["train_split_only"] else None
        classifier = fit_classifier(label, exclude=held, stored=stored)
        if classifier is None:
            raise CommandError(f"{label} has too few categorised items with vectors (10 per level at least).")
        for level, fitted in sorted(classifier.levels.items()):
            m = fitted.metrics
            self.stdout.write(
                f"level {level}: {len(fitted.classes)} categories, {m['rows']} items, out-of-fold top-1 "
                f"{m['out_of_fold_top1']:.3f}, ECE {m['ece_before']:.3f} -> {m['ece']:.3f} (temperature {fitted.temperature:.2f})"
            )
        from similarity.conf import similarity_settings

        if not similarity_settings.FIT_FUSION_WEIGHTS:
            return
        weights = fit_fusion_weights(label, exclude=held, stored=stored)
        if weights is None:
            self.stdout.write("fusion weights: too few categorised items with a photo and text to choose them")
            return
        scores = ", ".join(f"{share}: {p:.3f}" for share, p in weights["p@10_by_image_share"].items())
        self.stdout.write(
            f"fusion weights: image {weights['image_weight']} / text {weights['text_weight']} "
            f"(leave-one-out P@10 by image share: {scores}; in use {weights['in_use']}: {weights['in_use_p@10']:.3f})"
        )
        space = ensure_configured_space(label)
        if space.state == "building":
            self.stdout.write("new weights: the vector space is rebuilt in the background from the stored vectors")

