"""The ordinary accidents of a release day, with real processes: `python -m release` (the `liftoff`
console script) run as a subprocess against moto_server, killed, signalled, raced, or pointed at an
endpoint that never answers.

Each test starts its own moto_server on a loopback port and deploys the staging stage into it from
the app's own templates (tests/helpers/emulated_stage.py), so a separate process reaches the same
emulated account the way a second shell does after `make local-up`: AWS_ENDPOINT_URL plus
LIFTOFF_RUNTIME=local.runtime:emulator (the stand-in for what runs; `emulator_unhealthy` makes every target
unhealthy, so an activation stays in its verification until it is stopped). Short leases
(`--lease-seconds 3`) keep the waits short; the bounds asserted are the issue's (90 s) and the
user's own --timeout.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from config import load_config
from local import emulator as emulators
from release.pure import decisions as d
from release.adapters.ledger import Ledger
from tests.helpers.emulated_stage import EmulatedStage, deploy_stage
from tests.helpers.emulator_fixtures import DEMO_RELEASE_TAGS
from tests.helpers.synth import CDK_JSON, REPO

pytestmark = pytest.mark.cost(minutes=0.9)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

LEASE = "3"


@dataclass
class Served:
    emulator: emulators.Emulator
    stage: EmulatedStage
    logs: Path

    def env(self, runtime: str = "local.runtime:emulator") -> dict[str, str]:
        return {**os.environ, "AWS_ENDPOINT_URL": self.emulator.endpoint, "LIFTOFF_RUNTIME": runtime}

    def argv(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "release", *argv, "--stage", "staging", "--config", str(CDK_JSON)]

    def liftoff(self, *argv: str, runtime: str = "local.runtime:emulator", timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*argv), cwd=REPO, env=self.env(runtime), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, name: str, *argv: str, runtime: str = "local.runtime:emulator") -> subprocess.Popen:
        out, err = (open(self.logs / f"{name}.{kind}", "w") for kind in ("out", "err"))
        with out, err:
            return subprocess.Popen(self.argv(*argv), cwd=REPO, env=self.env(runtime), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, text=True)

    def output(self, name: str) -> tuple[str, str]:
        return (self.logs / f"{name}.out").read_text(), (self.logs / f"{name}.err").read_text()

    def ledger(self) -> Ledger:
        return Ledger(self.stage.client("dynamodb"), self.stage.ledger_table)

    def wait_for_activity(self, prefix: str, process: subprocess.Popen, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lock = self.ledger().read_lock()
            if lock is not None and lock.activity.startswith(prefix):
                return
            assert process.poll() is None, f"the release ended early with {process.returncode}"
            time.sleep(0.1)
        raise AssertionError(f"no release reached {prefix!r} within {timeout} s")


@pytest.fixture
def served(fake_aws_env, emulator_assembly, tmp_path, monkeypatch) -> Served:
    state = tmp_path / "emulator"
    emulator = emulators.start(state)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        stage = deploy_stage(emulator_assembly, load_config(CDK_JSON).stage("staging"), push_tags=DEMO_RELEASE_TAGS)
        logs = tmp_path / "logs"
        logs.mkdir()
        yield Served(emulator, stage, logs)
    finally:
        emulators.stop(emulator, state)


def stop(process: subprocess.Popen) -> None:
    """End a release a test started (by its pid) if the test did not."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_kill_9_mid_activate_another_release_proceeds_within_90_s_with_no_manual_step(served):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    victim = served.start("victim", "activate", "1.1.0", "--yes", "--lease-seconds", LEASE, "--verify-timeout", "300",
                          "--poll-interval", "0.2", runtime="local.runtime:emulator_unhealthy")
    try:
        served.wait_for_activity("verifying", victim)  # CloudFormation took ImageTag=1.1.0; the run verifies
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        stop(victim)
    assert served.ledger().read_lock() is not None  # a SIGKILLed run cannot release anything
    # An emergency rollback from another shell: it watches the dead lease, takes it over, and goes back.
    rollback = served.liftoff("rollback", "--yes", "--lease-seconds", LEASE, "--poll-interval", "0.2", timeout=90)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert "took over the lock of release" in rollback.stdout
    assert served.stage.service_parameters()["ImageTag"] == "1.0.0"
    rolled, killed, *_ = served.ledger().entries()
    assert (rolled.gate, rolled.from_version, rolled.to_version, rolled.result) == ("rollback", "1.1.0", "1.0.0", d.RESULT_SUCCEEDED)
    # The killed run's entry no longer lies: the switch happened, unverified, closed by the takeover.
    assert (killed.gate, killed.to_version, killed.result) == ("activate", "1.1.0", d.RESULT_UNVERIFIED)
    assert "taken over by release" in killed.detail and "ImageTag is 1.1.0" in killed.detail
    assert served.ledger().read_lock() is None


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_after_the_update_was_accepted_records_the_switch_and_frees_the_lock(served, signum, code):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    run = served.start("run", "activate", "1.1.0", "--yes", "--json", "--verify-timeout", "300", "--poll-interval", "0.2",
                       runtime="local.runtime:emulator_unhealthy")
    try:
        served.wait_for_activity("verifying", run)
        run.send_signal(signum)
        assert run.wait(timeout=60) == code
    finally:
        stop(run)
    out, err = served.output("run")
    name = signal.Signals(signum).name
    assert "Traceback" not in err
    assert f"interrupted by {name}; ImageTag is now 1.1.0: the switch happened, not verified (recorded as unverified)" in err
    import json

    doc = json.loads(out)
    assert (doc["exit_code"], doc["result"], doc["switched"], doc["value_now"]) == (code, d.RESULT_UNVERIFIED, True, "1.1.0")
    newest = served.ledger().entries()[0]
    assert (newest.to_version, newest.result) == ("1.1.0", d.RESULT_UNVERIFIED) and f"interrupted by {name}" in newest.detail
    assert served.ledger().read_lock() is None


