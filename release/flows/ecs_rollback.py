"""`liftoff rollback` and `liftoff status` on an ECS stage with a baking strategy (blue_green, canary, linear).

The decisions are in `release.pure.ecs_deployments`; this module gathers the facts through the adapter,
asks, acts, and says what it did. It takes no lock: it changes no stack parameter, and the release
that holds the lock (the `liftoff activate` whose deployment is baking) is the one that sees its stack
update fail and records that. It records its own ledger entry.
"""
from __future__ import annotations

import signal
from typing import Any

from release.pure import decisions as d
from release.pure import ecs_deployments as e
from release.adapters.aws import MissingOutput
from release.adapters.ledger import new_release_id
from release.flows.context import Abort, Context, Shielded, confirm, signal_of
from release.flows.flow import run_release


def _service(ctx: Context, stack: d.Stack) -> tuple[str, str]:
    for key in ("ClusterName", "EcsServiceName"):
        if not stack.outputs.get(key):
            raise MissingOutput(stack.name, key)
    return stack.outputs["ClusterName"], stack.outputs["EcsServiceName"]


def status(ctx: Context, stack: d.Stack) -> dict[str, Any]:
    """The strategy, the bake window and what is warm; printed, and returned for --json."""
    cluster, service = _service(ctx, stack)
    deployments = ctx.aws.ecs_deployments(cluster, service) if ctx.stage.deployment_strategy != "rolling" else []
    warmth = e.warmth(ctx.stage.deployment_strategy, ctx.stage.bake_seconds, deployments, active=stack.parameters.get(d.IMAGE_TAG))
    for line in warmth.lines:
        ctx.say(f"  deploy   {line}")
    return {"strategy": warmth.strategy, "in_progress": warmth.in_progress, "lifecycle_stage": warmth.stage,
            "serving": warmth.serving, "warm": list(warmth.warm),
            "bake_until": warmth.bake_until.isoformat() if warmth.bake_until else None}


def fast_rollback(ctx: Context) -> dict | None:
    """Move traffic back to the warm previous version, or None when the ordinary rollback applies."""
    if ctx.stage.compute != "ecs" or ctx.stage.deployment_strategy == "rolling":
        return None
    stack = ctx.service_stack()
    cluster, service = _service(ctx, stack)
    plan, why = e.decide_fast_rollback(ctx.stage.deployment_strategy, ctx.aws.ecs_deployments(cluster, service))
    requested = ctx.args.version
    if plan is None or (requested is not None and requested != plan.to_tag):
        ctx.say(f"no traffic flip: {why or f'--to {requested} is not the warm version {plan.to_tag}'}; the ordinary rollback follows")
        return None
    how = "moves production traffic back to" if plan.traffic_moved else "abandons the new tasks and keeps"
    ctx.say(f"plan: rollback {ctx.stage.name}: stop ECS deployment {e.short(plan.arn)} ({plan.from_tag} -> {plan.to_tag}) with ROLLBACK: "
            f"ECS {how} the {plan.to_tag} tasks that still run; no task starts")
    confirm(ctx, f"rollback {ctx.stage.name}: move traffic back {plan.from_tag} -> {plan.to_tag} now?")
    who, release_id, started = ctx.aws.caller_arn(), new_release_id(), ctx.clock()
    deadline = ctx.monotonic() + ctx.args.timeout
    ctx.aws.stop_ecs_deployment(plan.arn)
    ctx.say(f"stopped {e.short(plan.arn)} with ROLLBACK; waiting for ECS")
    try:
        return _after_stop(ctx, plan, who=who, release_id=release_id, started=started, deadline=deadline, stack=stack)
    except KeyboardInterrupt as error:
        # The stop was accepted: ECS moves traffic back whether or not this run waits for it.
        signum = signal_of(error)
        with Shielded():
            detail = f"stopped ECS deployment {e.short(plan.arn)} with ROLLBACK; interrupted by {signal.Signals(signum).name} while waiting"
            entry = ctx.ledger().record(e.fast_rollback_entry(
                plan, release_id=release_id, who=who, started_at=ctx.iso(started), finished_at=ctx.iso(),
                duration_seconds=ctx.clock() - started, settled_ok=False, detail=detail), ctx.stage.name)
        raise Abort(d.EXIT_SIGNAL_BASE + signum, f"{detail}: ECS goes on moving traffic back to {plan.to_tag}",
                    "`liftoff status` shows the deployment and the stack", {"release_id": release_id, "seq": entry.seq}) from None


