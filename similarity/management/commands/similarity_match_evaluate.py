"""``manage.py similarity_match_evaluate FOLDER``: same-product matching on a labelled pairs set.

FOLDER holds ``train.txt``, ``valid.txt`` and ``test.txt`` in the Magellan / Ditto format
(``COL attr VAL value ... <TAB> COL attr VAL value ... <TAB> 0/1``). The command imports
every distinct record as an item of the registered model (a throw-away catalog: it refuses a
model that already has items), encodes them with the configured encoders in this process,
stores the train pairs as staff decisions and fits the scorer through the code the app
serves (``similarity.matches``: train pairs to fit, valid pairs to choose the scorer and its
threshold), then scores the test pairs the same way and reports precision, recall and F1,
for the trained scorer and the untrained default. The items are deleted at the end unless
``--keep``.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import models, transaction

from similarity.indexing.writer import encode_objects
from similarity.management.commands._options import model_label
from similarity.matches.decisions import decide
from similarity.matches.fitting import fit_matcher
from similarity.matches.scoring import PairRows
from similarity.ml.matching.pairs import distinct_records, read_pairs, record_key, to_listing
from similarity.ml.matching.scorer import default_scorer
from similarity.ml.matching.thresholds import best_f1_threshold, precision_recall_f1
from similarity.models import MatchStatus, VectorSpace
from similarity.registry import get_adapter

SPLITS = ("train", "valid", "test")


class Command(BaseCommand):
    help = "Evaluate same-product matching on a Magellan/Ditto pairs folder (train/valid/test) in a throw-away catalog."

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path, help="folder with train.txt, valid.txt and test.txt")
        parser.add_argument("--model", help="app_label.Model to import into (default: the first registered model)")
        parser.add_argument("--precision", type=float, help="choose the threshold for this precision on valid (default: best F1)")
        parser.add_argument("--keep", action="store_true", help="keep the imported items (default: delete them at the end)")
        parser.add_argument("--output", type=Path, help="a JSON file for the report")

    def handle(self, *args, folder: Path, precision: float | None, keep: bool, **opts) -> None:
        label = model_label(opts["model"])
        model = apps.get_model(label)
        missing = [name for name in SPLITS if not (folder / f"{name}.txt").is_file()]
        if missing:
            raise CommandError(f"{folder} lacks {', '.join(f'{m}.txt' for m in missing)} (Magellan/Ditto pairs).")
        if model._default_manager.exists():
            raise CommandError(
                f"{label} already has items: run this on an empty catalog (a fresh database, e.g. "
                "VAR_DIR=$(mktemp -d) with the embedded one), so that nothing of a shop is mixed in or deleted."
            )
        try:
            splits = {name: read_pairs(folder / f"{name}.txt") for name in SPLITS}
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        started = time.monotonic()
        records = distinct_records([pair for pairs in splits.values() for pair in pairs])
        keys = self._import(model, records)
        try:
            report = self._evaluate(model, splits, keys, precision)
        finally:
            if not keep:
                model._default_manager.filter(pk__in=list(keys.values())).delete()
        report.update({"folder": str(folder), "records": len(records), "seconds": round(time.monotonic() - started, 1)})
        self._print(report)
        if opts["output"]:
            opts["output"].write_text(json.dumps(report, indent=2), encoding="utf-8")

    def _import(self, model: type, records: dict[str, Any]) -> dict[str, Any]:
        """Create one item per record (title, description, brand, price fields) and encode them."""
        adapter = get_adapter(model)
        description = next((f for f in adapter.text_fields if f != adapter.brand_field), None)
        items = []
        for key, record in records.items():
            listing = to_listing(record)
            values = {adapter.title_field: _fit(model, adapter.title_field, listing.title)}
            if adapter.identifier_field:
                values[adapter.identifier_field] = key
            if description:
                values[description] = _fit(model, description, listing.description)
            if adapter.brand_field:
                values[adapter.brand_field] = _fit(model, adapter.brand_field, listing.brand)
            if adapter.price_field:
                values[adapter.price_field] = _price(model, adapter.price_field, listing.price)
            items.append(model(**values))
        try:
            with transaction.atomic():
                created = model._default_manager.bulk_create(items, batch_size=1000)
        except Exception as exc:  # a host model with other required fields
            raise CommandError(f"cannot create {model._meta.label} items from the records: {exc}") from None
        pks = [obj.pk for obj in created]
        self.stderr.write(f"imported {len(pks)} records; encoding ...")
        for start in range(0, len(pks), 256):
            encode_objects(model._meta.label, pks[start : start + 256])
        return {key: obj.pk for key, obj in zip(records, created)}

    def _evaluate(self, model: type, splits: dict, keys: dict[str, Any], precision: float | None) -> dict[str, Any]:
        def pairs(name: str) -> list[tuple[Any, Any, int]]:
            return [(keys[record_key(p.left)], keys[record_key(p.right)], int(p.label)) for p in splits[name]]

        train, valid, test = pairs("train"), pairs("valid"), pairs("test")
        for a, b, same in train:  # stored as the staff's decisions: what the scorer trains on in a shop
            if a != b:
                decide(model, a, b, MatchStatus.SAME if same else MatchStatus.DIFFERENT)
        self.stderr.write(f"fitting on {len(train)} train pairs, choosing on {len(valid)} valid pairs ...")
        scorer, stats, fit_report = fit_matcher(model, validation=[p for p in valid if p[0] != p[1]], precision=precision)
        rows = PairRows(model, VectorSpace.active_for(model._meta.label), stats)
        test_rows = rows.rows([(a, b) for a, b, _ in test])
        labels = np.array([same for *_, same in test])
        default = default_scorer()
        valid_default = default.probabilities(rows.rows([(a, b) for a, b, _ in valid]))
        valid_labels = np.array([same for *_, same in valid])
        return {
            "pairs": {"train": len(train), "valid": len(valid), "test": len(test)},
            "fit": fit_report,
            "test": {
                "trained": precision_recall_f1(scorer.probabilities(test_rows), labels, scorer.threshold),
                "default at 0.5": precision_recall_f1(default.probabilities(test_rows), labels, default.threshold),
                "default, threshold from valid": precision_recall_f1(
                    default.probabilities(test_rows), labels, best_f1_threshold(valid_default, valid_labels)
                ),
            },
        }

    def _print(self, report: dict[str, Any]) -> None:
        self.stdout.write(
            f"{report['folder']}: {report['records']} records; pairs train {report['pairs']['train']}, "
            f"valid {report['pairs']['valid']}, test {report['pairs']['test']}; scorer {report['fit'].get('kind')} "
            f"(threshold {report['fit']['threshold']}); {report['seconds']} s"
        )
        self.stdout.write("| scorer | precision | recall | F1 |\n|---|---|---|---|")
        for name, scores in report["test"].items():
            self.stdout.write(f"| {name} | {scores['precision']:.3f} | {scores['recall']:.3f} | {scores['f1']:.3f} |")


def _fit(model: type, name: str, value: str) -> str:
    """``value`` cut to the field's length."""
    try:
        field = model._meta.get_field(name)
    except Exception:
        return value
    limit = getattr(field, "max_length", None)
    return value[:limit] if limit else value


def _price(model: type, name: str, value: float | None) -> Any:
    """``value`` as the price field takes it (None where it does not fit)."""
    if value is None:
        return None
    field = model._meta.get_field(name)
    if isinstance(field, models.DecimalField):
        try:
            number = Decimal(str(round(value, field.decimal_places)))
        except InvalidOperation:
            return None
        return number if number.adjusted() < field.max_digits - field.decimal_places else None
    return value
