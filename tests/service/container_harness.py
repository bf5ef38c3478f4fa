"""The service image as real containers on the test session's Docker daemon.

Containers run with `--network host`: the service listens on a free loopback port (PORT) where the
test reaches it, and it reaches the tests' PostgreSQL on 127.0.0.1 as a host's container reaches
RDS. Each one is made with `docker create` (so its id is known before anything can go wrong) and
removed by that id when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg

from service_harness import (
    DatabaseSettings, Response, free_port, http_request, postgres_bin_dir, wait_until,
)

STARTUP_DEADLINE_SECONDS = 30.0
# A port nothing listens on: the database "is not there" (connection refused at once).
NOWHERE_HOST = "127.0.0.1"


def database_env(database: DatabaseSettings, *, with_password: bool = True) -> dict[str, str]:
    env = {"DB_HOST": database.host, "DB_PORT": str(database.port), "DB_NAME": database.name,
           "DB_USER": database.user}
    if with_password:
        env["DB_PASSWORD"] = database.password
    return env


def nowhere_env() -> dict[str, str]:
    return {"DB_HOST": NOWHERE_HOST, "DB_PORT": str(free_port()), "DB_NAME": "notes",
            "DB_USER": "app", "DB_PASSWORD": "unused"}


class Container:
    def __init__(self, daemon, container_id: str, port: int):
        self.daemon, self.id, self.port = daemon, container_id, port

    def request(self, method: str, path: str, payload: object = None, **kwargs) -> Response:
        return http_request(self.port, method, path, payload, **kwargs)

    def state(self) -> dict:
        return json.loads(self.daemon.run("inspect", "--format", "{{json .State}}", self.id,
                                          timeout=30).stdout)

    def logs(self) -> str:
        result = self.daemon.run("logs", self.id, check=False, timeout=30)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        return self.daemon.run("exec", self.id, *command, timeout=30).stdout

    def wait_serving(self) -> "Container":
        def serving():
            if not self.state()["Running"]:
                raise AssertionError(f"container exited {self.state()['ExitCode']}:\n{self.logs()}")
            try:
                return self.request("GET", "/healthz", timeout=1).status == 200
            except OSError:
                return False
        wait_until(serving, deadline_seconds=STARTUP_DEADLINE_SECONDS, what="/healthz in the container",
                   interval=0.2)
        return self


class Containers:
    """Makes containers from an image and removes every one of them (by id) in `remove_all`."""

    def __init__(self, daemon):
        self.daemon = daemon
        self.ids: list[str] = []

    def create(self, image: str, *command: str, env: dict[str, str], port: int | None = None,
               options: tuple[str, ...] = ()) -> Container:
        port = port or free_port()
        env_args = [arg for key, value in {"PORT": str(port), **env}.items()
                    for arg in ("--env", f"{key}={value}")]
        created = self.daemon.run("create", "--network", "host", *env_args, *options, image, *command,
                                  timeout=60)
        container = Container(self.daemon, created.stdout.strip(), port)
        self.ids.append(container.id)
        return container

    def serve(self, image: str, *, env: dict[str, str], options: tuple[str, ...] = ()) -> Container:
        container = self.create(image, env=env, options=options)
        self.daemon.run("start", container.id, timeout=60)
        return container.wait_serving()

    def run_to_exit(self, image: str, *command: str, env: dict[str, str],
                    options: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
        """`docker start --attach`: the container's output and its exit status."""
        container = self.create(image, *command, env=env, options=options)
        return self.daemon.run("start", "--attach", container.id, check=False, timeout=timeout)

    def remove_all(self) -> None:
        for container_id in self.ids:
            self.daemon.run("rm", "--force", "--volumes", container_id, check=False, timeout=60)
        self.ids.clear()


class OwnPostgres:
    """A PostgreSQL server of one test's own, which the test may stop and start again (a database outage)."""

    def __init__(self, root: Path, data_dir: Path, port: int, run_as: list[str]):
        self.root, self.data_dir, self.port, self.run_as = root, data_dir, port, run_as

    def _pg_ctl(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.run_as, str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *arguments],
                              check=check, capture_output=True, timeout=60)

    def start(self) -> None:
        self._pg_ctl("-l", str(self.root / "server.log"),
                     "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "-w", "start")

    def stop(self) -> None:
        """As an outage: the server ends its sessions and stops listening (clients are refused at once)."""
        self._pg_ctl("-m", "fast", "-w", "stop")


@contextmanager
def own_postgres(database_name: str, user: str, password: str):
    """A PostgreSQL that checks passwords (scram-sha-256) on TCP, as RDS does; the session's server
    trusts every connection, so it cannot show which password a container used, and it is shared, so a
    test cannot stop it. Yields (the database's settings, the server); the server is stopped and its
    files removed afterwards."""
    bin_dir = postgres_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="liftoff-pg-scram-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root
        postgres_user = pwd.getpwnam("postgres")
        os.chown(root, postgres_user.pw_uid, postgres_user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    data_dir, port = root / "data", free_port()
    server = OwnPostgres(root, data_dir, port, run_as)
    try:
        subprocess.run(
            [*run_as, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres",
             "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8",
             "--locale=C.UTF-8"],
            check=True, capture_output=True, timeout=60)
        server.start()
        # The superuser has no password: it comes in over the Unix socket, which trusts it.
        with psycopg.connect(host=str(root), port=port, user="postgres", dbname="postgres",
                             autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(user), psycopg.sql.Literal(password)))
            admin.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(database_name), psycopg.sql.Identifier(user)))
        yield DatabaseSettings(host="127.0.0.1", port=port, name=database_name, user=user,
                               password=password), server
    finally:
        if (data_dir / "postmaster.pid").exists():
            server._pg_ctl("-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def password_checking_postgres(database_name: str, user: str, password: str):
    """own_postgres's database settings only."""
    with own_postgres(database_name, user, password) as (settings, _):
        yield settings
