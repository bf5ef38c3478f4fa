"""release/pure/ecs_deployments.py and release/flows/ecs_rollback.py: the fast rollback during an ECS bake.

moto (5.2.5) has no ECS service deployments API (ListServiceDeployments, DescribeServiceDeployments,
DescribeServiceRevisions, StopServiceDeployment raise NotImplementedError), so:
- the decisions are tested directly here;
- the adapter's calls are checked against botocore's own ECS service model (botocore's Stubber refuses
  a parameter the real API does not take) with answers shaped like the API reference's examples;
- the command flow runs on the emulated stage with a stand-in for ECS's deployment (the way
  local/runtime.py stands in for what runs), for the branch the emulator can hold: the stack update has
  already finished, so the parameter must be set after traffic went back;
- the real adapter against the emulator's moto_server, which answers these calls from the ECS stand-in's
  deployments, in tests/local/test_moto_live.py, and on real tasks in tests/local/test_ecs_stage.py.
"""
from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber

from release.pure import decisions as d
from release.pure import ecs_deployments as e
from release.adapters import ecs_aws
from tests.release.helpers import EmulatedRuntime

T0 = datetime(2026, 11, 28, 5, 0, tzinfo=timezone.utc)
ARN = "arn:aws:ecs:us-east-1:123456789012:service-deployment/c/s/NCWGC2ZR-taawPAYrIaU5"


def deployment(status="IN_PROGRESS", stage="BAKE_TIME", *, old=("1.0.0", 1), new=("1.1.0", 1), bake=5) -> e.ServiceDeployment:
    return e.ServiceDeployment(
        arn=ARN, status=status, lifecycle_stage=stage, target=e.Revision(new[0], new[1]),
        sources=(e.Revision(old[0], old[1]),) if old else (), bake_minutes=bake, updated_at=T0,
    )


# --- decisions ---------------------------------------------------------------------------------------

def test_image_tag_reads_the_tag_of_a_repository_reference():
    assert e.image_tag("123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:1.4.2") == "1.4.2"
    assert e.image_tag("localhost:5000/repo:v1.0.0-rc.1@sha256:abc") == "v1.0.0-rc.1"
    assert e.image_tag("localhost:5000/repo@sha256:abc") == ""


@pytest.mark.parametrize("stage, moved", [("BAKE_TIME", True), ("PRODUCTION_TRAFFIC_SHIFT", True), ("SCALE_UP", False)])
def test_a_baking_deployment_is_stopped_with_rollback_to_the_warm_version(stage, moved):
    plan, why = e.decide_fast_rollback("blue_green", [deployment(stage=stage)])
    assert why == ""
    assert plan == e.FastRollback(arn=ARN, from_tag="1.1.0", to_tag="1.0.0", traffic_moved=moved)


@pytest.mark.parametrize("strategy, deployments, reason", [
    ("rolling", [deployment()], "rolling keeps no previous tasks"),
    ("blue_green", [], "no ECS deployment in progress"),
    ("canary", [deployment(status="ROLLBACK_IN_PROGRESS")], "already rolling deployment NCWGC2ZR-taawPAYrIaU5 back"),
    ("linear", [deployment(old=None)], "names no previous revision"),
    ("blue_green", [deployment(status="SUCCESSFUL")], "no ECS deployment in progress"),
])
def test_no_fast_rollback_says_why(strategy, deployments, reason):
    plan, why = e.decide_fast_rollback(strategy, deployments)
    assert plan is None and reason in why


@pytest.mark.parametrize("status, settled", [
    ("ROLLBACK_SUCCESSFUL", (True, True)), ("ROLLBACK_FAILED", (True, False)), ("SUCCESSFUL", (True, False)),
    ("ROLLBACK_IN_PROGRESS", (False, False)), ("ROLLBACK_REQUESTED", (False, False)),
])
def test_a_stopped_deployment_settles(status, settled):
    assert e.rollback_settled(status) == settled


@pytest.mark.parametrize("stack_status, parameter, follow", [
    ("UPDATE_ROLLBACK_IN_PROGRESS", "1.1.0", "wait"),
    ("UPDATE_IN_PROGRESS", "1.1.0", "wait"),
    # CloudFormation rolled its update back: ImageTag names what serves again.
    ("UPDATE_ROLLBACK_COMPLETE", "1.0.0", "done"),
    # The update had finished before the stop: the parameter must follow the traffic.
    ("UPDATE_COMPLETE", "1.1.0", "set"),
])
def test_the_image_tag_parameter_ends_up_naming_what_serves(stack_status, parameter, follow):
    assert e.parameter_follow_up(stack_status=stack_status, image_tag_parameter=parameter, serving="1.0.0") == follow


