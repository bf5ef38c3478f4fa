"""Emulator process management: clear failures and nothing left running."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from local import emulator as emulators
from local import processes
from local.moto_iam import HARNESS_ACCESS_KEY
from tests.helpers.synth import REPO


def _moto_processes_on(port: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                arguments = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(b"moto_server" in a for a in arguments) and str(port).encode() in arguments:
                found.append(int(entry.name))
    return found


def _a_vpc_id(emulator: emulators.Emulator) -> str:
    client = boto3.client("ec2", endpoint_url=emulator.endpoint, region_name="us-east-1", aws_access_key_id=HARNESS_ACCESS_KEY,
                          aws_secret_access_key="testing")
    return client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]


@pytest.mark.parametrize("warm", [True, False], ids=["warm", "afresh"])
def test_start_answers_records_and_stop_leaves_nothing(tmp_path, monkeypatch, warm):
    if not warm:
        monkeypatch.setattr(emulators, "_warm_starts", None)
    emulator = emulators.start(tmp_path)
    try:
        assert emulators.answers(emulator.port)
        assert emulators.recorded(tmp_path) == emulator
        assert emulators.is_ours(emulator)
        assert emulator.started == processes.start_time(emulator.pid)
        assert ("(a warm start)" in Path(emulator.log).read_text()) is warm
    finally:
        emulators.stop(emulator, tmp_path)
    assert emulators.recorded(tmp_path) is None
    assert not processes.alive(emulator.pid)
    assert _moto_processes_on(emulator.port) == []


def test_warm_emulators_are_each_their_own_world_with_their_own_ids(tmp_path):
    first = emulators.start(tmp_path / "first")
    second = emulators.start(tmp_path / "second")
    try:
        # Forked from one prepared process, not one random generator: moto's ids differ as between fresh starts.
        assert _a_vpc_id(first) != _a_vpc_id(second)
        assert os.getpgid(first.pid) == first.pid and os.getpgid(second.pid) == second.pid
    finally:
        emulators.stop(first, tmp_path / "first")
        emulators.stop(second, tmp_path / "second")
    assert not processes.alive(first.pid) and not processes.alive(second.pid)


def test_a_recorded_pid_is_ours_only_with_its_start_time(tmp_path):
    mine = processes.start_time(os.getpid())
    assert emulators.is_ours(emulators.Emulator(pid=os.getpid(), port=1, log="x", started=mine))
    assert not emulators.is_ours(emulators.Emulator(pid=os.getpid(), port=1, log="x", started=mine + 1))


def test_a_taken_port_is_named_and_nothing_is_started(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "local", "deploy", "--port", str(port), "--state-dir", str(tmp_path)],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert emulators.recorded(tmp_path) is None
    assert _moto_processes_on(port) == []


def test_an_emulator_that_never_answers_is_stopped(tmp_path):
    port = emulators.free_port()
    # Marked with this test's own token: other runs on this machine may start the same sleeper.
    token = uuid.uuid4().hex
    sleeper = [sys.executable, "-c", f"import time; time.sleep(60)  # {token}"]
    with pytest.raises(emulators.EmulatorError, match=f"did not answer on port {port}"):
        emulators.start(tmp_path, port=port, command=sleeper, timeout=1)
    assert emulators.recorded(tmp_path) is None
    leftovers = subprocess.run(["pgrep", "-f", token], capture_output=True, text=True).stdout.split()
    assert [pid for pid in leftovers if int(pid) != os.getpid()] == []


def test_an_emulator_that_exits_at_once_is_reported(tmp_path):
    with pytest.raises(emulators.EmulatorError, match="exited with status 3"):
        emulators.start(tmp_path, command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], timeout=5)
    assert emulators.recorded(tmp_path) is None


def test_local_down_stops_a_recorded_emulator_and_tolerates_a_stale_record(tmp_path):
    emulator = emulators.start(tmp_path)
    result = subprocess.run([sys.executable, "-m", "local", "down", "--state-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f"pid {emulator.pid}" in result.stdout
    assert not processes.alive(emulator.pid)
    assert _moto_processes_on(emulator.port) == []
    assert emulators.recorded(tmp_path) is None
    # A record whose PID is no moto_server is only removed, never signalled.
    (tmp_path / emulators.RECORD_NAME).write_text(f'{{"pid": {os.getpid()}, "port": 1, "log": "x"}}')
    assert emulators.stop_recorded(tmp_path).pid == os.getpid()
    assert emulators.recorded(tmp_path) is None
