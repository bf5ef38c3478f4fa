"""Helpers for the service tests: PostgreSQL, HTTP, and the service as real processes."""

from __future__ import annotations

import glob
import pwd
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_DIR = REPO_ROOT / "service"
sys.path.insert(0, str(SERVICE_DIR))

from liftoff_service.config import DatabaseSettings  # noqa: E402

STARTUP_DEADLINE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(on_path)
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found: apt-get install -y postgresql"
        )
    return Path(candidates[-1]).parent


def wait_until(condition, *, deadline_seconds: float, what: str, interval: float = 0.02):
    """Poll until condition() is truthy; a deadline, not a timing assertion."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_seconds}s waiting for {what}")
        time.sleep(interval)


@dataclass
class PostgresServer:
    host: str
    port: int
    superuser: str

    def admin_connect(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=self.host, port=self.port, user=self.superuser,
                               dbname=dbname, autocommit=True)


def service_env(database: DatabaseSettings, *, port: int, version: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("DB_")}
    env.update({
        "PORT": str(port), "APP_VERSION": version,
        "DB_HOST": database.host, "DB_PORT": str(database.port), "DB_NAME": database.name,
        "DB_USER": database.user, "DB_PASSWORD": database.password,
        "PYTHONPATH": str(SERVICE_DIR),
    })
    return env


def run_migrate(database: DatabaseSettings, *args: str, cwd: Path = SERVICE_DIR) -> subprocess.CompletedProcess:
    """`migrate` exactly as the image runs it, as a separate process (`cwd`: another service tree, as
    another image would carry it)."""
    env = service_env(database, port=free_port(), version="migrate")
    env["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "liftoff_service", "migrate", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def http_request(port: int, method: str, path: str, payload: object = None, *,
                 timeout: float = 15.0, headers: dict[str, str] | None = None) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = None if payload is None else json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json"} if body is not None else {}
        all_headers.update(headers or {})
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Response(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


class ServiceProcess:
    """`python -m liftoff_service serve` as the image's CMD runs it (gunicorn, real sockets)."""

    def __init__(self, database: DatabaseSettings, *, release: str | None = None,
                 version: str = "test", env_overrides: dict[str, str] | None = None,
                 cwd: Path = SERVICE_DIR):
        self.port = free_port()
        env = service_env(database, port=self.port, version=version)
        env.update(env_overrides or {})
        args = [sys.executable, "-m", "liftoff_service", "serve"]
        if release is not None:
            args += ["--release", release]
        self.log_file = tempfile.TemporaryFile()
        self.process = subprocess.Popen(args, env=env, cwd=cwd,
                                        stdout=self.log_file, stderr=subprocess.STDOUT)

    def wait_healthy(self) -> "ServiceProcess":
        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"service exited with {self.process.returncode}:\n{self.logs()}")
            try:
                return http_request(self.port, "GET", "/healthz", timeout=1).status == 200
            except OSError:
                return False
        wait_until(healthy, deadline_seconds=STARTUP_DEADLINE_SECONDS, what="/healthz")
        return self

    def request(self, method: str, path: str, payload: object = None, **kwargs) -> Response:
        return http_request(self.port, method, path, payload, **kwargs)

    def logs(self) -> str:
        self.log_file.seek(0)
        return self.log_file.read().decode(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode




def create_database(server: PostgresServer, name: str) -> DatabaseSettings:
    """A fresh, empty database owned by its own login role, as RDS gives the service."""
    password = f"pw-{name}"
    with server.admin_connect() as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD \'{password}\'')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    return DatabaseSettings(host=server.host, port=server.port, name=name, user=name,
                            password=password)


def connect(database: DatabaseSettings) -> psycopg.Connection:
    return psycopg.connect(host=database.host, port=database.port, dbname=database.name,
                           user=database.user, password=database.password, autocommit=True)


# What a migration left behind, read back from the database (the migration and container tests share them).
def columns(database) -> dict[str, str]:
    with connect(database) as conn:
        rows = conn.execute(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'notes' ORDER BY ordinal_position"
        ).fetchall()
    return dict(rows)


def applied_ids(database) -> list[str]:
    with connect(database) as conn:
        rows = conn.execute("SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc")
        return [row[0] for row in rows]


@contextmanager
def running_postgres():
    """A PostgreSQL server on a free loopback port, for as long as the block runs; stopped (and its files
    removed) after it, whatever happened."""
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
