"""Docker for the local harness: the machine's daemon when one answers, else one we start and stop by pid.

The harness (image builds, the ECR stand-in, host boxes, the load balancer's backends) talks to one
daemon through the `docker` CLI, but for the two calls it repeats by the hundred (a container's state, which its
followers read every second or two, and a plain `docker exec`) it asks the Engine API on the daemon's socket, as the
CLI itself does, without starting the CLI (~28 ms of CPU each): `containers`, and `run("exec", ...)`.
`connect_or_start` uses a daemon that already answers on the socket
(it is not ours: we never stop it) or starts Debian's `dockerd` with a pid file under the state
directory; `stop` ends only a daemon this module started, by that pid.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from local import processes

DEFAULT_HOST = "unix:///var/run/docker.sock"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 30.0
INSTALL_HINT = "install it with `apt-get install docker.io iptables` (Debian) and run as root, or start a daemon and set DOCKER_HOST"


class DockerError(RuntimeError):
    """Docker is missing, did not start, or a docker command failed; the message says which and what to do."""


@dataclass(frozen=True)
class Daemon:
    host: str
    pid: int | None = None  # set only when this module started the daemon
    log: str | None = None

    @property
    def ours(self) -> bool:
        return self.pid is not None

    def environment(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def run(self, *arguments: str, check: bool = True, input: str | bytes | None = None,
            timeout: float | None = 600, text: bool = True) -> subprocess.CompletedProcess:
        """`docker ARGS` against this daemon; a non-zero exit raises DockerError with docker's own message."""
        command = ["docker", *arguments]
        if self._exec_by_api(arguments, input):
            result = self._exec(arguments[1], list(arguments[2:]), timeout=timeout, text=text)
        else:
            result = self._cli(command, input=input, timeout=timeout, text=text)
        if check and result.returncode != 0:
            stderr = result.stderr if text else result.stderr.decode(errors="replace")
            raise DockerError(f"`{' '.join(command[:6])}` exited {result.returncode}: {stderr.strip()[-2000:]}")
        return result

    def _cli(self, command: list[str], *, input: str | bytes | None, timeout: float | None, text: bool) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(command, env=self.environment(), input=input, capture_output=True,
                                  timeout=timeout, text=text, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise DockerError(f"`{' '.join(command[:4])} ...` did not finish within {timeout:.0f} s") from None

    def _exec_by_api(self, arguments: tuple[str, ...], input: str | bytes | None) -> bool:
        """A plain `docker exec CONTAINER COMMAND...` (no options, nothing on its standard input) on the local socket
        goes through the Engine API: the harness runs some 400 a test run (a gate, a `systemctl`, a `cat` on a host
        box; `pg_isready` polls), and the CLI costs ~28 ms of CPU to start each."""
        return (self.host.startswith("unix://") and input is None and len(arguments) >= 3 and arguments[0] == "exec"
                and not arguments[1].startswith("-"))

    def _exec(self, container: str, command: list[str], *, timeout: float | None, text: bool) -> subprocess.CompletedProcess:
        """What `docker exec CONTAINER COMMAND...` gives: the command's exit code and its output, stdout and stderr
        apart; the daemon's refusal (no such container, not running) as the CLI's exit 1 with the daemon's message.
        `timeout` bounds the whole call, as for the CLI (the command itself goes on in the container, as then)."""
        args = ["docker", "exec", container, *command]
        deadline = time.monotonic() + (600.0 if timeout is None else timeout)
        try:
            status, body = self._request("POST", f"/containers/{urllib.parse.quote(container, safe='')}/exec",
                                         {"AttachStdout": True, "AttachStderr": True, "Cmd": command}, deadline)
            if status != 201:
                return _refused(args, body, text)
            identifier = json.loads(body)["Id"]
            status, body = self._request("POST", f"/exec/{identifier}/start", {"Detach": False, "Tty": False}, deadline)
            if status != 200:
                return _refused(args, body, text)
            stdout, stderr = _demultiplexed(body)
            _, shown = self._request("GET", f"/exec/{identifier}/json", None, max(deadline, time.monotonic() + 10))
        except TimeoutError:
            raise DockerError(f"`{' '.join(args[:4])} ...` did not finish within {timeout:.0f} s") from None
        except OSError as error:
            raise DockerError(f"the Docker daemon at {self.host} did not answer `{' '.join(args[:4])} ...`: {error}") from None
        exit_code = json.loads(shown).get("ExitCode")
        return _completed(args, 126 if exit_code is None else exit_code, stdout, stderr, text)

    def _request(self, method: str, path: str, body: dict | None, deadline: float) -> tuple[int, bytes]:
        """One Engine API call on its own connection, read to its end by `deadline` (an exec's output ends when its
        command does); TimeoutError past it."""
        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            return remaining

        connection = _UnixHTTPConnection(self.host.removeprefix("unix://"), left())
        try:
            connection.request(method, path, body=None if body is None else json.dumps(body),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            chunks = []
            while True:
                connection.unix_socket.settimeout(left())
                chunk = response.read1(65536)
                if not chunk:
                    return response.status, b"".join(chunks)
                chunks.append(chunk)
        finally:
            connection.close()

    def containers(self, *names: str, timeout: float = 30) -> dict[str, dict]:
        """What `docker inspect NAME...` shows of each container (its `State`, `NetworkSettings`, ...), by the name or
        id asked for; a container the daemon does not know is left out."""
        if self.host.startswith("unix://"):
            return self._containers_by_api(names, timeout)
        return self._containers_by_cli(names, timeout)

    def running(self, *names: str) -> set[str]:
        """Those of `names` whose container runs now, read in one batch."""
        return {name for name, container in self.containers(*names).items() if container["State"]["Running"] is True}

    def _containers_by_api(self, names: tuple[str, ...], timeout: float) -> dict[str, dict]:
        found, deadline = {}, time.monotonic() + timeout
        for name in names:
            try:
                status, body = self._request("GET", f"/containers/{urllib.parse.quote(name, safe='')}/json", None, deadline)
            except OSError as error:  # TimeoutError past the deadline included
                raise DockerError(f"the Docker daemon at {self.host} did not answer an inspect of {name}: {error}") from None
            if status == 200:
                found[name] = json.loads(body)
            elif status != 404:
                raise DockerError(f"inspect of {name} at {self.host}: HTTP {status}: {body.decode(errors='replace')[:500]}")
        return found

    def _containers_by_cli(self, names: tuple[str, ...], timeout: float) -> dict[str, dict]:
        # One run for all: docker prints the ones it knows (and exits 1 if any is unknown), each matched back here.
        shown = self.run("inspect", "--type", "container", *names, check=False, timeout=timeout)
        listed = json.loads(shown.stdout or "[]")
        return {name: container for name in names for container in listed
                if name == container["Name"].lstrip("/") or container["Id"].startswith(name)}

    def answers(self) -> bool:
        return self.run("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0


def _completed(args: list[str], code: int, stdout: bytes, stderr: bytes, text: bool) -> subprocess.CompletedProcess:
    if text:
        return subprocess.CompletedProcess(args, code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
    return subprocess.CompletedProcess(args, code, stdout, stderr)


def _refused(args: list[str], body: bytes, text: bool) -> subprocess.CompletedProcess:
    """The daemon's refusal as the CLI shows it: exit 1, "Error response from daemon: <its message>"."""
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = body.decode(errors="replace").strip()
    return _completed(args, 1, b"", f"Error response from daemon: {message}".encode(), text)


def _demultiplexed(stream: bytes) -> tuple[bytes, bytes]:
    """stdout and stderr from the Engine API's multiplexed stream: frames of an 8-byte header (the stream, 1 or 2, and
    the payload's length, big-endian, in its last four bytes), then the payload."""
    out, err, at = bytearray(), bytearray(), 0
    while at + 8 <= len(stream):
        kind, size = stream[at], int.from_bytes(stream[at + 4:at + 8], "big")
        payload = stream[at + 8:at + 8 + size]
        (err if kind == 2 else out).extend(payload)
        at += 8 + size
    return bytes(out), bytes(err)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP on the daemon's Unix socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        # Kept here too: http.client hands the socket to a response read to its close (an exec's stream) and forgets it.
        self.sock = self.unix_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def connect_or_start(state_dir: Path, *, host: str | None = None) -> Daemon:
    """The daemon at DOCKER_HOST (or the default socket) if it answers; else start one and wait until it does."""
    if shutil.which("docker") is None:
        raise DockerError(f"no `docker` command on PATH: {INSTALL_HINT}")
    existing = Daemon(host=host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST)
    if existing.answers():
        return existing
    if not existing.host.startswith("unix://"):
        raise DockerError(f"the Docker daemon at DOCKER_HOST={existing.host} does not answer; start it or unset DOCKER_HOST")
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise DockerError(f"no Docker daemon answers on {existing.host} and there is no `dockerd` to start: {INSTALL_HINT}")
    if os.geteuid() != 0:
        raise DockerError(f"no Docker daemon answers on {existing.host}, and starting one needs root: {INSTALL_HINT}")
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / "dockerd.log"
    pid_file = state_dir / "dockerd.pid"
    socket_path = existing.host.removeprefix("unix://")
    with open(log, "wb") as log_file:
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop the daemon in order.
        process = subprocess.Popen(
            [dockerd, "--host", existing.host, "--pidfile", str(pid_file), "--storage-driver", "overlay2"],
            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    daemon = Daemon(host=existing.host, pid=process.pid, log=str(log))
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while not (Path(socket_path).exists() and daemon.answers()):
            if process.poll() is not None:
                raise DockerError(f"dockerd exited with status {process.returncode} before answering; its log:\n{processes.tail(log)}")
            if time.monotonic() > deadline:
                raise DockerError(f"dockerd did not answer within {START_TIMEOUT_SECONDS:.0f} s; its log:\n{processes.tail(log)}")
            time.sleep(0.2)
    except BaseException:
        processes.stop(process.pid, grace_seconds=STOP_TIMEOUT_SECONDS)
        raise
    return daemon


def stop(daemon: Daemon) -> None:
    """Stop the daemon if this module started it (by its pid); a daemon found running is left alone."""
    if daemon.pid is not None:
        processes.stop(daemon.pid, grace_seconds=STOP_TIMEOUT_SECONDS)


def recorded_daemon(state_dir: Path) -> int | None:
    """The pid of a dockerd this module started with `state_dir`, if it still runs (pids get reused)."""
    try:
        pid = int((state_dir / "dockerd.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    command = processes.command_line(pid).split(b"\0")
    return pid if command and command[0].endswith(b"dockerd") and str(state_dir / "dockerd.pid").encode() in command else None

