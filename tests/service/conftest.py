"""A real PostgreSQL server for the session, a fresh database per test, and service processes."""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib: make the harness and the service importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_harness import (  # noqa: E402
    DatabaseSettings, ServiceProcess, create_database, running_postgres,
)

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def make_database(postgres_server):
    """Creates a fresh, empty database each call (for fixtures wider than one test)."""
    return lambda: create_database(
        postgres_server, f"notes_{os.getpid()}_{next(_database_numbers)}"
    )


@pytest.fixture
def database(make_database) -> DatabaseSettings:
    return make_database()


def _service_starter():
    started: list[ServiceProcess] = []

    def start(database: DatabaseSettings, **kwargs) -> ServiceProcess:
        service = ServiceProcess(database, **kwargs)
        started.append(service)
        return service.wait_healthy()

    yield start
    for service in started:
        service.stop()


@pytest.fixture
def start_service():
    """Starts `serve` processes that are stopped (SIGTERM) when the test ends."""
    yield from _service_starter()


@pytest.fixture(scope="module")
def start_module_service():
    """Like start_service, for a process shared by a whole test module."""
    yield from _service_starter()