def test_two_racing_releases_exactly_one_proceeds_the_other_is_refused_and_recorded(served):
    racers = [served.start(f"racer{i}", "activate", "1.1.0", "--yes", "--force", "--lease-seconds", LEASE,
                           "--verify-timeout", "20", "--poll-interval", "0.2", runtime="local.runtime:emulator_unhealthy") for i in (0, 1)]
    try:
        codes = sorted(racer.wait(timeout=90) for racer in racers)
    finally:
        for racer in racers:
            stop(racer)
    # The winner switched (unverified: the stand-in reports unhealthy targets); the loser saw its heartbeat.
    assert codes == [d.EXIT_REFUSED, d.EXIT_UNVERIFIED], [served.output(f"racer{i}") for i in (0, 1)]
    loser = next(f"racer{i}" for i, racer in enumerate(racers) if racer.returncode == d.EXIT_REFUSED)
    assert "another release holds the lock: activate 1.1.0" in served.output(loser)[1]
    results = sorted((e.gate, e.result) for e in served.ledger().entries())
    assert results == [("activate", d.RESULT_REFUSED), ("activate", d.RESULT_UNVERIFIED)]
    refused = next(e for e in served.ledger().entries() if e.result == d.RESULT_REFUSED)
    assert "lock held" in refused.detail and refused.who.startswith("arn:aws:")
    assert served.ledger().read_lock() is None


def test_a_closed_stdout_is_a_quiet_exit(served):
    # `true` exits without reading: every write liftoff makes meets a closed pipe.
    command = " ".join(f"'{part}'" for part in served.argv("status")) + " | true; exit ${PIPESTATUS[0]}"
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=served.env(), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


def test_activate_and_rollback_from_another_shell_verify_like_the_walk(served):
    """What a newcomer does after `make local-up`: release by hand from a second shell and see `succeeded`."""
    assert served.liftoff("stage", "1.1.0").returncode == 0
    activate = served.liftoff("activate", "1.1.0", "--yes", "--poll-interval", "0")
    assert activate.returncode == 0, activate.stdout + activate.stderr
    assert "verified: 1 task(s) run 1.1.0; 1 target(s) healthy" in activate.stdout
    rollback = served.liftoff("rollback", "--yes", "--poll-interval", "0")
    assert rollback.returncode == 0 and "verified: 1 task(s) run 1.0.0" in rollback.stdout
    assert [e.result for e in served.ledger().entries()] == [d.RESULT_SUCCEEDED] * 3


def test_the_emulator_runtime_is_refused_against_a_real_endpoint(served):
    result = subprocess.run(served.argv("status"), cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**served.env(), "AWS_ENDPOINT_URL": "https://cloudformation.eu-west-1.amazonaws.com"})
    assert result.returncode == d.EXIT_USAGE and "only works against the local emulator" in result.stderr
    result = served.liftoff("status", runtime="kubernetes")
    assert result.returncode == d.EXIT_USAGE and "LIFTOFF_RUNTIME='kubernetes'" in result.stderr


@pytest.mark.parametrize("argv", [("status", "--timeout", "4"), ("stage", "1.1.0", "--timeout", "4")])
def test_a_hung_endpoint_fails_within_the_given_timeout_naming_it(fake_aws_env, argv):
    # Accepts connections (the kernel completes the handshake) and never answers a byte.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        endpoint = f"http://127.0.0.1:{hung.getsockname()[1]}"
        command = [sys.executable, "-m", "release", *argv, "--stage", "staging", "--config", str(CDK_JSON)]
        # The bound is the user's --timeout (4 s) plus the interpreter's own start (imports), not botocore's 60 s x retries.
        result = subprocess.run(command, cwd=REPO, env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
                                capture_output=True, text=True, timeout=4 + 6)
    assert result.returncode == d.EXIT_AWS, result.stderr
    assert f"{endpoint}/ did not answer within 1.3 s (per call, 2 attempts)" in result.stderr  # 2 x 1.3 s + backoff < 4 s
    assert "Traceback" not in result.stderr
