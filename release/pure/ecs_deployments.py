"""ECS's own deployments (blue/green, canary, linear): what is warm during the bake, and the fast rollback.

With those strategies ECS keeps the previous version's tasks running (and registered in the other
target group) until the bake time after the last traffic shift has passed. A rollback inside that
window is a traffic move back: ECS `StopServiceDeployment` with stopType ROLLBACK on the service
deployment in progress. No task starts, no image is pulled.

The deployment in progress belongs to a CloudFormation update (the ImageTag parameter changed) that
waits for it. Stopping it fails that update, and CloudFormation rolls the stack back, so the ImageTag
parameter names the version that serves again; the `liftoff activate` that started it (if it still
runs) reports exit 5 and records the rollback. If instead the stack update has already finished when
the deployment is stopped, the parameter still names the version that no longer serves: `liftoff
rollback` then sets it to the version that serves, through the ordinary rollback (a new deployment of
the version already serving). docs/release-flow.md describes both, and what only a real account shows.

Pure decisions only, tested directly; release/adapters/ecs_aws.py reads and stops the deployments through boto3.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Sequence

from release.pure import decisions as d

# A deployment ECS is still working on; ListServiceDeployments filters on these.
ACTIVE_STATUSES = ("PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
STOPPABLE_STATUSES = ("PENDING", "IN_PROGRESS")
ROLLING_BACK_STATUSES = ("ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
# Lifecycle stages once production traffic has started to move to the new version.
TRAFFIC_MOVED_STAGES = ("PRODUCTION_TRAFFIC_SHIFT", "POST_PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME", "CLEAN_UP")


@dataclass(frozen=True)
class Revision:
    """One service revision in a deployment: its image tag and how many of its tasks run."""

    tag: str
    running: int = 0
    production_weight: float | None = None


@dataclass(frozen=True)
class ServiceDeployment:
    arn: str
    status: str
    lifecycle_stage: str
    target: Revision
    sources: tuple[Revision, ...] = ()
    bake_minutes: int | None = None
    # When the deployment last changed stage (for BAKE_TIME: when the bake began).
    updated_at: datetime | None = None


@dataclass(frozen=True)
class FastRollback:
    """Stop `arn` with ROLLBACK: traffic goes back from `from_tag` to `to_tag`, whose tasks still run."""

    arn: str
    from_tag: str
    to_tag: str
    traffic_moved: bool


@dataclass(frozen=True)
class Warmth:
    """What `liftoff status` says about an ECS stage's deployment."""

    strategy: str
    in_progress: bool
    stage: str = ""
    serving: str = ""
    warm: tuple[str, ...] = ()
    bake_until: datetime | None = None
    lines: tuple[str, ...] = field(default=())


def image_tag(image: str) -> str:
    """The tag of `repo:tag` or `repo:tag@sha256:...` ('' for a digest-only reference)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def in_flight(deployments: Sequence[ServiceDeployment]) -> ServiceDeployment | None:
    """The deployment ECS is working on (a service has at most one), or None."""
    for deployment in deployments:
        if deployment.status in ACTIVE_STATUSES:
            return deployment
    return None


def decide_fast_rollback(strategy: str, deployments: Sequence[ServiceDeployment]) -> tuple[FastRollback | None, str]:
    """Can `liftoff rollback` move traffic back instead of deploying? (plan, or None and why not)."""
    if strategy == "rolling":
        return None, "deployment_strategy rolling keeps no previous tasks: the rollback is a new deployment"
    deployment = in_flight(deployments)
    if deployment is None:
        return None, "no ECS deployment in progress (the bake is over, the previous tasks are gone): the rollback is a new deployment"
    if deployment.status in ROLLING_BACK_STATUSES:
        return None, f"ECS is already rolling deployment {short(deployment.arn)} back ({deployment.status})"
    if deployment.status not in STOPPABLE_STATUSES:
        return None, f"deployment {short(deployment.arn)} is {deployment.status}"
    previous = [source.tag for source in deployment.sources if source.tag]
    if not previous:
        return None, f"deployment {short(deployment.arn)} names no previous revision to go back to (a first deployment)"
    return FastRollback(
        arn=deployment.arn, from_tag=deployment.target.tag, to_tag=previous[0],
        traffic_moved=deployment.lifecycle_stage in TRAFFIC_MOVED_STAGES,
    ), ""


def rollback_settled(status: str) -> tuple[bool, bool]:
    """(finished, succeeded) for a stopped deployment's status."""
    if status in ("ROLLBACK_SUCCESSFUL", "STOPPED"):
        return True, True
    if status in ("ROLLBACK_FAILED", "SUCCESSFUL"):
        # SUCCESSFUL: it completed before the stop took effect; the new version serves.
        return True, False
    return False, False