def test_status_shows_the_bake_window_and_what_is_warm():
    warmth = e.warmth("blue_green", 300, [deployment(old=("1.0.0", 2))], active="1.1.0")
    assert (warmth.in_progress, warmth.serving, warmth.warm, warmth.bake_until) == (True, "1.1.0", ("1.0.0",), datetime(2026, 11, 28, 5, 5, tzinfo=timezone.utc))
    text = "\n".join(warmth.lines)
    assert "bake window until 2026-11-28T05:05:00+00:00" in text
    assert "warm: 1.0.0 (2 task(s)); `liftoff rollback` now moves traffic back without starting a task" in text
    # Before production traffic moved, the old version still serves; no bake window yet.
    early = e.warmth("canary", 300, [deployment(stage="SCALE_UP")], active="1.1.0")
    assert (early.serving, early.bake_until) == ("1.0.0", None)
    idle = e.warmth("blue_green", 300, [], active="1.1.0")
    assert not idle.in_progress and "nothing is warm" in idle.lines[0]
    assert "no previous version is kept" in e.warmth("rolling", 300, [], active="1.1.0").lines[0]


def test_a_fast_rollback_entry_is_not_a_switch_so_the_ledger_still_knows_what_ran():
    entries = [
        d.Entry(release_id="a", gate="activate", from_version="0.9.0", to_version="1.0.0", who="w", started_at="1", result=d.RESULT_SUCCEEDED, seq=1),
        d.Entry(release_id="b", gate="activate", from_version="1.0.0", to_version="1.1.0", who="w", started_at="2", result=d.RESULT_ROLLED_BACK, seq=2),
    ]
    plan, _ = e.decide_fast_rollback("blue_green", [deployment()])
    fast = e.fast_rollback_entry(plan, release_id="c", who="w", started_at="3", finished_at="3", duration_seconds=1.0, settled_ok=True, detail="x")
    assert (fast.gate, fast.from_version, fast.to_version, fast.result) == ("rollback", "1.1.0", "1.0.0", d.RESULT_ROLLED_BACK)
    newest_first = [fast, *reversed(entries)]
    # 1.0.0 serves; the next rollback still goes one further back, to 0.9.0.
    assert d.rollback_target(newest_first, "1.0.0") == "0.9.0"


# --- the adapter, against botocore's ECS model -----------------------------------------------------------

def test_the_adapter_reads_deployments_and_stops_with_rollback_as_the_api_defines():
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    old_rev, new_rev = "arn:aws:ecs:us-east-1:123456789012:service-revision/c/s/1", "arn:aws:ecs:us-east-1:123456789012:service-revision/c/s/2"
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:{}"
    with Stubber(ecs) as stub:
        stub.add_response("list_service_deployments", {"serviceDeployments": [{"serviceDeploymentArn": ARN, "status": "IN_PROGRESS"}]},
                          {"cluster": "c", "service": "s", "status": list(e.ACTIVE_STATUSES)})
        stub.add_response("describe_service_deployments", {"serviceDeployments": [{
            "serviceDeploymentArn": ARN, "status": "IN_PROGRESS", "lifecycleStage": "BAKE_TIME", "updatedAt": T0,
            "targetServiceRevision": {"arn": new_rev, "runningTaskCount": 1},
            "sourceServiceRevisions": [{"arn": old_rev, "runningTaskCount": 1}],
            "deploymentConfiguration": {"bakeTimeInMinutes": 5, "strategy": "BLUE_GREEN"},
        }]}, {"serviceDeploymentArns": [ARN]})
        stub.add_response("describe_service_revisions", {"serviceRevisions": [
            {"serviceRevisionArn": old_rev, "containerImages": [{"containerName": "app", "image": image.format("1.0.0")}]},
            {"serviceRevisionArn": new_rev, "containerImages": [{"containerName": "migrate", "image": image.format("1.1.0")},
                                                                 {"containerName": "app", "image": image.format("1.1.0")}]},
        ]}, {"serviceRevisionArns": sorted([old_rev, new_rev])})
        stub.add_response("stop_service_deployment", {"serviceDeploymentArn": ARN}, {"serviceDeploymentArn": ARN, "stopType": "ROLLBACK"})
        stub.add_response("describe_service_deployments", {"serviceDeployments": [{"serviceDeploymentArn": ARN, "status": "ROLLBACK_SUCCESSFUL"}]},
                          {"serviceDeploymentArns": [ARN]})
        (read,) = ecs_aws.read_deployments(ecs, "c", "s")
        ecs_aws.stop_with_rollback(ecs, ARN)
        assert ecs_aws.deployment_status(ecs, ARN) == "ROLLBACK_SUCCESSFUL"
        stub.assert_no_pending_responses()
    assert read == deployment(old=("1.0.0", 1), new=("1.1.0", 1))


