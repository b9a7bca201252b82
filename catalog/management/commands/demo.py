"""``manage.py demo``: a complete local shop in one command (what `make demo` runs).

Migrates, creates an admin login, imports the bundled demo catalog (or ``--catalog``),
starts a real Celery worker and the web server as child processes, waits until every
product is encoded, prints the URLs and keeps serving until Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalog.models import Product
from similarity.conf import similarity_settings
from similarity.models import EmbeddingStatus
from similarity.clustering import ClusteringUnavailable, run_clustering
from similarity.tasks import enqueue_encode

DEMO_CATALOG = Path(__file__).resolve().parents[2] / "demo" / "grocery-iconic" / "products.csv"
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin"


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Run the demo shop: database, worker, web server and an encoded demo catalog."

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
        children = [self._start_worker(logs), self._start_web(logs, port)]
        signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` stops the children too
        try:
            self._requeue_pending()
            self._wait_encoded(children, timeout)
            self._cluster()
            self._print_urls(port, time.monotonic() - started, serving=not no_serve)
            if no_serve:
                return
            while all(c.poll() is None for c in children):
                time.sleep(1)
            raise CommandError("a demo process exited; see the logs in var/log/")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo ...")
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children:
                try:
                    child.wait(15)
                except subprocess.TimeoutExpired:
                    child.kill()

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if not User.objects.filter(username=ADMIN_USER).exists():
            User.objects.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)

    def _start_worker(self, logs: Path) -> subprocess.Popen:
        queues = f"{similarity_settings.QUEUE},{similarity_settings.TRAINING_QUEUE}"
        cmd = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues,
               "--concurrency", "1", "-B", "-l", "INFO", "-n", "demo@%h"]
        return self._spawn(cmd, logs / "worker.log")

    def _start_web(self, logs: Path, port: int) -> subprocess.Popen:
        cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
        return self._spawn(cmd, logs / "web.log", DJANGO_DEBUG="1", SERVE_MEDIA="1")

    def _spawn(self, cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
        with log.open("a") as out:
            return subprocess.Popen(cmd, cwd=settings.BASE_DIR, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)

    def _requeue_pending(self) -> None:
        """Send rows left pending by an interrupted earlier run."""
        pending = Product.objects.filter(embedding_status=EmbeddingStatus.PENDING)
        pks = list(pending.values_list("pk", flat=True))
        enqueue_encode("catalog.Product", pks)

    def _wait_encoded(self, children: list[subprocess.Popen], timeout: int) -> None:
        began, deadline, last = time.monotonic(), time.monotonic() + timeout, None
        todo = Product.objects.filter(embedding_status=EmbeddingStatus.PENDING).count()
        while True:
            counts = {s: Product.objects.filter(embedding_status=s).count() for s in EmbeddingStatus.values}
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
            if any(c.poll() is not None for c in children):
                raise CommandError("the worker or web server exited early; see var/log/worker.log and var/log/web.log")
            if time.monotonic() > deadline:
                raise CommandError(f"products still pending after {timeout}s; see var/log/worker.log")
            time.sleep(1)

    def _cluster(self) -> None:
        """Find category clusters once, so the review page has something to show."""
        try:
            run = run_clustering("catalog.Product")
        except ClusteringUnavailable as exc:
            self.stdout.write(f"  clustering skipped: {exc}")
            return
        self.stdout.write(f"  clustered {run.products} products into {run.k} clusters")

    def _print_urls(self, port: int, seconds: float, serving: bool) -> None:
        base = f"http://127.0.0.1:{port}"
        first = Product.objects.filter(embedding_status=EmbeddingStatus.READY).order_by("pk").first()
        lines = [
            "",
            f"Demo ready in {seconds:.0f}s: {Product.objects.count()} products.",
            f"  Admin:  {base}/admin/   (login {ADMIN_USER} / {ADMIN_PASSWORD})",
            f"  API:    {base}/api/products/   (docs: {base}/api/docs/)",
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