def parameter_follow_up(*, stack_status: str, image_tag_parameter: str | None, serving: str) -> str:
    """After traffic went back: "wait" (the stack is still updating or rolling back), "done" (ImageTag names
    what serves), or "set" (the stack finished with ImageTag naming the version that no longer serves)."""
    if stack_status.endswith("_IN_PROGRESS"):
        return "wait"
    if image_tag_parameter == serving:
        return "done"
    return "set"


def warmth(strategy: str, bake_seconds: int, deployments: Sequence[ServiceDeployment], *, active: str | None) -> Warmth:
    """The strategy, the bake window and what is warm, for `liftoff status`."""
    if strategy == "rolling":
        return Warmth(strategy, False, serving=active or "", lines=(
            "rolling: no previous version is kept; a rollback is a new rolling deployment",))
    deployment = in_flight(deployments)
    bake = f"bake {bake_seconds // 60} min"
    if deployment is None:
        return Warmth(strategy, False, serving=active or "", lines=(
            f"{strategy} ({bake}): no deployment in progress; only {active or 'the active version'} runs, nothing is warm "
            "(a rollback is a new deployment)",))
    warm = tuple(source.tag for source in deployment.sources if source.tag and source.running > 0)
    until = None
    if deployment.lifecycle_stage == "BAKE_TIME" and deployment.updated_at is not None:
        until = deployment.updated_at + timedelta(minutes=deployment.bake_minutes if deployment.bake_minutes is not None else bake_seconds // 60)
    moved = deployment.lifecycle_stage in TRAFFIC_MOVED_STAGES
    serving = deployment.target.tag if moved else (warm[0] if warm else active or "")
    lines = [f"{strategy} ({bake}): deployment {short(deployment.arn)} {deployment.status}, stage {deployment.lifecycle_stage or '-'}: "
             f"{(warm or ('-',))[0]} -> {deployment.target.tag or '-'}"]
    if until is not None:
        lines.append(f"bake window until {until.isoformat(timespec='seconds')} (ECS stops the previous tasks then)")
    if warm and deployment.status in STOPPABLE_STATUSES:
        counts = ", ".join(f"{source.tag} ({source.running} task(s))" for source in deployment.sources if source.tag and source.running > 0)
        lines.append(f"warm: {counts}; `liftoff rollback` now moves traffic back without starting a task")
    elif deployment.status in ROLLING_BACK_STATUSES:
        lines.append("ECS is moving traffic back to the previous version")
    return Warmth(strategy, True, stage=deployment.lifecycle_stage, serving=serving, warm=warm, bake_until=until, lines=tuple(lines))


def short(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def fast_rollback_entry(plan: FastRollback, *, release_id: str, who: str, started_at: str, finished_at: str,
                        duration_seconds: float, settled_ok: bool, detail: str) -> d.Entry:
    """The ledger entry of a fast rollback. Recorded as rolled_back, not as a switch: the activation it undid
    never finished (its stack update fails and rolls back), so the ledger's idea of what ran stays right."""
    return d.Entry(
        release_id=release_id, gate="rollback", from_version=plan.from_tag, to_version=plan.to_tag, who=who,
        started_at=started_at, result=d.RESULT_ROLLED_BACK if settled_ok else d.RESULT_FAILED, finished_at=finished_at,
        duration_seconds=duration_seconds, detail=detail,
    )
