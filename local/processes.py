"""Stopping what the harness started, by pid: the emulator, dockerd, the endpoint proxy, HAProxy.

Each is started in a session of its own (its pid is its process group), so a Ctrl-C in the terminal
reaches only us, and `stop` ends the whole group: SIGTERM, a grace period, then SIGKILL.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def stop(pid: int, *, grace_seconds: float = 5.0) -> None:
    """End the process group `pid` leads, politely first; reap it if it is our child."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    reap(pid)


def alive(pid: int) -> bool:
    """Running (a zombie is not): reaps our own child; asks the kernel about anyone else's."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass  # not our child (started by an earlier `make local-up`): ask the kernel instead
    return start_time(pid) is not None


def command_line(pid: int) -> bytes:
    """The process's command line as the kernel keeps it (arguments joined by NUL), b"" when it is gone: a
    recorded pid is checked against it before it is stopped, since pids get reused (after a reboot, say)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks after boot (/proc's stat, field 22), None when it is gone or a zombie
    (no parent has reaped it yet; as `alive` says, it runs no more): with the pid, it names one process, however its
    command line reads."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no log)"
