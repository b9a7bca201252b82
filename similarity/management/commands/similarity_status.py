"""``manage.py similarity_status``: counts per status and version, queue depth, oldest pending."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from similarity.indexing.status import encoding_status
from similarity.management.commands._options import model_label


class Command(BaseCommand):
    help = "Show how many rows are ready, pending and failed, by encoder version; queue depth; oldest pending row."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--model", help="app_label.Model (default: the first registered model)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **opts) -> None:
        status = encoding_status(model_label(opts["model"]))
        if opts["json"]:
            self.stdout.write(json.dumps(status.as_dict(), ensure_ascii=False, indent=2))
            return
        s = status.by_status
        self.stdout.write(f"{status.model_label}: {status.total:,} rows")
        self.stdout.write(
            f"  ready {s.get('ready', 0):,} · pending {s.get('pending', 0):,} "
            f"({status.claimed:,} claimed by workers) · failed {s.get('failed', 0):,}"
        )
        if status.oldest_pending is not None:
            self.stdout.write(f"  oldest pending: {status.oldest_pending:%Y-%m-%d %H:%M:%S} ({status.oldest_pending_age:.0f} s ago)")
        depth = "unknown (broker not reachable)" if status.queue_depth is None else f"{status.queue_depth:,} tasks waiting"
        self.stdout.write(f"  queue {status.queue!r}: {depth}")
        for space in status.spaces:
            self.stdout.write(
                f"  vector space {space['key']} ({space['state']}): {space['vectors']:,} rows, "
                f"coverage {space['coverage']:.1%} (switches at {space['switch_at']:.0%}); "
                f"dims {space['dims']}; learned model {space['learned'] or '-'}"
            )
