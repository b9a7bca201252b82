"""``manage.py similarity_train``: train the attention fusion on the shop's own categories."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from similarity.learning.progress import shown_scores
from similarity.learning.versions import train_new_version
from similarity.management.commands._options import model_label
from similarity.ml.evaluation import format_score


class Command(BaseCommand):
    help = (
        "Train a learned fusion model on the products' categories, evaluate it on held-out "
        "products and activate it if it beats the model in use (then re-encode everything)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model to train on (default: the first registered model)")
        parser.add_argument("--level", type=int, help="category level of the labels (default SIMILARITY['LABEL_LEVEL'])")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--set", action="append", default=[], metavar="NAME=JSON", help="any TrainConfig field, e.g. --set lr=0.002")
        parser.add_argument(
            "--finetune-image-blocks", type=int, metavar="N",
            help="fine-tune the last N of the 16 EfficientNet-Lite0 blocks first (16: the whole network, 0: off; "
            "default SIMILARITY['IMAGE_FINETUNE']); meant for a GPU",
        )
        parser.add_argument(
            "--finetune-set", action="append", default=[], metavar="NAME=JSON",
            help="any FinetuneConfig field, e.g. --finetune-set epochs=30",
        )
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--force-activate", action="store_true", help="activate even if it does not beat the active model")
        group.add_argument("--no-activate", action="store_true", help="register the model without activating it")

    def handle(self, *args, **opts) -> None:
        overrides = {k: opts[k] for k in ("epochs", "seed") if opts[k] is not None}
        overrides.update(_fields(opts["set"]))
        finetune = _fields(opts["finetune_set"])
        if opts["finetune_image_blocks"] is not None:
            finetune["blocks"] = opts["finetune_image_blocks"]
        activate = "force" if opts["force_activate"] else "never" if opts["no_activate"] else "auto"
        # One bar for the whole run: its steps are both trainings' epochs (their limits until
        # early stopping decides) and the closing stages, so the estimate covers the run.
        bar = tqdm(desc="reading the catalog", unit="step", total=None)

        def progress(epoch: int, point: dict) -> None:
            bar.total = point["steps"]
            bar.set_description(f"{point['stage']} epoch {epoch}" if point["stage"] in ("fit", "refit") else point["stage"])
            bar.set_postfix({k: f"{v:.3f}" for k, v in shown_scores(point).items()}, refresh=False)
            bar.update(point["step"] - bar.n)

        try:
            version = train_new_version(
                model_label(opts["model"]), level=opts["level"], overrides=overrides, finetune=finetune,
                activate=activate, progress=progress,
            )
        except (ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        m, b = version.metrics, version.baseline_metrics
        self.stdout.write(
            f"{version.name}: held-out level-{version.label_level} P@1 {format_score(m.get('p@1'))}, "
            f"P@10 {format_score(m.get('p@10'))}, mAP@10 {format_score(m.get('map@10'))} "
            f"({m.get('queries') or 0} labelled held-out products)\n"
            f"compared with {b.get('model')}: P@10 {format_score(b.get('p@10'))}\n"
            f"checkpoint: {version.path}"
        )
        tuned = m.get("image_finetune")
        if tuned:
            scores = tuned["image_only_held_out"]
            self.stdout.write(
                f"image network fine-tuned ({tuned['config']['blocks']} blocks, {tuned['epochs']} epochs, "
                f"{tuned['seconds']}s on {tuned['device']}): image-only held-out P@10 "
                f"{format_score(scores['frozen_p@10'])} -> {format_score(scores['tuned_p@10'])}; weights {tuned['weights']}"
            )
        style = self.style.SUCCESS if version.is_active else self.style.WARNING
        self.stdout.write(style("activated; every product is being re-encoded" if version.is_active else version.notes))


def _fields(items: list[str]) -> dict[str, object]:
    """Parse NAME=JSON pairs (a value that is not JSON stays a string)."""
    fields: dict[str, object] = {}
    for item in items:
        name, _, raw = item.partition("=")
        try:
            fields[name] = json.loads(raw)
        except json.JSONDecodeError:
            fields[name] = raw
    return fields