def _after_stop(ctx: Context, plan: e.FastRollback, *, who: str, release_id: str, started: float, deadline: float,
                stack: d.Stack) -> dict:
    finished = ok = False
    status_now = ""
    while True:
        status_now = ctx.aws.ecs_deployment_status(plan.arn)
        finished, ok = e.rollback_settled(status_now)
        if finished or ctx.monotonic() >= deadline:
            break
        ctx.sleep(ctx.args.poll_interval)
    ctx.say(f"  ECS deployment {e.short(plan.arn)}: {status_now or 'unknown'}")
    follow = "wait"
    current = stack
    while finished and ok:
        current = ctx.service_stack()
        follow = e.parameter_follow_up(stack_status=current.status, image_tag_parameter=current.parameters.get(d.IMAGE_TAG),
                                       serving=plan.to_tag)
        if follow != "wait" or ctx.monotonic() >= deadline:
            break
        ctx.say(f"  waiting for {current.name} ({current.status}): CloudFormation rolls its update back")
        ctx.sleep(ctx.args.poll_interval)
    if not finished:
        detail = f"stopped ECS deployment {e.short(plan.arn)} with ROLLBACK; still {status_now} after {ctx.args.timeout:.0f}s"
    elif not ok:
        detail = f"stopped ECS deployment {e.short(plan.arn)} with ROLLBACK; ECS answered {status_now}"
    else:
        detail = (f"traffic moved back to {plan.to_tag} (ECS deployment {e.short(plan.arn)} stopped with ROLLBACK during the bake); "
                  f"{current.name} {current.status}, ImageTag {current.parameters.get(d.IMAGE_TAG) or '-'}")
    entry = ctx.ledger().record(e.fast_rollback_entry(
        plan, release_id=release_id, who=who, started_at=ctx.iso(started), finished_at=ctx.iso(),
        duration_seconds=ctx.clock() - started, settled_ok=finished and ok, detail=detail), ctx.stage.name)
    result = {"gate": "rollback", "release_id": release_id, "who": who, "from": plan.from_tag, "to": plan.to_tag,
              "fast": True, "deployment": plan.arn, "ecs_status": status_now, "result": entry.result, "detail": detail, "seq": entry.seq}
    if not (finished and ok):
        raise Abort(d.EXIT_AWS if finished else d.EXIT_UNVERIFIED, detail,
                    "`liftoff status` shows the deployment; the ECS console's Deployments tab shows why", result)
    if follow == "wait":
        ctx.say(f"traffic is back on {plan.to_tag}; {current.name} is still {current.status}: when it settles, ImageTag should name "
                f"{plan.to_tag} (`liftoff status`; if it does not, `liftoff rollback --to {plan.to_tag}`)")
        return {**result, "exit_code": d.EXIT_UNVERIFIED}
    if follow == "set":
        # The stack update had finished: the parameter still names the version ECS no longer serves.
        ctx.say(f"traffic is back on {plan.to_tag}, but {current.name} finished its update with ImageTag "
                f"{current.parameters.get(d.IMAGE_TAG) or '-'}: setting ImageTag to {plan.to_tag} (the ordinary rollback)")
        ctx.args.version = plan.to_tag
        ctx.args.yes = True  # confirmed above
        return {**run_release(ctx, "rollback"), "fast": True, "deployment": plan.arn, "traffic_entry_seq": entry.seq}
    ctx.say(f"rollback {plan.to_tag} on {ctx.stage.name}: traffic moved back in {ctx.clock() - started:.1f}s; "
            f"{current.name} ImageTag is {plan.to_tag} (release {release_id})")
    return result
