"""The release tool tells the truth under the faults of issue 22, each made exact by the fault proxy
(local/faultproxy.py) in front of a real moto_server, with `python -m release` run as a separate process
(as a second shell would). Each test ends with the ledger, the lock and the stack in agreement.
"""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time

import pytest

from config import load_config
from local import emulator as emulators
from local.faultproxy import FaultProxy
from release.pure import decisions as d
from release.cli import main
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.emulator_fixtures import DEMO_RELEASE_TAGS
from tests.helpers.synth import CDK_JSON, REPO
from tests.release.test_interruptions import Served, stop

pytestmark = pytest.mark.cost(minutes=0.7)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

LEASE = "3"
UNHEALTHY = "local.runtime:emulator_unhealthy"


class Proxied(Served):
    """`Served`, with every `liftoff` it starts going through the fault proxy."""

    proxy: FaultProxy

    def env(self, runtime: str = "local.runtime:emulator") -> dict[str, str]:
        return {**super().env(runtime), "AWS_ENDPOINT_URL": self.proxy.endpoint}

    def agree(self, image_tag: str, *, staged: str | None = None) -> list[d.Entry]:
        """The end of every test: the lock is free, no entry is left in_progress, the stack says `image_tag`."""
        parameters = self.stage.service_parameters()
        assert parameters["ImageTag"] == image_tag
        if staged is not None:
            assert parameters["StagedImageTag"] == staged
        assert self.ledger().read_lock() is None
        entries = self.ledger().entries()
        assert [e for e in entries if e.result == d.RESULT_IN_PROGRESS] == []
        return entries


@pytest.fixture
def served(fake_aws_env, emulator_assembly, tmp_path, monkeypatch) -> Proxied:
    state = tmp_path / "emulator"
    emulator = emulators.start(state)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        stage = deploy_stage(emulator_assembly, load_config(CDK_JSON).stage("staging"), push_tags=DEMO_RELEASE_TAGS)
        logs = tmp_path / "logs"
        logs.mkdir()
        with FaultProxy(emulator.endpoint) as proxy:
            served = Proxied(emulator, stage, logs)
            served.proxy = proxy
            yield served
    finally:
        emulators.stop(emulator, state)


def test_sigterm_while_update_stack_is_in_flight_records_the_switch_that_lands(served):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    held = served.proxy.add("UpdateStack", "hold")
    run = served.start("run", "activate", "1.1.0", "--yes", "--json", "--poll-interval", "0.2")
    try:
        held.wait_matched(60)  # UpdateStack has left liftoff and not reached CloudFormation yet
        run.send_signal(signal.SIGTERM)
        time.sleep(1)  # the signal is handled while the call is in flight; then CloudFormation gets it
        held.release()
        assert run.wait(timeout=60) == 143
    finally:
        stop(run)
    out, err = served.output("run")
    assert "Traceback" not in err
    assert "interrupted by SIGTERM; ImageTag is now 1.1.0: the switch happened, not verified (recorded as unverified)" in err
    assert json.loads(out)["value_now"] == "1.1.0"
    newest = served.agree("1.1.0")[0]
    assert (newest.gate, newest.to_version, newest.result) == ("activate", "1.1.0", d.RESULT_UNVERIFIED)


def test_a_lost_connection_after_update_complete_was_seen_records_the_outcome(served):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    run = served.start("run", "activate", "1.1.0", "--yes", "--verify-timeout", "300", "--poll-interval", "0.2", runtime=UNHEALTHY)
    try:
        served.wait_for_activity("verifying", run)  # the wait saw UPDATE_COMPLETE
        served.proxy.add("DescribeStacks", "drop", times=None)  # CloudFormation is gone for this run from here on
        assert run.wait(timeout=120) == d.EXIT_UNVERIFIED
    finally:
        stop(run)
    _, err = served.output("run")
    assert "ImageTag is now 1.1.0: the switch happened, not verified (recorded as unverified)" in err
    newest = served.agree("1.1.0")[0]
    assert newest.result == d.RESULT_UNVERIFIED
    assert "as seen when the update ended (UPDATE_COMPLETE); the stack could not be read again" in newest.detail


def test_a_rejected_final_ledger_write_says_so_and_the_takeover_records_the_outcome(served):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    # Only the entry's completion (conditional on in_progress) is refused; the lock and the entry's start pass.
    served.proxy.add("UpdateItem", "fail", contains='":in_progress"', times=None, code="AccessDeniedException",
                     message="User: arn:aws:sts::123456789012:assumed-role/ops/me is not authorized to perform: dynamodb:UpdateItem "
                             "on resource: arn:aws:dynamodb:us-east-1:123456789012:table/ledger because no identity-based policy "
                             "allows the dynamodb:UpdateItem action")
    first = served.liftoff("activate", "1.1.0", "--yes", "--lease-seconds", LEASE, "--poll-interval", "0.2")
    assert first.returncode == 0, first.stderr  # the release itself happened and was verified
    assert ("the ledger refused this release's outcome (access denied: arn:aws:sts::123456789012:assumed-role/ops/me may not "
            "call dynamodb:UpdateItem on arn:aws:dynamodb:us-east-1:123456789012:table/ledger (AccessDeniedException)") in first.stderr
    assert "The ledger refused the outcome too" in first.stderr and "the lock stays held, naming it" in first.stderr
    lock = served.ledger().read_lock()
    assert lock is not None and lock.activity.startswith("outcome succeeded: ")
    served.proxy.rules.clear()
    # The next release (here: the same command again) takes the lock over after its lease and records the outcome.
    again = served.liftoff("activate", "1.1.0", "--yes", "--lease-seconds", LEASE, "--poll-interval", "0.2", timeout=90)
    assert again.returncode == 0, again.stderr
    assert "took over the lock of release" in again.stdout and "nothing to do: 1.1.0 is already active" in again.stdout
    entries = served.agree("1.1.0")
    closed = next(e for e in entries if e.gate == "activate" and e.result != d.RESULT_NOOP)
    assert closed.result == d.RESULT_SUCCEEDED and "its run's own outcome, which the ledger had refused" in closed.detail


