"""The service's pool after a long database outage (liftoff_service/db.py), on a real PostgreSQL stopped and
started again: the first request the breaker lets through connects, however long the outage lasted."""
from __future__ import annotations

import time

import pytest
from liftoff_service.db import Breaker, Database, DatabaseUnavailable

from container_harness import own_postgres

pytestmark = pytest.mark.cost(minutes=0.35)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

BREAKER_OPEN_SECONDS = 0.5
# Long enough for psycopg_pool's own backoff (1, 2, 4, 8, 16 s between tries) to put its next try some 15 s past
# the outage's end, had it kept retrying one connection for its default 5 minutes.
OUTAGE_SECONDS = 16.0


def one(database: Database) -> int:
    with database.connection() as connection:
        return connection.execute("SELECT 1").fetchone()[0]


def test_the_first_request_after_a_long_outage_connects_at_once():
    with own_postgres("reconnect", "app", "reconnect-pw") as (settings, server):
        database = Database(settings, max_connections=2, breaker=Breaker(BREAKER_OPEN_SECONDS))
        assert one(database) == 1
        server.stop()
        ends_at = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < ends_at:
            with pytest.raises(DatabaseUnavailable):
                one(database)
            time.sleep(0.2)
        server.start()  # returns once the server accepts connections
        time.sleep(BREAKER_OPEN_SECONDS)
        # One request, within the pool's checkout timeout (2 s): it opens a connection now.
        assert one(database) == 1
        assert not database.breaker.open
