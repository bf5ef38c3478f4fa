"""An ec2 activation holds scale-in off its hosts: `activate`/`rollback` suspend the group's Terminate and
AZRebalance for the update and resume what they suspended on every way out (release/pure/scale_in.py decides,
release/flows/flow.py acts). Against moto's Auto Scaling, which keeps and reports SuspendedProcesses."""
from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from release.pure import decisions as d
from release.pure import scale_in
from release.adapters.ledger import entry_key
from tests.release.helpers import EmulatedRuntime, FakeTime, ReleaseStage, RollsBack

PROCESSES = {"Terminate", "AZRebalance"}


# --- the decision, pure ----------------------------------------------------------------------------

def test_only_what_is_not_suspended_already_is_suspended_and_only_that_resumed():
    assert scale_in.to_suspend([]) == ["Terminate", "AZRebalance"]
    assert scale_in.to_suspend(["Terminate", "Launch"]) == ["AZRebalance"]
    assert scale_in.kept(["Terminate", "Launch"]) == ["Terminate"]
    assert scale_in.to_suspend(["AZRebalance", "Terminate"]) == []
    # Resumed: ours still suspended; an operator's Terminate (not ours) stays, as does what someone resumed already.
    assert scale_in.to_resume(["AZRebalance"], ["Terminate", "AZRebalance"]) == ["AZRebalance"]
    assert scale_in.to_resume(["Terminate", "AZRebalance"], ["AZRebalance"]) == ["AZRebalance"]
    assert scale_in.to_resume([], ["Terminate"]) == []


def test_the_entrys_note_names_what_the_run_suspended_and_reads_back():
    note = scale_in.note("svc-Group-1A2B", ["Terminate", "AZRebalance"])
    assert scale_in.suspended_by(f"forced: not staged; {note}; rolled back") == ("svc-Group-1A2B", ["Terminate", "AZRebalance"])
    assert scale_in.note("g", []) == "" and scale_in.suspended_by("forced: not staged") is None
    assert scale_in.suspended_by(scale_in.note("g", ["AZRebalance"])) == ("g", ["AZRebalance"])


# --- on the emulated production stage (ec2) ----------------------------------------------------------

class Watching(EmulatedRuntime):
    """Reads the group's suspended processes while the stack update is under way."""

    def __init__(self, emulated, **kwargs):
        super().__init__(emulated, **kwargs)
        self.during: list[str] | None = None
        self.fail_update: Exception | None = None

    def update_parameters(self, name, parameters):
        self.during = self.suspended_processes(self.emulated.service_outputs["AutoScalingGroupName"])
        if self.fail_update is not None:
            raise self.fail_update
        super().update_parameters(name, parameters)


class WatchingRollsBack(RollsBack):
    def update_parameters(self, name, parameters):
        self.during = self.suspended_processes(self.emulated.service_outputs["AutoScalingGroupName"])
        super().update_parameters(name, parameters)


@pytest.fixture
def production(deploy_emulated_stage):
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0", "1.1.0"))
    stage = ReleaseStage(deploy_emulated_stage("production", image_tag="1.0.0"))
    assert stage.run("stage", "1.1.0").code == 0
    return stage


def group(stage) -> str:
    return stage.emulated.service_outputs["AutoScalingGroupName"]


def suspended(stage) -> set[str]:
    found = stage.emulated.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group(stage)])
    return {p["ProcessName"] for p in found["AutoScalingGroups"][0].get("SuspendedProcesses", [])}


def run(stage, runtime, *argv):
    time = FakeTime()
    return stage.run(*argv, aws=runtime, monotonic=time.monotonic, sleep=time.sleep)


