"""``manage.py similarity_reindex``: (re-)encode all, missing, failed, one category's or
recently changed rows, through the workers or (``--sync``) in this process."""
from __future__ import annotations

import datetime
import math
import time

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from similarity.conf import similarity_settings
from similarity.indexing.queue import enqueue_encode
from similarity.indexing.status import encoding_status
from similarity.indexing.writer import encode_objects
from similarity.management.commands._options import model_label
from similarity.models import EmbeddingStatus, EncodingState
from similarity.registry import get_adapter


class Command(BaseCommand):
    help = (
        "Encode rows again: all of them (default), only those without vectors, only failed ones, "
        "one category's or those changed since a date. Sends them to the workers, or encodes "
        "in this process with --sync (no broker needed)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--missing", action="store_true", help="only rows that are not ready")
        which.add_argument("--failed", action="store_true", help="only rows whose encoding failed")
        parser.add_argument("--category", help='only this category and below, e.g. "数码 > 手机"')
        parser.add_argument("--since", help="only rows changed at or after this date or datetime (ISO 8601)")
        parser.add_argument("--force", action="store_true", help="encode even rows whose content is unchanged")
        parser.add_argument("--sync", action="store_true", help="encode here, in batches, without broker or worker")
        parser.add_argument("--wait", action="store_true", help="after sending, show progress until the workers are done")
        parser.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")

    def handle(self, *args, **opts) -> None:
        label = model_label(opts["model"])
        pks = list(self.selection(label, opts).order_by("pk").values_list("pk", flat=True))
        if not pks:
            self.stdout.write("Nothing to encode.")
            return
        if opts["sync"]:
            self.encode_here(label, pks, opts["force"])
            return
        enqueue_encode(label, pks, force=opts["force"])
        tasks = math.ceil(len(pks) / int(similarity_settings.BATCH_SIZE))
        self.stdout.write(f"{len(pks):,} rows marked pending; {tasks:,} tasks sent to queue {similarity_settings.QUEUE!r}.")
        if opts["wait"]:
            self.wait(label, pks, opts["timeout"])

    def selection(self, label: str, opts: dict):
        model = apps.get_model(label)
        queryset = model._default_manager.all()
        if opts["missing"]:
            queryset = queryset.exclude(similarity_states__status=EmbeddingStatus.READY)
        elif opts["failed"]:
            queryset = queryset.filter(similarity_states__status=EmbeddingStatus.FAILED)
        try:
            if opts["category"]:
                queryset = get_adapter(model).filter_category(queryset, opts["category"])
            if opts["since"]:
                queryset = get_adapter(model).filter_changed_since(queryset, parse_when(opts["since"]))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        return queryset

    def encode_here(self, label: str, pks: list, force: bool) -> None:
        size = int(similarity_settings.BATCH_SIZE)
        totals = {"encoded": 0, "skipped": 0, "failed": 0}
        with tqdm(total=len(pks), unit="row", desc="encoding", file=self.stderr) as bar:
            for start in range(0, len(pks), size):
                report = encode_objects(label, pks[start : start + size], force=force)
                totals["encoded"] += len(report.encoded)
                totals["skipped"] += len(report.skipped)
                totals["failed"] += len(report.failed)
                bar.update(min(size, len(pks) - start))
        self.stdout.write(
            f"{totals['encoded']:,} encoded, {totals['skipped']:,} unchanged, {totals['failed']:,} failed "
            f"(see similarity_status / the admin for the reasons)."
        )

    def wait(self, label: str, pks: list, timeout: float) -> None:
        states = EncodingState.objects.for_model(label)
        started = time.monotonic()
        done = 0
        with tqdm(total=len(pks), unit="row", desc="workers", file=self.stderr) as bar:
            while done < len(pks):
                pending = 0
                for start in range(0, len(pks), 10_000):
                    chunk = pks[start : start + 10_000]
                    pending += states.filter(object_id__in=chunk, status=EmbeddingStatus.PENDING).count()
                bar.update(len(pks) - pending - done)
                done = len(pks) - pending
                if timeout and time.monotonic() - started > timeout:
                    raise CommandError(f"{pending:,} rows still pending after {timeout:.0f} s; is a worker running?")
                if done < len(pks):
                    time.sleep(0.5)
        elapsed = time.monotonic() - started
        status = encoding_status(label, with_queue=False)
        self.stdout.write(
            f"Done in {elapsed:.1f} s ({len(pks) / max(elapsed, 1e-9):.1f} rows/s). "
            f"ready {status.by_status.get('ready', 0):,} · failed {status.by_status.get('failed', 0):,}"
        )


def parse_when(value: str) -> datetime.datetime:
    """Parse an ISO date or datetime; a naive value is in the current time zone."""
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since {value!r} is not an ISO date (2026-11-28) or datetime (2026-11-28T09:30).")
        when = datetime.datetime.combine(day, datetime.time.min)
    return timezone.make_aware(when) if timezone.is_naive(when) else when
