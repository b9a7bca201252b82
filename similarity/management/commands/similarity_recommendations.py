"""``manage.py similarity_recommendations``: evaluate recommendations from histories.

Histories of ``--size`` products of one leaf category from one split (the sku-hash test split
by default; ``--split train`` to choose settings) ask the served recommendations at each
diversity and, to compare, similar items of their last product
(``similarity.learning.recommendations``). Prints a markdown table; ``--output`` writes JSON too.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from similarity.learning.recommendations import DIVERSITIES, evaluate_recommendations
from similarity.management.commands._options import model_label
from similarity.ml.evaluation import format_score, json_safe


class Command(BaseCommand):
    help = "Evaluate recommendations from histories of one leaf category against similar items."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument("--size", type=int, default=3, help="products per history (default 3)")
        parser.add_argument("--histories", type=int, default=200, help="how many histories at most (default 200)")
        parser.add_argument("--split", choices=["test", "train"], default="test", help="where histories come from")
        parser.add_argument(
            "--diversities", default=",".join(f"{d:g}" for d in DIVERSITIES), help="comma-separated values from 0 to 1"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--output", type=Path, help="a JSON file for the report")

    def handle(self, *args, **opts) -> None:
        try:
            diversities = tuple(float(x) for x in opts["diversities"].split(",") if x.strip())
        except ValueError:
            raise CommandError(f"--diversities {opts['diversities']!r}: give numbers from 0 to 1, comma-separated.") from None
        if not diversities or not all(0 <= d <= 1 for d in diversities):
            raise CommandError("--diversities: give numbers from 0 to 1, comma-separated.")
        if opts["size"] < 1 or opts["histories"] < 1:
            raise CommandError("--size and --histories must be at least 1.")
        try:
            report = evaluate_recommendations(
                model_label(opts["model"]), size=opts["size"], limit=opts["histories"], split=opts["split"],
                diversities=diversities, seed=opts["seed"], progress=self.stderr.write,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if not report["histories"]:
            raise CommandError(
                f"No leaf category has {opts['size']} categorised products in the {opts['split']} split: nothing to ask."
            )
        self.stdout.write(
            f"{report['histories']} histories of {report['history_size']} products ({report['split']} split, "
            f"{report['leaves']} leaf categories), space {report['space']}\n"
        )
        self.stdout.write("| list | leaf P@1 | leaf P@10 | intra-list similarity |\n|---|---|---|---|")
        for name, row in report["rows"].items():
            self.stdout.write(f"| {name} | {format_score(row['p@1'])} | {format_score(row['p@10'])} | {format_score(row.get('ils'))} |")
        if opts["output"]:
            opts["output"].write_text(json.dumps(json_safe(report), indent=2, ensure_ascii=False), encoding="utf-8")