def test_a_run_paused_past_its_lease_does_not_write_the_stack(served):
    """The laptop lid: paused after its entry was written and before UpdateStack; meanwhile another
    operator's release took the lock over and staged. Resumed, the paused run must not undo that."""
    held = served.proxy.add("PutItem", "hold", contains='"in_progress"')  # the entry's start
    paused = served.start("paused", "activate", "1.1.0", "--yes", "--force", "--lease-seconds", LEASE, "--poll-interval", "0.2")
    try:
        held.wait_matched(60)
        paused.send_signal(signal.SIGSTOP)
        held.release()  # the entry lands; the paused run has not read the answer yet
        other = served.liftoff("stage", "1.1.0", "--lease-seconds", LEASE, "--poll-interval", "0.2", timeout=90)
        assert other.returncode == 0, other.stderr
        assert "took over the lock of release" in other.stdout
        paused.send_signal(signal.SIGCONT)
        assert paused.wait(timeout=60) == d.EXIT_REFUSED
    finally:
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
        stop(paused)
    _, err = served.output("paused")
    assert "the lock was lost before the update" in err and "nothing changed by this run" in err
    # Noticed on its own monotonic clock too, not only from the lock record.
    assert "since its last renewal, longer than its lease (3 s)" in err
    assert served.proxy.seen("UpdateStack") == ["passed"]  # the other release's stage only
    entries = served.agree("1.0.0", staged="1.1.0")
    activate = next(e for e in entries if e.gate == "activate")
    assert activate.result == d.RESULT_FAILED and "nothing switched" in activate.detail


def test_a_waiter_that_found_a_live_holder_refuses_instead_of_following_it(served):
    """Two releases started together: the second waits while the first holds the lock, then the first
    finishes. The second must not then go ahead on what it decided to do before the first changed the stage."""
    assert served.liftoff("stage", "1.1.0").returncode == 0
    held = served.proxy.add("DeleteItem", "hold")  # the first's lock release, at the very end of its run
    first = served.start("first", "activate", "1.1.0", "--yes", "--poll-interval", "0.2")
    second = None
    try:
        held.wait_matched(60)  # the first has switched and verified; its lock is still in the table
        second = served.start("second", "rollback", "--to", "1.0.0", "--yes", "--lease-seconds", "60", "--poll-interval", "0.2")
        deadline = time.monotonic() + 60
        while "the lock is held" not in served.output("second")[0]:
            assert second.poll() is None and time.monotonic() < deadline, served.output("second")
            time.sleep(0.1)
        held.release()
        assert first.wait(timeout=60) == 0
        assert second.wait(timeout=60) == d.EXIT_REFUSED
    finally:
        held.release()
        stop(first)
        if second is not None:
            stop(second)
    assert "its holder finished while this release waited" in served.output("second")[1]
    entries = served.agree("1.1.0")
    assert sorted((e.gate, e.result) for e in entries if e.gate != "stage") == [("activate", d.RESULT_SUCCEEDED),
                                                                                ("rollback", d.RESULT_REFUSED)]


def test_a_closed_stdout_after_a_successful_switch_is_no_traceback_and_exits_with_the_release(served):
    assert served.liftoff("stage", "1.1.0").returncode == 0
    command = " ".join(f"'{part}'" for part in served.argv("activate", "1.1.0", "--yes", "--poll-interval", "0")) + " >&-"
    result = subprocess.run(["bash", "-c", command], cwd=REPO, env=served.env(), capture_output=True, text=True, timeout=90)
    assert (result.returncode, "Traceback" in result.stderr) == (0, False), result.stderr
    assert served.agree("1.1.0")[0].result == d.RESULT_SUCCEEDED


def test_a_typo_is_refused_the_same_way_every_time(emulated_staging):
    from tests.release.helpers import ReleaseStage

    stage = ReleaseStage(emulated_staging)
    runs = [stage.run("activate", "1.1.9", "--yes") for _ in range(2)]
    assert [r.code for r in runs] == [d.EXIT_USAGE, d.EXIT_USAGE]
    assert runs[0].err == runs[1].err and "no release image '1.1.9' in the repository" in runs[0].err
    assert stage.run("stage", "1.1.9").err == stage.run("stage", "1.1.9").err


@pytest.mark.parametrize("argv, message", [
    (["stage", "--json", "--stage", "staging"], "the following arguments are required: version"),
    (["activate", "1.1.0", "--json", "--stage", "staging", "--timeout", "inf"], "argument --timeout: --timeout 'inf' is not allowed"),
    (["--json", "deploy"], "argument VERB: invalid choice: 'deploy'"),
])
def test_a_usage_error_under_json_prints_a_json_document(argv, message):
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--config", str(CDK_JSON)] if "deploy" not in argv else argv, stdout=out, stderr=err,
                environ={k: v for k, v in os.environ.items() if k != "LIFTOFF_RUNTIME"})
    doc = json.loads(out.getvalue())
    assert code == doc["exit_code"] == d.EXIT_USAGE and doc["ok"] is False
    assert doc["error"]["message"].startswith(message) and message in err.getvalue()
