"""The bake window after an activation on EC2: watch the release's alarms, roll back on the first one.

On ECS, the deployment controller watches the same alarms itself (deployment alarms with rollback).
On EC2 nothing in AWS does: State Manager has no alarm rollback, and a CloudFormation rollback
trigger would hold the stack in UPDATE_IN_PROGRESS for the whole window, blocking the one command an
operator needs then (a rollback). So `liftoff activate` watches: the switch is done and the lock is
free while it watches (a second operator can roll back at once); when an alarm fires it takes the
lock like any release, checks that the stack still runs the version it released, and rolls back to
the warm previous version, recorded in the ledger as automatic with the alarm's reason.

Known limit, written in docs/release-flow.md: the watch lives as long as the `liftoff activate`
process (an operator's terminal, the CD job). `--no-watch` skips it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ALARM_NAMES_OUTPUT = "DeploymentAlarmNames"

WATCH = "watch"
ROLL_BACK = "roll_back"
SUPERSEDED = "superseded"
BAKED = "baked"


@dataclass(frozen=True)
class BakeCheck:
    action: str  # watch | roll_back | superseded | baked
    reason: str = ""


def alarm_names(outputs: dict[str, str]) -> tuple[str, ...]:
    """The release alarms the stack names in its output (comma-separated), without blanks."""
    return tuple(name.strip() for name in outputs.get(ALARM_NAMES_OUTPUT, "").split(",") if name.strip())


def alarm_reason(firing: Sequence[dict]) -> str:
    return "; ".join(f"alarm {alarm['name']}: {alarm.get('reason') or 'in ALARM'}" for alarm in firing)


def decide_bake(*, now: float, until: float, released: str, active: str | None, firing: Sequence[dict]) -> BakeCheck:
    """What the watch does next. Someone else's switch ends it (their release, their watch); an alarm
    on our version rolls it back, even at the last instant of the window; else it watches to the end."""
    if active != released:
        return BakeCheck(SUPERSEDED, f"the stage runs {active or '-'} now, not {released}: another release changed it")
    if firing:
        return BakeCheck(ROLL_BACK, alarm_reason(firing))
    if now >= until:
        return BakeCheck(BAKED)
    return BakeCheck(WATCH)


def should_watch(*, gate: str, compute: str, bake_seconds: int, requested: bool, result: str) -> bool:
    """Only a succeeded switch on EC2 with a bake window is watched (ECS watches its own deployments)."""
    return requested and gate == "activate" and compute == "ec2" and bake_seconds > 0 and result == "succeeded"


def warm_window(entries: Sequence, *, active: str | None, bake_seconds: int, now: float) -> dict | None:
    """What the last switch left warm and until when, from the ledger (newest first): the version it
    switched from stays warm for `bake_seconds` after the switch finished. None when nothing is warm."""
    from datetime import datetime

    for entry in entries:
        if entry.gate not in ("activate", "rollback") or entry.result not in ("succeeded", "unverified"):
            continue
        if entry.to_version != active or not entry.from_version or not entry.finished_at:
            return None
        finished = datetime.fromisoformat(entry.finished_at.replace("Z", "+00:00")).timestamp()
        until = finished + bake_seconds
        if now >= until:
            return None
        return {"version": entry.from_version, "until": until, "seconds_left": until - now}
    return None
