"""The service image as real containers on the test session's Docker daemon.

Containers run with `--network host`: the service listens on a free loopback port (PORT) where the
test reaches it, and it reaches the tests' PostgreSQL on 127.0.0.1 as a host's container reaches
RDS. Each one is made with `docker create` (so its id is known before anything can go wrong) and
removed by that id when the test ends, whatever happened.
"""

from __future__ import annotations

import json
import subprocess

from service_harness import DatabaseSettings, Response, free_port, http_request, wait_until

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
