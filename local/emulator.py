"""The emulator process: moto's server (`local.moto_server`) on a loopback port, recorded in .local/ so it can be stopped by PID.

`start` refuses a port that is taken (naming it), waits until the server answers, and kills what it
started if it does not; `stop` ends the process group it started and removes the record. Nothing
here ever signals a process it did not start: `stop_recorded` checks the recorded PID is still a
moto_server on the recorded port before it sends anything.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

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
        urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/data.json", timeout=1).read(1)
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


def _start_on(state_dir: Path, port: int, command: list[str] | None, timeout: float) -> Emulator:
    state_dir.mkdir(parents=True, exist_ok=True)
    check_port_free(port)
    log = state_dir / f"moto-{port}.log"
    with open(log, "wb") as log_file:
        # Its own session: a Ctrl-C in the terminal reaches us, and we stop it in order.
        process = subprocess.Popen(command or moto_server_command(port), stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO_ROOT)
    emulator = Emulator(pid=process.pid, port=port, log=str(log))
    deadline = time.monotonic() + timeout
    try:
        while not answers(port):
            if process.poll() is not None:
                raise EmulatorError(f"the emulator exited with status {process.returncode} before answering on port {port}; "
                                    f"its log:\n{processes.tail(log)}")
            if time.monotonic() > deadline:
                raise EmulatorError(f"the emulator did not answer on port {port} within {timeout:.0f} s; its log:\n{processes.tail(log)}")
            time.sleep(0.1)
        (state_dir / RECORD_NAME).write_text(json.dumps(asdict(emulator)))
    except BaseException:
        processes.stop(process.pid)
        process.wait()
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
    """True if the recorded PID is still a moto_server on the recorded port (PIDs get reused)."""
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