# --- the command, with a stand-in for ECS's deployment -----------------------------------------------------

class BakingEcs(EmulatedRuntime):
    """The emulated stage's runtime plus a stand-in for one ECS deployment baking 1.1.0 with 1.0.0 warm.
    moto has no such deployment; this answers the three calls the fast rollback makes, in the API's order
    of states (IN_PROGRESS -> ROLLBACK_IN_PROGRESS -> ROLLBACK_SUCCESSFUL after the stop)."""

    def __init__(self, emulated, *, answers=("ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL")):
        super().__init__(emulated)
        self.stopped: list[str] = []
        self.answers = list(answers)

    def ecs_deployments(self, cluster, service):
        return [] if self.stopped else [deployment()]

    def stop_ecs_deployment(self, arn):
        self.stopped.append(arn)

    def ecs_deployment_status(self, arn):
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def test_rollback_during_the_bake_moves_traffic_back_and_the_parameter_follows(released_staging):
    assert released_staging.run("stage", "1.1.0").code == 0
    assert released_staging.run("activate", "1.1.0", "--yes").code == 0
    ecs = BakingEcs(released_staging.emulated)
    status = released_staging.run("status", aws=ecs)
    assert "deploy   blue_green (bake 5 min): deployment NCWGC2ZR-taawPAYrIaU5 IN_PROGRESS, stage BAKE_TIME: 1.0.0 -> 1.1.0" in status.out
    assert "warm: 1.0.0 (1 task(s))" in status.out
    run = released_staging.run("rollback", "--yes", aws=ecs)
    assert run.code == 0, run.out + run.err
    assert ecs.stopped == [ARN]
    assert "stop ECS deployment NCWGC2ZR-taawPAYrIaU5 (1.1.0 -> 1.0.0) with ROLLBACK" in run.out
    # The emulator's stack update had already finished (moto does not wait for a deployment), so the
    # parameter still named 1.1.0: the ordinary rollback sets it to the version that serves.
    assert "setting ImageTag to 1.0.0" in run.out
    assert released_staging.parameters()["ImageTag"] == "1.0.0"
    traffic, switch = sorted((x for x in released_staging.entries() if x.gate == "rollback"), key=lambda x: x.seq)
    assert (traffic.from_version, traffic.to_version, traffic.result) == ("1.1.0", "1.0.0", d.RESULT_ROLLED_BACK)
    assert "stopped with ROLLBACK during the bake" in traffic.detail
    assert (switch.from_version, switch.to_version, switch.result) == ("1.1.0", "1.0.0", d.RESULT_SUCCEEDED)


def test_a_rollback_ecs_cannot_finish_is_reported_not_hidden(released_staging):
    assert released_staging.run("stage", "1.1.0").code == 0
    assert released_staging.run("activate", "1.1.0", "--yes").code == 0
    ecs = BakingEcs(released_staging.emulated, answers=("ROLLBACK_FAILED",))
    run = released_staging.run("rollback", "--yes", aws=ecs)
    assert run.code == d.EXIT_AWS and "ECS answered ROLLBACK_FAILED" in run.err
    assert released_staging.parameters()["ImageTag"] == "1.1.0"  # nothing else was changed
    newest = max(released_staging.entries(), key=lambda x: x.seq)
    assert (newest.gate, newest.result) == ("rollback", d.RESULT_FAILED)


def test_without_a_deployment_in_progress_the_ordinary_rollback_runs(released_staging):
    assert released_staging.run("stage", "1.1.0").code == 0
    assert released_staging.run("activate", "1.1.0", "--yes").code == 0
    run = released_staging.run("rollback", "--yes")
    assert run.code == 0
    assert "no traffic flip: no ECS deployment in progress" in run.out
    assert released_staging.parameters()["ImageTag"] == "1.0.0"


def test_an_interrupted_wait_after_the_stop_says_the_traffic_still_moves_back(released_staging):
    import signal

    from release.flows.flow import Interrupted

    assert released_staging.run("stage", "1.1.0").code == 0
    assert released_staging.run("activate", "1.1.0", "--yes").code == 0
    ecs = BakingEcs(released_staging.emulated, answers=("ROLLBACK_IN_PROGRESS",))

    def sigterm(_seconds):
        raise Interrupted(signal.SIGTERM)

    run = released_staging.run("rollback", "--yes", aws=ecs, sleep=sigterm)
    assert run.code == d.EXIT_SIGNAL_BASE + signal.SIGTERM
    assert "interrupted by SIGTERM while waiting: ECS goes on moving traffic back to 1.0.0" in run.err
    newest = max(released_staging.entries(), key=lambda x: x.seq)
    assert (newest.gate, newest.from_version, newest.to_version, newest.result) == ("rollback", "1.1.0", "1.0.0", d.RESULT_FAILED)
