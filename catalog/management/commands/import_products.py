"""``manage.py import_products catalog.csv``: bring a shop's catalog in."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.importer import COLUMNS, count_rows, import_csv


class Command(BaseCommand):
    help = f"Import products from a UTF-8 CSV with header {','.join(COLUMNS)} (upsert by sku)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("csv_path", type=Path)
        parser.add_argument("--currency", help="ISO currency of the prices (default: CATALOG_DEFAULT_CURRENCY)")
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(self, *args, csv_path: Path, currency: str | None, no_progress: bool, **options) -> None:
        if not csv_path.is_file():
            raise CommandError(f"{csv_path}: no such file")
        bar = tqdm(total=count_rows(csv_path), unit="row", disable=no_progress, desc="import")
        try:
            report = import_csv(csv_path, currency=currency, progress=lambda: bar.update())
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bar.close()
        if report.ignored_columns:
            self.stderr.write(self.style.WARNING(f"ignored extra columns: {', '.join(report.ignored_columns)}"))
        for line, sku, reason in report.skipped:
            self.stderr.write(self.style.WARNING(f"line {line} (sku {sku or '-'}): skipped, {reason}"))
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.total} rows: {report.created} created, {report.updated} updated, "
                f"{report.unchanged} unchanged, {len(report.skipped)} skipped"
            )
        )
