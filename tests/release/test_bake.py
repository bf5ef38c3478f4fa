"""The bake window on ec2: `liftoff activate` watches the release alarms and rolls back on the first one."""
from __future__ import annotations

import pytest

from release.pure import bake
from release.pure import decisions as d
from tests.release.helpers import EmulatedRuntime, FakeTime, ReleaseStage

FIRING = [{"name": "production-service-Http5xx-ABC", "reason": "Threshold Crossed: 1 datapoint [12.5] was greater than the threshold (1.0)"}]


# --- the decisions ------------------------------------------------------------------------------

def test_an_alarm_on_the_released_version_rolls_back_even_at_the_last_instant():
    check = bake.decide_bake(now=100, until=100, released="1.1.0", active="1.1.0", firing=FIRING)
    assert check.action == bake.ROLL_BACK
    assert check.reason == "alarm production-service-Http5xx-ABC: Threshold Crossed: 1 datapoint [12.5] was greater than the threshold (1.0)"


def test_quiet_alarms_watch_until_the_window_ends():
    assert bake.decide_bake(now=99, until=100, released="1.1.0", active="1.1.0", firing=[]).action == bake.WATCH
    assert bake.decide_bake(now=100, until=100, released="1.1.0", active="1.1.0", firing=[]).action == bake.BAKED


def test_someone_elses_switch_ends_the_watch_without_rolling_anything_back():
    check = bake.decide_bake(now=1, until=100, released="1.1.0", active="1.0.0", firing=FIRING)
    assert check.action == bake.SUPERSEDED and "runs 1.0.0 now, not 1.1.0" in check.reason


@pytest.mark.parametrize("gate, compute, bake_seconds, requested, result, watched", [
    ("activate", "ec2", 300, True, "succeeded", True),
    ("activate", "ecs", 300, True, "succeeded", False),  # ECS deployments watch their own alarms
    ("activate", "ec2", 0, True, "succeeded", False),
    ("activate", "ec2", 300, False, "succeeded", False),  # --no-watch
    ("activate", "ec2", 300, True, "unverified", False),
    ("rollback", "ec2", 300, True, "succeeded", False),  # a rollback is never rolled back by the watch
])
def test_what_is_watched(gate, compute, bake_seconds, requested, result, watched):
    assert bake.should_watch(gate=gate, compute=compute, bake_seconds=bake_seconds, requested=requested, result=result) is watched


def test_alarm_names_come_from_the_stack_output():
    assert bake.alarm_names({"DeploymentAlarmNames": "a-1, b-2,"}) == ("a-1", "b-2")
    assert bake.alarm_names({}) == ()


# --- the watch, on the emulated production stage (ec2) -----------------------------------------

@pytest.fixture
def production(deploy_emulated_stage) -> ReleaseStage:
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0", "1.1.0"))
    stage = ReleaseStage(deploy_emulated_stage("production", image_tag="1.0.0"))
    assert stage.run("stage", "1.1.0").code == 0
    return stage


def deployment_alarms(production: ReleaseStage) -> list[str]:
    outputs = production.emulated.service_outputs
    names = bake.alarm_names(outputs)
    assert len(names) == 2, outputs.get("DeploymentAlarmNames")
    return list(names)


def activate(production: ReleaseStage, *extra: str, on_sleep=None):
    time = FakeTime(on_sleep=on_sleep)
    run = production.run("activate", "1.1.0", "--yes", *extra, clock=time.monotonic, monotonic=time.monotonic, sleep=time.sleep)
    return run, time


def test_an_alarm_in_the_bake_window_rolls_back_to_the_warm_version_and_says_why(production):
    cloudwatch = production.emulated.client("cloudwatch")
    alarm = deployment_alarms(production)[0]
    reason = "Threshold Crossed: 1 out of the last 1 datapoints [37.5] was greater than the threshold (1.0)"
    sleeps = []

    def fire_on_the_third_poll():
        sleeps.append(1)
        if len(sleeps) == 3:
            cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason=reason)

    run, time = activate(production, on_sleep=fire_on_the_third_poll)
    assert run.code == d.EXIT_AUTO_ROLLED_BACK, run.out + run.err
    assert f"ALARM in the bake window of 1.1.0: alarm {alarm}: {reason}" in run.out
    assert "rolling back to 1.0.0 automatically" in run.out
    assert production.parameters()["ImageTag"] == "1.0.0"
    last = production.entries()[0]  # newest first
    assert (last.gate, last.from_version, last.to_version, last.result) == ("rollback", "1.1.0", "1.0.0", d.RESULT_SUCCEEDED)
    assert last.detail.startswith(f"automatic rollback: alarm {alarm}: {reason}")
    history = production.run("history")
    assert "automatic rollback" in history.out
    # The watch held no lock while it watched: the rollback took it like any release, and freed it.
    assert "free" in production.run("lock").out


def test_a_quiet_bake_window_ends_with_the_release_in_place(production):
    run, time = activate(production)
    assert run.code == 0, run.out + run.err
    assert "baked: no release alarm in 300 s; 1.1.0 stays" in run.out
    assert 300 <= time.slept <= 310
    assert production.parameters()["ImageTag"] == "1.1.0"
    assert production.entries()[0].gate == "activate"


