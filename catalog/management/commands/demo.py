"""``manage.py demo``: a complete local shop in one command (what `make demo` runs).

Migrates, creates an admin login, imports the bundled demo catalog (or ``--catalog``),
starts the web server and two real Celery workers as child processes (encoding and training
with beat; search queries on a worker of their own, so that a re-index or a training run
never holds up a photo search), waits until every product is encoded, prints the URLs and
keeps serving until Ctrl-C. A child that dies is started again (``catalog.management.supervisor``).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

import similarity
from catalog.management.supervisor import ChildFailed, Supervisor
from catalog.models import Product
from similarity.conf import similarity_settings
from similarity.models import EmbeddingStatus

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "demo" / "grocery-iconic" / "products.csv"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def worker_commands() -> dict[str, list[str]]:
    """The demo's Celery workers by name: one encodes and trains (and runs beat, the
    sweeper), one answers search queries only (one process encoding a batch cannot answer
    a query meanwhile)."""
    s = similarity_settings
    # Gossip, mingle and heartbeats serve nothing here and, on the filesystem broker, leave a
    # message file per event for every worker that ever ran.
    celery = [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1", "-l", "INFO",
              "--without-gossip", "--without-mingle", "--without-heartbeat"]
    return {
        "worker": [*celery, "-Q", f"{s.QUEUE},{s.TRAINING_QUEUE}", "-B", "-n", "demo@%h"],
        # In-process (solo): a query is answered as soon as it is read, with no pool round trip.
        "query worker": [*celery, "-P", "solo", "-Q", s.QUERY_QUEUE or s.QUEUE, "-n", "demo-query@%h"],
    }


def supervise(
    logs: Path, port: int | None, *, say: Callable[[str], None] = print, requeue: Callable[[], None] | None = None
) -> Supervisor:
    """The demo's children, not yet started: its workers and (unless ``port`` is None) the
    web server; ``requeue`` runs when the encoding worker was restarted."""
    children = Supervisor(settings.BASE_DIR, say=say)
    for name, command in worker_commands().items():
        encoding = name == "worker"
        children.add(
            name, command, logs / f"{name.replace(' ', '-')}.log",
            on_restart=requeue if encoding else None,
            # Re-indexing and training yield the CPU to photo searches on one machine.
            nice=10 if encoding else 0,
        )
    if port is not None:
        web = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
        children.add("web server", web, logs / "web.log", env={"DJANGO_DEBUG": "1", "SERVE_MEDIA": "1"})
    return children


class Command(BaseCommand):
    help = "Run the demo shop: database, workers, web server and an encoded demo catalog."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--catalog", type=Path, default=DEMO_CATALOG, help="catalog CSV to import")
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument("--timeout", type=int, default=1800, help="seconds to wait for encoding")
        parser.add_argument("--no-serve", action="store_true", help="exit once the catalog is encoded")

    def handle(self, *args, catalog: Path, port: int, timeout: int, no_serve: bool, **options) -> None:
        started = time.monotonic()
        if not catalog.is_file():
            raise CommandError(f"{catalog}: no such catalog file")
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_admin()
        self.stdout.write(f"Importing {catalog} ...")
        call_command("import_products", str(catalog), stdout=self.stdout, stderr=self.stderr)
        logs = settings.VAR_DIR / "log"
        logs.mkdir(parents=True, exist_ok=True)
        # A restarted encoding worker's rows are sent again (its tasks died with it).
        children = supervise(logs, port, say=self._warn, requeue=self._requeue_pending)
        signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops the children too
        signal.signal(signal.SIGHUP, _raise_interrupt)  # so does closing the terminal
        try:
            children.start()
            self._requeue_pending()
            self._wait_encoded(children, timeout)
            self._cluster()
            self._print_urls(port, time.monotonic() - started, serving=not no_serve)
            if no_serve:
                return
            while True:
                children.poll()
                time.sleep(1)
        except ChildFailed as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo ...")
        finally:
            children.stop()

    def _warn(self, line: str) -> None:
        self.stdout.write(self.style.WARNING(line))

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if not User.objects.filter(username=ADMIN_USER).exists():
            User.objects.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)

    def _requeue_pending(self) -> None:
        """Send rows left pending by an interrupted earlier run, or by the encoding worker
        that just died: every process of it is gone, so its claims are released at once."""
        pending = Product.objects.exclude(similarity_states__status__in=[EmbeddingStatus.READY, EmbeddingStatus.FAILED])
        pks = list(pending.values_list("pk", flat=True))
        similarity.enqueue_encode("catalog.Product", pks)

    def _wait_encoded(self, children: Supervisor, timeout: int) -> None:
        began, deadline, last = time.monotonic(), time.monotonic() + timeout, None
        todo = similarity.encoding_status("catalog.Product", with_queue=False).by_status[EmbeddingStatus.PENDING]
        while True:
            counts = similarity.encoding_status("catalog.Product", with_queue=False).by_status
            if counts != last:
                self.stdout.write("  encoding: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
                last = counts
            if counts[EmbeddingStatus.PENDING] == 0:
                seconds = time.monotonic() - began
                if todo:
                    self.stdout.write(
                        f"  encoded {todo} products in {seconds:.1f}s "
                        f"({todo / seconds:.1f} products/s, worker start-up included)"
                    )
                return
            children.poll()
            if time.monotonic() > deadline:
                raise CommandError(f"products still pending after {timeout}s; see var/log/worker.log")
            time.sleep(1)

    def _cluster(self) -> None:
        """Find category clusters once, so the review page has something to show: on the
        worker, in the background (the admin shows how far it is); the URLs come at once."""
        call_command("similarity_cluster", model="catalog.Product", run_async=True, stdout=StringIO())
        self.stdout.write("  clustering the catalog in the background: Similarity > Category clusters shows its progress")

    def _print_urls(self, port: int, seconds: float, serving: bool) -> None:
        base = f"http://127.0.0.1:{port}"
        first = Product.objects.filter(similarity_states__status=EmbeddingStatus.READY).order_by("pk").first()
        lines = [
            "",
            f"Demo ready in {seconds:.0f}s: {Product.objects.count()} products.",
            f"  Admin:  {base}/admin/   (login {ADMIN_USER} / {ADMIN_PASSWORD})",
            f"  API:    {base}/api/products/   (docs: {base}/api/docs/)",
            f"  Shop:   {base}/shop/   (a storefront page: recommendations for the basket)",
            f"  Category clusters to review: {base}/admin/similarity/categorycluster/",
        ]
        if first is not None:
            lines += [
                f"  A product and its similar items: {base}/admin/catalog/product/{first.pk}/change/",
                f"  The same over the API:           {base}/api/products/{first.pk}/similar/?k=5",
            ]
        if serving:
            lines.append("Press Ctrl-C to stop.")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
