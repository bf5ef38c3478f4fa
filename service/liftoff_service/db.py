"""One connection pool per worker process, opened on first use (after gunicorn forks)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from .config import DatabaseSettings

# How long a request waits for a pooled connection before answering 503. The pool never runs out of
# connections (one per thread), so this is only ever spent waiting for a new connection to open: during a
# database outage. libpq's connect timeout cannot go below 2 s either.
CHECKOUT_TIMEOUT_SECONDS = 2.0
# After a request finds the database unreachable, database-backed requests answer 503 at once for this
# long; then one request tries again (the others keep failing fast) and its outcome closes the breaker or
# holds it open. Without it, each request spent the whole checkout timeout on a thread, and 10 requests/s
# needing the database took every thread of the worker: /healthz and /version queued behind them past
# the load balancer's health check timeout, and every host left the load balancer (issue 22).
BREAKER_OPEN_SECONDS = 2.0
# How long the pool keeps retrying a connection it failed to open (psycopg_pool waits 1 s, then twice as long each
# time) before it gives up and lets the next request start afresh. Its default, 5 minutes, let the wait grow with the
# outage: after 30 s without the database its next try came up to 30 s after the database was back, and every
# request the breaker let through waited on it (a test under load caught it). Within this, tries stay at most 2 s apart.
RECONNECT_TIMEOUT_SECONDS = 4.0


class DatabaseFailingFast(Exception):
    """The breaker is open: the database was unreachable moments ago, so this request does not wait for it."""


DatabaseUnavailable = (psycopg.OperationalError, PoolTimeout, DatabaseFailingFast)


class Breaker:
    """A circuit breaker on reaching the database: closed (every request tries), open (none does, until
    `open_seconds` after the last failure), then half-open (one request at a time tries)."""

    def __init__(self, open_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None
        self._probing = False

    def admit(self) -> bool:
        with self._lock:
            if self._open_until is None:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._open_until, self._probing = None, False

    def failed(self) -> None:
        with self._lock:
            self._open_until, self._probing = self._clock() + self._open_seconds, False

    @property
    def open(self) -> bool:
        with self._lock:
            return self._open_until is not None


class Database:
    def __init__(self, settings: DatabaseSettings, *, max_connections: int,
                 breaker: Breaker | None = None) -> None:
        self._settings = settings
        self._max_connections = max_connections
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self.breaker = breaker or Breaker(BREAKER_OPEN_SECONDS)

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
                    reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
                    open=True,
                )
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, or DatabaseFailingFast at once while the breaker is open."""
        if not self.breaker.admit():
            raise DatabaseFailingFast("the database was unreachable moments ago; not waiting for it again yet")
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout):
            self.breaker.failed()
            raise
        except BaseException:
            # The database answered (the error is the request's own): it is reachable.
            self.breaker.succeeded()
            raise
        self.breaker.succeeded()

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
