"""``manage.py import_products catalog.csv``: bring a shop's catalog in."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from catalog.csvfile import DEFAULT_ENCODING, count_rows
from catalog.importer import COLUMNS, import_csv


class Command(BaseCommand):
    help = f"Import products from a CSV with header {','.join(COLUMNS)} (upsert by sku)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("csv_path", type=Path)
        parser.add_argument("--currency", help="ISO currency of the prices (default: CATALOG_DEFAULT_CURRENCY)")
        parser.add_argument(
            "--encoding",
            default=DEFAULT_ENCODING,
            help=f"text encoding of the CSV (default: {DEFAULT_ENCODING}; Chinese exports are often gb18030)",
        )
        parser.add_argument(
            "--images-root",
            type=Path,
            help="folder the image paths are relative to; photos outside it are refused (default: the CSV's folder)",
        )
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    def handle(
        self,
        *args,
        csv_path: Path,
        currency: str | None,
        encoding: str,
        images_root: Path | None,
        no_progress: bool,
        **options,
    ) -> None:
        if not csv_path.is_file():
            raise CommandError(f"{csv_path}: no such file")
        try:
            bar = tqdm(total=count_rows(csv_path, encoding), unit="row", disable=no_progress, desc="import")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        try:
            report = import_csv(
                csv_path, currency=currency, encoding=encoding, images_root=images_root, progress=lambda: bar.update()
            )
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
