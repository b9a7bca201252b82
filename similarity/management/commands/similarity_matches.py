"""``manage.py similarity_matches``: fit the same-product scorer and fill the review queue.

What the periodic job does, on demand: fit the scorer on the staff's decisions (the default
scorer while there are too few), then score every active item against its nearest items and
store the likely duplicates for review in the admin ("Possible duplicates").
"""
from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from similarity.management.commands._options import model_label
from similarity.matches.fitting import fit_matcher
from similarity.matches.scan import scan


class Command(BaseCommand):
    help = "Fit the same-product scorer on the staff's decisions and store likely duplicates for review."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument("--no-scan", action="store_true", help="fit only; do not look for duplicates")

    def handle(self, *args, **opts) -> None:
        model = apps.get_model(model_label(opts["model"]))
        try:
            _, _, report = fit_matcher(model)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if report["trained"]:
            v = report["validation"]
            self.stdout.write(
                f"scorer: {report['kind']} trained on {report['pairs']} decisions, threshold {report['threshold']} "
                f"(held-back {report['validation_pairs']}: precision {v['precision']:.3f}, recall {v['recall']:.3f}, F1 {v['f1']:.3f})"
            )
        else:
            self.stdout.write(f"scorer: the untrained default ({report['why']}), threshold {report['threshold']}")
        if opts["no_scan"]:
            return
        with tqdm(desc="scan", unit="item", disable=None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            found = scan(model, progress=progress)
        self.stdout.write(f"{found['items']} items scanned: {found['pairs']} likely duplicate pairs to review")
