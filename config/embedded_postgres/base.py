"""Django's PostgreSQL backend, pointed at the embedded server on first connection."""
from __future__ import annotations

from django.db.backends.postgresql import base

from .server import ensure_server


class DatabaseWrapper(base.DatabaseWrapper):
    """PostgreSQL wrapper whose HOST/PORT/USER come from the embedded server."""

    def get_connection_params(self):
        address = ensure_server(self.settings_dict["PGDATA"])
        self.settings_dict.update(
            HOST=address.socket_dir, PORT=str(address.port), USER=address.user
        )
        return super().get_connection_params()