def test_activate_suspends_terminate_and_azrebalance_during_the_update_and_resumes_them(production):
    runtime = Watching(production.emulated)
    result = run(production, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == 0, result.out + result.err
    assert set(runtime.during) == PROCESSES
    assert suspended(production) == set()
    assert f"{group(production)}: suspended Terminate, AZRebalance for the update" in result.out
    assert f"{group(production)}: resumed Terminate, AZRebalance" in result.out
    # The entry says what the run suspended: that is what a takeover of a killed run would resume.
    assert scale_in.suspended_by(production.entries()[0].detail) == (group(production), ["Terminate", "AZRebalance"])


def test_a_rollback_holds_scale_in_too(production):
    assert run(production, EmulatedRuntime(production.emulated), "activate", "1.1.0", "--yes", "--no-watch").code == 0
    runtime = Watching(production.emulated)
    result = run(production, runtime, "rollback", "--yes")
    assert result.code == 0, result.out + result.err
    assert set(runtime.during) == PROCESSES and suspended(production) == set()


def test_an_update_cloudformation_rolled_back_resumes_them(production):
    runtime = WatchingRollsBack(production.emulated)
    result = run(production, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == d.EXIT_ROLLED_BACK, result.out + result.err
    assert set(runtime.during) == PROCESSES
    assert suspended(production) == set()


@pytest.mark.parametrize("stop", [EndpointConnectionError(endpoint_url="https://cloudformation.example"), KeyboardInterrupt()],
                         ids=["aws-error", "ctrl-c"])
def test_an_exception_in_the_update_resumes_them(production, stop):
    runtime = Watching(production.emulated)
    runtime.fail_update = stop
    result = run(production, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code not in (0, 1), result.out + result.err  # told as an interruption, not a crash
    assert set(runtime.during) == PROCESSES
    assert suspended(production) == set()
    assert production.entries()[0].result != d.RESULT_IN_PROGRESS


def test_an_operators_own_suspension_is_kept_and_said(production):
    asg = production.emulated.client("autoscaling")
    asg.suspend_processes(AutoScalingGroupName=group(production), ScalingProcesses=["Terminate"])
    runtime = Watching(production.emulated)
    result = run(production, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == 0, result.out + result.err
    assert set(runtime.during) == PROCESSES
    assert suspended(production) == {"Terminate"}
    assert "Terminate already suspended, not by this release: left suspended afterwards" in result.out
    assert f"{group(production)}: resumed AZRebalance" in result.out
    assert scale_in.suspended_by(production.entries()[0].detail) == (group(production), ["AZRebalance"])


def test_a_killed_runs_suspension_is_resumed_by_the_takeover_and_status_shows_it_meanwhile(production):
    # A run killed (SIGKILL) mid-update: its lock, its in_progress entry naming what it suspended, the group suspended.
    ledger = production.ledger()
    asg = production.emulated.client("autoscaling")
    asg.suspend_processes(AutoScalingGroupName=group(production), ScalingProcesses=["Terminate", "AZRebalance", "Launch"])
    killed = ledger.start(d.Entry(release_id="killed", gate="activate", from_version="1.0.0", to_version="1.1.0",
                                  who="arn:aws:sts::123456789012:assumed-role/ci/other-job",
                                  started_at="2026-01-01T00:00:00.000Z",
                                  detail=scale_in.note(group(production), ["Terminate", "AZRebalance"])), "production")
    ledger.create_lock(d.Lock(holder="ci/other-job", release_id="killed", gate="activate", version="1.1.0",
                              acquired_at="2026-01-01T00:00:00.000Z", record_version="v0", lease_seconds=60.0,
                              activity="waiting for CloudFormation"), epoch=1_800_000_000)
    ledger.heartbeat("killed", record_version="v1", at="x", epoch=0, entry_key=entry_key(killed))

    status = run(production, EmulatedRuntime(production.emulated), "status")
    assert status.code == 0, status.out + status.err
    line = next(l for l in status.out.splitlines() if l.startswith("  suspended "))
    assert set(line.split(" on ")[0].split("suspended ")[1].split(", ")) == {"Terminate", "AZRebalance", "Launch"}
    assert "release killed holds the lock" in line
    assert f"aws autoscaling resume-processes --auto-scaling-group-name {group(production)} --scaling-processes" in line

    result = run(production, EmulatedRuntime(production.emulated), "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == 0, result.out + result.err
    assert "took over the lock of release killed" in result.out
    assert f"resumed Terminate, AZRebalance that release killed suspended" in result.out
    # Launch was not the killed run's to resume: it stays (someone else suspended it).
    assert suspended(production) == {"Launch"}
    after = run(production, EmulatedRuntime(production.emulated), "status")
    assert f"  suspended Launch on {group(production)} (no release is running" in after.out


def test_status_says_plainly_when_nothing_is_suspended(production):
    status = run(production, EmulatedRuntime(production.emulated), "status")
    assert f"  suspended nothing on {group(production)}" in status.out
    doc = run(production, EmulatedRuntime(production.emulated), "status", "--json").json
    assert doc["suspended_processes"] == []
