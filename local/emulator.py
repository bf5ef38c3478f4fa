"""The emulator process: moto's server (`local.moto_server`) on a loopback port, recorded in .local/ so it can be stopped by PID.

`start` refuses a port that is taken (naming it), waits until the server answers, and kills what it
started if it does not; `stop` ends the process group it started and removes the record. Nothing
here ever signals a process it did not start: `stop_recorded` checks the recorded PID is still the
process recorded (its start time) before it sends anything.

A process that starts many emulators (a test worker) may call `start_warm` first: its emulators are then forked from
one server process that has moto prepared (local/moto_warm.py), each as its own session, logged and stopped as any
other. `make local-up` starts one emulator and leaves it running after it exits: it starts it afresh.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from local import ports, processes

HOST = "127.0.0.1"
# Clients use the name, not the address: moto derives the S3 bucket of a TemplateURL from the host.
ENDPOINT_HOST = "localhost"
RECORD_NAME = "emulator.json"
START_TIMEOUT_SECONDS = 20.0
# `python -m local.moto_server` finds its package from here, wherever the caller's working directory is.
REPO_ROOT = Path(__file__).resolve().parents[1]


class EmulatorError(RuntimeError):
    """The emulator could not be started, reached or stopped; the message says what to do next."""


@dataclass(frozen=True)
class Emulator:
    pid: int
    port: int
    log: str
    started: int = 0  # the process's start time (clock ticks after boot); 0 in a record made before it was kept

    @property
    def endpoint(self) -> str:
        return f"http://{ENDPOINT_HOST}:{self.port}"


def moto_server_command(port: int) -> list[str]:
    """moto's server with DynamoDB's calls atomic, as on AWS (local/moto_server.py)."""
    return [sys.executable, "-m", "local.moto_server", "-H", HOST, "-p", str(port)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def check_port_free(port: int) -> None:
    if ports.listener_error(HOST, port) is not None:
        raise EmulatorError(
            f"port {port} on {HOST} is already in use; stop what listens there or pick another port "
            f"(LOCAL_PORT=<port>, or leave it unset for a free one)"
        )


def answers(port: int) -> bool:
    try:
        # moto's config, not its data.json: that serializes every model it holds (~8,000 managed policies once IAM is loaded).
        urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/config", timeout=1).read(1)
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def start(state_dir: Path, *, port: int | None = None, command: list[str] | None = None,
          timeout: float = START_TIMEOUT_SECONDS) -> Emulator:
    """Start the emulator, wait until it answers, record it in `state_dir`; on any failure leave nothing running.

    With no `port`, a free one is picked; if another process takes it between the pick and the emulator's
    bind (tests in parallel, other work on the machine), another free port is tried."""
    for attempt in range(3):
        chosen = port if port is not None else free_port()
        try:
            return _start_on(state_dir, chosen, command, timeout)
        except EmulatorError:
            if port is not None or attempt == 2 or _port_is_free(chosen):
                raise
    raise AssertionError("unreachable")


def _port_is_free(port: int) -> bool:
    try:
        check_port_free(port)
        return True
    except EmulatorError:
        return False


_warm_starts: multiprocessing.context.ForkServerContext | None = None


def start_warm() -> None:
    """From here on, this process's emulators (moto_server's own command) are forked from a server process that has
    moto prepared, instead of started afresh (~1.5 CPU-s less each, measured). Each ends with this process at the
    latest; the server process ends with it too (multiprocessing's forkserver)."""
    global _warm_starts
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["local.moto_warm"])
    _warm_starts = context


@dataclass(frozen=True)
class _Launched:
    pid: int
    exit_status: Callable[[], int | None]  # None while it runs
    end: Callable[[], None]  # kill it and wait for it


def _launch(port: int, log: Path, command: list[str] | None) -> _Launched:
    if command is None and _warm_starts is not None:
        forked = _warm_starts.Process(target=_serve_forked, args=(port, str(log), dict(os.environ)), daemon=True,
                                      name=f"moto_server:{port}")
        forked.start()
        # A kill of the pid, not of its group: the child may not have made its session yet; moto starts no children.
        return _Launched(pid=forked.pid, exit_status=lambda: forked.exitcode, end=lambda: (forked.kill(), forked.join()))
    with open(log, "ab") as log_file:  # made empty by _start_on, as for a warm start
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop it in order.
        process = subprocess.Popen(command or moto_server_command(port), stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO_ROOT)
    return _Launched(pid=process.pid, exit_status=process.poll, end=lambda: (processes.stop(process.pid), process.wait()))


def _serve_forked(port: int, log: str, environment: dict[str, str]) -> None:
    """In the forked child: what Popen gives a fresh start (a session of its own, the log as stdout and stderr, the
    caller's environment, the repository as working directory), then moto's server."""
    os.setsid()
    os.environ.update(environment)
    os.chdir(REPO_ROOT)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    from local import moto_server

    moto_server.main(["-H", HOST, "-p", str(port)])


def _start_on(state_dir: Path, port: int, command: list[str] | None, timeout: float) -> Emulator:
    state_dir.mkdir(parents=True, exist_ok=True)
    check_port_free(port)
    log = state_dir / f"moto-{port}.log"
    log.write_bytes(b"")
    launched = _launch(port, log, command)
    deadline = time.monotonic() + timeout
    try:
        while not answers(port):
            status = launched.exit_status()
            if status is not None:
                raise EmulatorError(f"the emulator exited with status {status} before answering on port {port}; "
                                    f"its log:\n{processes.tail(log)}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"the emulator did not answer on port {port} within {timeout:.0f} s; its log:\n{processes.tail(log)}")
            time.sleep(0.1)
        emulator = Emulator(pid=launched.pid, port=port, log=str(log), started=processes.start_time(launched.pid) or 0)
        (state_dir / RECORD_NAME).write_text(json.dumps(asdict(emulator)))
    except BaseException:
        launched.end()
        raise
    return emulator


def stop(emulator: Emulator, state_dir: Path) -> None:
    processes.stop(emulator.pid)
    processes.reap(emulator.pid)
    record = state_dir / RECORD_NAME
    if record.exists() and recorded(state_dir) == emulator:
        record.unlink()


def recorded(state_dir: Path) -> Emulator | None:
    try:
        return Emulator(**json.loads((state_dir / RECORD_NAME).read_text()))
    except FileNotFoundError:
        return None


def is_ours(emulator: Emulator) -> bool:
    """True if the recorded PID is still the process recorded (PIDs get reused): the same start time. A warm start's
    command line is its fork server's, so that cannot tell; a record made before start times were kept is checked by
    it (a moto_server on the recorded port)."""
    if emulator.started:
        return processes.start_time(emulator.pid) == emulator.started
    arguments = processes.command_line(emulator.pid).split(b"\0")
    return any(b"moto_server" in argument for argument in arguments) and str(emulator.port).encode() in arguments


def stop_recorded(state_dir: Path) -> Emulator | None:
    """Stop the emulator recorded in `state_dir`; return it, or None if nothing was recorded."""
    emulator = recorded(state_dir)
    if emulator is None:
        return None
    if is_ours(emulator):
        stop(emulator, state_dir)
    else:
        # Already gone (or the PID now belongs to something else): only the stale record goes.
        (state_dir / RECORD_NAME).unlink()
    return emulator

