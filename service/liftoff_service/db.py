"""One connection pool per worker process, opened on first use (after gunicorn forks)."""

from __future__ import annotations

import threading

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .config import DatabaseSettings

# How long a request waits for a pooled connection before answering 503. The pool keeps
# retrying a DB that refuses connections until then, so this is also the outage latency.
CHECKOUT_TIMEOUT_SECONDS = 3.0

DatabaseUnavailable = (psycopg.OperationalError, PoolTimeout)


class Database:
    def __init__(self, settings: DatabaseSettings, *, max_connections: int) -> None:
        self._settings = settings
        self._max_connections = max_connections
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def _get_pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    kwargs=self._settings.conninfo_kwargs(),
                    # min_size=0: a worker that only answers /healthz never opens a connection,
                    # so a DB outage cannot make liveness fail or flood the logs.
                    min_size=0,
                    max_size=self._max_connections,
                    timeout=CHECKOUT_TIMEOUT_SECONDS,
                    # A failover or DB restart leaves dead sockets in the pool; test on checkout.
                    check=ConnectionPool.check_connection,
                    open=True,
                )
            return self._pool

    def connection(self):
        return self._get_pool().connection()

    def ping(self, *, timeout_seconds: int) -> None:
        """One round trip on a new connection: what a new instance would meet, not the pool."""
        kwargs = {**self._settings.conninfo_kwargs(), "connect_timeout": timeout_seconds}
        with psycopg.connect(**kwargs) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