def test_another_operators_rollback_inside_the_window_ends_the_watch(production):
    def someone_rolls_back():
        if production.parameters()["ImageTag"] == "1.1.0":
            assert production.run("rollback", "--yes").code == 0

    run, _ = activate(production, on_sleep=someone_rolls_back)
    assert run.code == 0, run.out + run.err
    assert "stopped watching: the stage runs 1.0.0 now, not 1.1.0: another release changed it" in run.out
    assert [entry.gate for entry in production.entries()[:2]] == ["rollback", "activate"]


def test_no_watch_returns_once_the_switch_is_verified(production):
    run, time = activate(production, "--no-watch")
    assert run.code == 0 and "bake window" not in run.out and time.slept == 0


def test_ctrl_c_stops_the_watch_and_keeps_the_release(production):
    def interrupt():
        raise KeyboardInterrupt

    run, _ = activate(production, on_sleep=interrupt)
    assert run.code == 130, run.out + run.err
    assert "stopped watching the bake window (SIGINT); 1.1.0 stays active and recorded, 1.0.0 stays warm until" in run.err
    assert production.parameters()["ImageTag"] == "1.1.0"
    assert production.entries()[0].result == d.RESULT_SUCCEEDED


# --- what `liftoff status` shows as warm ----------------------------------------------------------

def entry(gate, from_version, to_version, finished_at, result="succeeded"):
    return d.Entry(release_id="r", gate=gate, from_version=from_version, to_version=to_version, who="w",
                   started_at=finished_at, result=result, finished_at=finished_at)


def test_the_version_switched_from_is_warm_for_the_bake_window():
    from datetime import datetime

    switched = datetime.fromisoformat("2026-11-28T10:00:00+00:00").timestamp()
    entries = [entry("stage", "1.1.0", "1.2.0", "2026-11-28T10:01:00.000Z"),
               entry("activate", "1.0.0", "1.1.0", "2026-11-28T10:00:00.000Z")]
    warm = bake.warm_window(entries, active="1.1.0", bake_seconds=300, now=switched + 100)
    assert warm == {"version": "1.0.0", "until": switched + 300, "seconds_left": 200}
    assert bake.warm_window(entries, active="1.1.0", bake_seconds=300, now=switched + 300) is None
    # The stack runs something else than the last switch recorded: nothing is known to be warm.
    assert bake.warm_window(entries, active="1.2.0", bake_seconds=300, now=switched + 1) is None
    # A refused or failed attempt switched nothing: the switch before it decides.
    refused = [entry("rollback", "1.1.0", "1.0.0", "2026-11-28T10:02:00.000Z", result="refused"), *entries]
    assert bake.warm_window(refused, active="1.1.0", bake_seconds=300, now=switched + 10)["version"] == "1.0.0"


def test_status_on_an_ec2_stage_claims_warm_only_where_hosts_report_it(production):
    assert production.run("activate", "1.1.0", "--yes", "--no-watch").code == 0
    status = production.run("status")
    # The emulator runs no host: the stand-in's reports hold nothing warm, and the ledger's bake window is no
    # evidence (tests/release/test_host_reports.py has hosts that do report a warm version).
    assert "warm     nothing reported warm by the hosts; a rollback to 1.0.0 starts it again" in status.out
    assert "a traffic flip" not in status.out



def test_an_automatic_rollback_never_lands_on_a_version_whose_own_switch_was_unverified(deploy_emulated_stage):
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0", "1.1.0", "1.2.0"))
    production = ReleaseStage(deploy_emulated_stage("production", image_tag="1.0.0"))
    assert production.run("stage", "1.1.0").code == 0
    time = FakeTime()
    never_healthy = production.run("activate", "1.1.0", "--yes", "--no-watch", "--verify-timeout", "0",
                                   aws=EmulatedRuntime(production.emulated, healthy=False), monotonic=time.monotonic, sleep=time.sleep)
    assert never_healthy.code == d.EXIT_UNVERIFIED
    assert production.run("stage", "1.2.0").code == 0
    alarm = deployment_alarms(production)[0]
    cloudwatch = production.emulated.client("cloudwatch")
    time = FakeTime(on_sleep=lambda: cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM", StateReason="5xx"))
    run = production.run("activate", "1.2.0", "--yes", clock=time.monotonic, monotonic=time.monotonic, sleep=time.sleep)
    assert run.code == d.EXIT_AUTO_ROLLED_BACK, run.out + run.err
    assert ("1.1.0 is skipped: its own switch ended unverified (never seen running healthy); going to 1.0.0, the newest "
            "version before it not recorded unverified") in run.out
    assert "rolling back to 1.0.0 automatically" in run.out
    assert production.parameters()["ImageTag"] == "1.0.0"
    last = production.entries()[0]
    assert (last.gate, last.from_version, last.to_version, last.result) == ("rollback", "1.2.0", "1.0.0", d.RESULT_SUCCEEDED)
    assert production.ledger().read_lock() is None
