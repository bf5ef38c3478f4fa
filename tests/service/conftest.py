"""A real PostgreSQL server for the session, a fresh database per test, and service processes."""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# pytest runs with --import-mode=importlib: make the harness and the service importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_harness import (  # noqa: E402
    DatabaseSettings, PostgresServer, ServiceProcess, create_database, free_port,
    postgres_bin_dir,
)

_database_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="liftoff-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root; the Debian package creates the postgres user.
        postgres_user = pwd.getpwnam("postgres")
        os.chown(root, postgres_user.pw_uid, postgres_user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data_dir, socket_dir = root / "data", root
    port = free_port()
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
         "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True, capture_output=True,
    )
    options = (f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    subprocess.run(
        [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options,
         "-l", str(root / "server.log"), "-w", "start"],
        check=True, capture_output=True,
    )
    try:
        yield PostgresServer(host="127.0.0.1", port=port, superuser="postgres")
    finally:
        subprocess.run(
            [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "stop"],
            check=False, capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


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
