"""What a release does, in order, with the stage's lock held: the lease and its heartbeat, the gates on
fresh reads, the switch, the wait, the verification, and the truth when any of it is interrupted.

`release.cli` parses arguments and prints; this module decides nothing itself (`release.decisions`
does) and calls AWS only through the adapter (`release.aws`).

Order of a release (`run_release`):
  1. the tag's form is checked (no AWS needed);
  2. the lock is taken: free -> taken; held -> watched for up to one lease on our own clock: renewed
     (holder alive) -> refused and recorded; unchanged (holder dead) -> taken over and the dead run's
     entry closed with what the stack says now;
  3. a heartbeat renews the lease every third of it and says what the release is doing;
  4. under the lock, on fresh reads: the gates (rollback target, image, scan, staged, already active);
     a refusal or a no-op is recorded;
  5. the plan is printed, confirmed, the entry written, the stack updated, waited for, verified;
  6. if anything stops it after the entry was written (a signal, an AWS error, a lost connection, a
     timeout) the stack is read back and the entry records what really happened;
  7. the lock is released (only if still ours).
"""
from __future__ import annotations
from __future__ import annotations

import argparse
import signal
from dataclasses import asdict, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from release import bake
from release import decisions as d
from release import schema_flow
from release.aws import MissingOutput, healthy_and_unhealthy
from release.context import (Abort, Context, Interrupted, Shielded, WaitTimedOut, client_error_text, confirm, error_text,
                             raise_on_signal, record, signal_of)
from release.lease import Lease, LockCollision, acquire, close_orphan, describe_lock
from release.ledger import Ledger, new_release_id

# Names other modules and the tests take from here (the CLI, ecs_rollback).
__all__ = ["Abort", "Context", "Interrupted", "WaitTimedOut", "describe_lock", "raise_on_signal", "run_release", "run_unlock",
           "running_now", "signal_of"]


# --- the release ----------------------------------------------------------------------------------

def run_release(ctx: Context, gate: str) -> dict:
    args = ctx.args
    requested = args.version
    if requested is not None:
        tag_refusal = d.check_tag(requested)
        if tag_refusal:  # bad input needs no lock, no AWS and no record
            raise Abort(tag_refusal.exit_code, tag_refusal.message, tag_refusal.hint)
    ledger = ctx.ledger()
    who = ctx.aws.caller_arn()
    release_id = new_release_id()
    base: dict[str, Any] = {"gate": gate, "release_id": release_id, "who": who}
    try:
        lease, taken_over = acquire(ctx, ledger, gate=gate, version=requested or "(rollback)", who=who, release_id=release_id)
    except LockCollision as collision:
        refusal = d.lock_refusal(collision.lock, collision.why)
        recorded = record(ctx, ledger, gate=gate, release_id=release_id, who=who, from_version="", to_version=requested or "",
                           result=d.RESULT_REFUSED, detail=f"lock held: {refusal.message}")
        raise Abort(refusal.exit_code, refusal.message, refusal.hint, {**base, "result": d.RESULT_REFUSED, "seq": recorded.seq}) from None
    lease.start()
    try:
        orphan = None
        if taken_over is not None:
            ctx.say(f"took over the lock of release {taken_over.release_id} ({taken_over.gate} {taken_over.version} by "
                    f"{taken_over.holder}, last: {taken_over.activity or '-'}): unchanged for its whole lease "
                    f"({taken_over.lease_seconds:.0f} s), so its holder is gone")
            orphan = close_orphan(ctx, ledger, taken_over,
                                  f"its run stopped without finishing (lease of {taken_over.lease_seconds:.0f} s passed with no "
                                  f"heartbeat; taken over by release {release_id})")
        base["lock_taken_over"] = asdict(taken_over) if taken_over else None
        base["orphan_closed"] = asdict(orphan) if orphan else None
        outcome = _under_lock(ctx, gate, ledger, lease, who, release_id, base)  # fills in base's from/to/digest/forced
        released = {**base, **outcome}
    finally:
        with Shielded():
            if not lease.end():
                ctx.say(f"could not release the lock (AWS unreachable?); it frees itself {lease.lock.lease_seconds:.0f} s "
                        "after its last heartbeat, and the next release records what happened")
    if bake.should_watch(gate=gate, compute=ctx.stage.compute, bake_seconds=ctx.stage.bake_seconds,
                         requested=bool(getattr(args, "watch", False)), result=released.get("result", "")):
        released = _bake_window(ctx, released)
    return released


def _bake_window(ctx: Context, released: dict) -> dict:
    """Watch the release alarms through the stage's bake window, the lock free; roll back on an alarm."""
    tag, previous = released["to"], released["from"]
    stack = ctx.service_stack()
    names = bake.alarm_names(stack.outputs)
    if not names:
        ctx.say(f"not watching: {stack.name} has no {bake.ALARM_NAMES_OUTPUT} output (deploy the current stacks); "
                f"{previous or '-'} stays warm for {ctx.stage.bake_seconds} s")
        return released
    until = ctx.clock() + ctx.stage.bake_seconds
    ctx.say(f"bake window: watching {', '.join(names)} until {ctx.iso(until)} ({ctx.stage.bake_seconds} s); "
            f"{previous or '-'} stays warm, and an alarm rolls back to it. The lock is free; Ctrl-C stops watching "
            "(the release stays).")
    try:
        while True:
            active = ctx.service_stack().parameters.get(d.IMAGE_TAG)
            check = bake.decide_bake(now=ctx.clock(), until=until, released=tag, active=active,
                                     firing=ctx.aws.firing_alarms_named(names))
            if check.action != bake.WATCH:
                break
            ctx.sleep(max(ctx.args.poll_interval, 1.0))
    except KeyboardInterrupt as error:
        signum = signal_of(error) or signal.SIGINT
        raise Abort(d.EXIT_SIGNAL_BASE + signum,
                    f"stopped watching the bake window ({signal.Signals(signum).name}); {tag} stays active and recorded, "
                    f"{previous or '-'} stays warm until {ctx.iso(until)}",
                    f"`liftoff rollback --stage {ctx.stage.name}` before then is a flip", released) from None
    released["bake"] = {"action": check.action, "reason": check.reason, "until": ctx.iso(until), "alarms": list(names)}
    if check.action == bake.BAKED:
        ctx.say(f"baked: no release alarm in {ctx.stage.bake_seconds} s; {tag} stays")
        return released
    if check.action == bake.SUPERSEDED:
        ctx.say(f"stopped watching: {check.reason}")
        return released
    ctx.say(f"ALARM in the bake window of {tag}: {check.reason}")
    ctx.say(f"rolling back to {previous} automatically")
    automatic = argparse.Namespace(**{**vars(ctx.args), "version": previous, "yes": True, "force": False,
                                      "watch": False, "automatic": check.reason})
    original, ctx.args = ctx.args, automatic
    try:
        rolled_back = run_release(ctx, "rollback")
    finally:
        ctx.args = original
    released["auto_rollback"] = {k: v for k, v in rolled_back.items() if k not in ("events",)}
    released["exit_code"] = d.EXIT_AUTO_ROLLED_BACK if rolled_back.get("result") == d.RESULT_SUCCEEDED else rolled_back.get("exit_code", d.EXIT_UNVERIFIED)
    return released


class Attempt:
    """One release under the lock, in the order it happens (`_under_lock` reads as that order): the fresh
    reads, the gates, the plan and its confirmation, the entry, the update, the wait, the verification,
    and the truth when any of it is cut short. Each step is a method; what a step learns it keeps here."""

    def __init__(self, ctx: Context, gate: str, ledger: Ledger, lease: Lease, who: str, release_id: str, base: dict):
        self.ctx, self.gate, self.ledger, self.lease, self.who, self.release_id, self.base = (
            ctx, gate, ledger, lease, who, release_id, base)
        self.key = d.GATE_PARAMETER[gate]
        self.stack: d.Stack | None = None
        self.entries: list[d.Entry] = []
        self.from_version = self.tag = self.digest = ""
        self.active: str | None = None
        self.staged: str | None = None
        self.forced = False
        self.ran_before: set[str] = set()
        self.changes: dict[str, tuple[str, str]] = {}
        self.entry: d.Entry | None = None
        self.started = 0.0
        self.outcome: dict[str, Any] = {}

    # --- before anything changes ------------------------------------------------------------------

    def read_facts(self) -> None:
        self.lease.doing("checking the gates (fresh reads under the lock)")
        self.stack = self.ctx.service_stack()
        self.entries = self.ledger.entries()
        self.from_version = self.stack.parameters.get(self.key, "")
        self.active, self.staged = self.stack.parameters.get(d.IMAGE_TAG), self.stack.parameters.get(d.STAGED_IMAGE_TAG)

    def refused(self, decision: d.Decision, tag: str | None = None) -> Abort:
        tag = self.tag if tag is None else tag
        entry = record(self.ctx, self.ledger, gate=self.gate, release_id=self.release_id, who=self.who,
                       from_version=self.from_version, to_version=tag, result=d.RESULT_REFUSED, detail=decision.message,
                       digest=self.digest)
        return Abort(decision.exit_code, decision.message, decision.hint,
                     {**self.base, "from": self.from_version, "to": tag, "result": d.RESULT_REFUSED, "seq": entry.seq})

    def choose_target(self) -> None:
        """The version this run goes to: the one named, or for a bare rollback the one the ledger says."""
        tag = self.ctx.args.version
        if self.gate == "rollback":
            target = d.decide_rollback_target(tag, active=self.active, entries=self.entries)
            if not target.proceeds:
                raise self.refused(target, tag or "")
            tag = target.message
            refusal = d.check_tag(tag)
            if refusal:
                raise self.refused(refusal, tag)
        self.tag = tag

    def decide(self) -> d.Decision:
        """The gates on fresh reads (image, scan, staged, already there, schema); a refusal is recorded and raised."""
        args = self.ctx.args
        images = self.ctx.aws.images(self.ctx.repository())
        known = d.released_versions(self.entries) | {v for v in (self.active, self.staged) if v}
        self.ran_before = d.ran_on_stage(self.entries, self.active) | {v for v in (self.active,) if v}
        common = dict(images=images, stack=self.stack, fail_severity=args.fail_severity, known_versions=known)
        if self.gate == "stage":
            decision = d.decide_stage(self.tag, **common)
        else:
            decision = d.decide_activate(self.tag, gate=self.gate, force=bool(getattr(args, "force", False)),
                                         ran_before=self.ran_before, **common)
        self.digest = images[self.tag].digest if self.tag in images else ""
        self.base.update({"from": self.from_version, "to": self.tag, "digest": self.digest})
        if decision.action == "refuse":
            raise self.refused(decision)
        if decision.proceeds and self.gate != "stage":  # the schema gate; --force never skips it
            schema_refusal = schema_flow.check_switch(self.ctx, self.ledger, self.lease, who=self.who, stack=self.stack,
                                                      tag=self.tag, entries=self.entries)
            if schema_refusal is not None:
                raise self.refused(schema_refusal)
        return decision

    def record_noop(self, decision: d.Decision) -> dict:
        entry = record(self.ctx, self.ledger, gate=self.gate, release_id=self.release_id, who=self.who,
                       from_version=self.from_version, to_version=self.tag, result=d.RESULT_NOOP, detail=decision.message,
                       digest=self.digest)
        self.ctx.say(f"nothing to do: {decision.message}")
        return {"forced": False, "result": d.RESULT_NOOP, "message": decision.message, "seq": entry.seq}

    def plan(self) -> list[dict[str, str]]:
        """Every stack parameter for the update (the gate's one changed), printed and confirmed."""
        ctx, args, stack = self.ctx, self.ctx.args, self.stack
        inputs = ctx.aws.parameter_inputs(stack)
        try:
            parameters = d.parameters_for(inputs, self.gate, self.tag)
        except ValueError as error:
            raise self.refused(d.refuse(d.EXIT_AWS, f"cannot update {stack.name}: {error}")) from None
        self.changes = d.changed_parameters(inputs, parameters)
        # Recorded as forced only when --force actually skipped the staging requirement.
        force = bool(getattr(args, "force", False))
        self.forced = force and self.staged != self.tag and (
            self.gate == "activate" or (self.gate == "rollback" and self.tag not in self.ran_before))
        self.base["forced"] = self.forced
        why = "undo the last release" if self.gate == "rollback" and args.version is None else self.gate
        if getattr(args, "automatic", ""):
            why = "automatic: a release alarm fired"
        ctx.say(f"plan: {self.gate} {ctx.stage.name}: {self.key} {self.from_version or '-'} -> {self.tag} ({why}"
                + ("; forced: not staged" if self.forced else "") + ")")
        if self.gate != "stage":
            self.lease.doing("waiting for confirmation")
            confirm(ctx, f"{self.gate} {ctx.stage.name}: switch the running version {self.from_version or '-'} -> {self.tag}?")
        return parameters

    # --- the entry, the switch, the outcome -------------------------------------------------------

    def start_entry(self) -> None:
        """The entry's place is reserved and named in the lock before the entry is written, so whoever takes
        the lock over after a crash finds it (and finds nothing to close if the crash came first)."""
        ctx = self.ctx
        self.started = ctx.clock()
        automatic = getattr(ctx.args, "automatic", "")
        note = "; ".join(part for part in (f"automatic rollback: {automatic}" if automatic else "",
                                           "forced: not staged" if self.forced else "") if part)
        entry = d.Entry(release_id=self.release_id, gate=self.gate, from_version=self.from_version, to_version=self.tag,
                        who=self.who, started_at=ctx.iso(self.started), digest=self.digest, forced=self.forced, detail=note,
                        seq=self.ledger.next_seq())
        self.lease.renew(activity=f"updating {self.stack.name}: {self.key} {self.from_version or '-'} -> {self.tag}",
                         entry=entry, version=self.tag)
        self.entry = self.ledger.start(entry, ctx.stage.name)
        self.outcome = {"result": d.RESULT_IN_PROGRESS, "seq": self.entry.seq}

    def finish(self, result: str, detail: str) -> None:
        # The start's own note (e.g. forced) stays in front of the outcome: the entry is completed, not rewritten.
        detail = "; ".join(part for part in (self.entry.detail, detail) if part)
        self.outcome.update(result=result, detail=detail)
        self.ledger.finish(self.entry, result=result, finished_at=self.ctx.iso(), duration_seconds=self.ctx.clock() - self.started,
                           detail=detail)
        self.outcome["finished"] = True  # only once written: a failed write still gets the read-back path

    def public(self) -> dict:
        return {k: v for k, v in self.outcome.items() if k != "finished"}

    def aborted(self, exit_code: int, message: str, hint: str) -> Abort:
        return Abort(exit_code, message, hint, {**self.base, **self.public()})

    def update(self, parameters: list[dict[str, str]]) -> set[str]:
        """UpdateStack, only while the lease still holds; the stack's event ids before it, to follow the update."""
        ctx, stack = self.ctx, self.stack
        if self.lease.lost:
            self.finish(d.RESULT_FAILED, "the lock was broken (`liftoff unlock`) before the update; nothing changed")
            raise self.aborted(d.EXIT_REFUSED, "the lock was broken before the update; nothing changed",
                               "`liftoff history` shows who broke it; run the command again")
        for name, (old, new) in self.changes.items():
            ctx.say(f"{stack.name}: {name} {old or '-'} -> {new}")
        seen = ctx.aws.stack_event_ids(stack.name)
        try:
            ctx.aws.update_parameters(stack.name, parameters)
        except ClientError as error:
            # CloudFormation answered with a refusal: the update was not accepted.
            self.finish(d.RESULT_FAILED, f"CloudFormation refused the update: {client_error_text(error)}; nothing changed")
            raise self.aborted(d.EXIT_AWS, self.outcome["detail"], "fix the cause and run the same command again") from None
        return seen

    def wait(self, seen: set[str]) -> d.Stack:
        self.lease.doing(f"waiting for CloudFormation: {self.stack.name} {self.key} -> {self.tag}")
        final, events = _wait(self.ctx, self.stack.name, seen)
        self.outcome["events"] = events
        return final

    def judge_update(self, final: d.Stack) -> dict | None:
        """A rolled-back or failed update ends the release here (returned or raised); None when it completed."""
        ctx, gate, stack = self.ctx, self.gate, self.stack
        result = d.stack_outcome(final.status)
        if result == d.RESULT_ROLLED_BACK:
            failing = d.failing_events(self.outcome["events"])
            reasons = "; ".join(f"{e['LogicalResourceId']} {e['ResourceStatus']}: {e['ResourceStatusReason']}" for e in failing)
            self.finish(d.RESULT_ROLLED_BACK, reasons or final.status_reason or "rolled back")
            self.outcome["failing_events"] = failing
            ctx.say(f"FAILED: CloudFormation rolled {stack.name} back; {self.from_version or '-'} is still "
                    f"{'staged' if gate == 'stage' else 'active'}.")
            for event in failing:
                ctx.say(f"  {event['LogicalResourceId']} ({event['ResourceType']}) {event['ResourceStatus']}: {event['ResourceStatusReason']}")
            self.outcome["exit_code"] = d.EXIT_ROLLED_BACK
            return self.public()
        if result != d.RESULT_SUCCEEDED:
            settled = d.settle(gate=gate, from_version=self.from_version, to_version=self.tag, stack=final,
                               cause=f"stack ended in {final.status}: {final.status_reason}")
            self.finish(settled.result if settled.result != d.RESULT_INTERRUPTED else d.RESULT_FAILED, settled.detail)
            raise self.aborted(d.EXIT_AWS, f"{stack.name} ended in {final.status}: {settled.detail}",
                               "see the events above and `liftoff status`; repair the stack before the next release")
        return None

    def verify(self, final: d.Stack) -> dict | None:
        """activate/rollback: is the version seen running healthy? None when verified; the unverified outcome otherwise."""
        ctx, tag = self.ctx, self.tag
        self.lease.doing(f"verifying {tag} runs")
        verified, message = _verify(ctx, final, tag)
        self.outcome["verification"] = {"verified": verified, "message": message}
        if verified:
            ctx.say(f"verified: {message}")
            return None
        self.finish(d.RESULT_UNVERIFIED, message)
        ctx.say(f"NOT VERIFIED: {message}")
        back = d.rollback_target(self.ledger.entries(), tag)
        ctx.say(f"  {tag} is set active but not confirmed running healthy; check `liftoff status`; "
                f"`liftoff rollback --stage {ctx.stage.name}` returns to {back or self.from_version or '-'}")
        self.outcome["exit_code"] = d.EXIT_UNVERIFIED
        return self.public()

    def succeeded(self) -> dict:
        self.finish(d.RESULT_SUCCEEDED, self.outcome.get("verification", {}).get("message", ""))
        self.ctx.say(f"{self.gate} {self.tag} on {self.ctx.stage.name}: succeeded in {self.ctx.clock() - self.started:.1f}s "
                     f"(release {self.release_id})")
        return self.public()

    def told_truth(self, error: BaseException) -> Abort:
        """Something stopped the release after its entry was written: read the stack back, record that, say it."""
        ctx, gate, key, tag, from_version, lease = self.ctx, self.gate, self.key, self.tag, self.from_version, self.lease
        signum = signal_of(error)
        if signum is not None:
            cause = f"interrupted by {signal.Signals(signum).name}"
        elif isinstance(error, WaitTimedOut):
            cause = str(error)
        elif isinstance(error, (BotoCoreError, ClientError)):
            cause = f"AWS error: {error_text(error)}"
        else:
            cause = f"stopped by {type(error).__name__}: {error}"
        with Shielded():
            try:
                stack = ctx.service_stack()
            except Exception:
                stack = None
            settled = d.settle(gate=gate, from_version=from_version, to_version=tag, stack=stack, cause=cause)
            verification = self.outcome.get("verification", {})
            if settled.switched and verification.get("verified"):  # it got as far as seeing the version run
                settled = replace(settled, result=d.RESULT_SUCCEEDED, exit_code=d.EXIT_OK,
                                  detail=f"{settled.detail.replace(', not verified running healthy', '')}; verified: {verification['message']}")
            recorded = True
            try:
                self.finish(settled.result, settled.detail)
            except Exception:
                recorded = False
                lease.keep_for_takeover = True
        if settled.switched:
            now = f"{key} is now {settled.value}: the switch happened" + (
                "" if gate == "stage" else ", verified" if settled.result == d.RESULT_SUCCEEDED else ", not verified")
            hint = (f"check `liftoff status --stage {ctx.stage.name}`" +
                    ("" if gate == "stage" else f"; `liftoff rollback --stage {ctx.stage.name}` returns to {from_version or '-'}"))
        elif settled.switched is False:
            now = f"{key} is still {settled.value or '-'}: nothing switched"
            hint = "run the same command again when the cause is fixed"
        else:
            now = f"whether {key} became {tag} is not known yet" + (f" ({self.stack.name} {stack.status})" if stack is not None else "")
            hint = f"follow it with `liftoff status --stage {ctx.stage.name}`; the update may still complete"
        if not recorded:
            hint += (f"; the ledger could not be written now, so the lock is kept: the next release takes it over after "
                     f"its lease ({lease.lock.lease_seconds:.0f} s) and records the outcome of release {self.release_id} "
                     "from the stack (or `liftoff unlock` does)")
        exit_code = d.EXIT_SIGNAL_BASE + signum if signum is not None else settled.exit_code
        extra = {**self.base, **self.public(), "result": settled.result, "switched": settled.switched, "value_now": settled.value}
        return Abort(exit_code, f"{cause}; {now} (recorded as {settled.result})" if recorded else f"{cause}; {now}", hint, extra)


def _under_lock(ctx: Context, gate: str, ledger: Ledger, lease: Lease, who: str, release_id: str, base: dict) -> dict:
    """A release with the lock held, step by step; fills in `base`'s from/to/digest/forced."""
    attempt = Attempt(ctx, gate, ledger, lease, who, release_id, base)
    attempt.read_facts()
    attempt.choose_target()
    decision = attempt.decide()
    if decision.action == "noop":
        return attempt.record_noop(decision)
    parameters = attempt.plan()
    attempt.start_entry()
    try:
        seen = attempt.update(parameters)
        final = attempt.wait(seen)
        ended = attempt.judge_update(final)
        if ended is None and gate != "stage":
            ended = attempt.verify(final)
        return ended if ended is not None else attempt.succeeded()
    except BaseException as error:
        if attempt.outcome.get("finished") or isinstance(error, Abort):
            raise
        raise attempt.told_truth(error) from None


def _wait(ctx: Context, stack_name: str, seen: set[str]) -> tuple[d.Stack, list[dict]]:
    """Poll until the stack leaves *_IN_PROGRESS, printing each new event as it comes."""
    deadline = ctx.monotonic() + ctx.args.timeout
    events: list[dict] = []
    while True:
        for event in ctx.aws.new_stack_events(stack_name, seen):
            events.append(event)
            ctx.say(f"  {event['time']} {event['LogicalResourceId']} {event['ResourceStatus']}"
                    + (f" {event['ResourceStatusReason']}" if event["ResourceStatusReason"] else ""))
        stack = ctx.aws.stack(stack_name)
        if not stack.status.endswith("_IN_PROGRESS"):
            for event in ctx.aws.new_stack_events(stack_name, seen):
                events.append(event)
                ctx.say(f"  {event['time']} {event['LogicalResourceId']} {event['ResourceStatus']}")
            return stack, events
        if ctx.monotonic() >= deadline:
            raise WaitTimedOut(f"timed out after {ctx.args.timeout:.0f}s waiting for {stack_name} ({stack.status})")
        ctx.sleep(ctx.args.poll_interval)


def _verify(ctx: Context, stack: d.Stack, tag: str) -> tuple[bool, str]:
    deadline = ctx.monotonic() + ctx.args.verify_timeout
    while True:
        running = running_now(ctx, stack)
        healthy, unhealthy = healthy_and_unhealthy(running["targets"])
        if running["compute"] == "ec2":
            verified, message = d.verify_ec2(
                tag, association_parameter=running["association_parameter"], association_status=running["association_status"],
                instance_count=len([h for h in running["hosts"] if h["state"] == "InService"]),
                desired_count=running["desired_count"], healthy_targets=healthy, unhealthy_targets=unhealthy,
            )
        else:
            verified, message = d.verify_ecs(
                tag, task_definition_image=running["task_definition_image"],
                running_images=[t["image"] for t in running["tasks"]], desired_count=running["desired_count"],
                healthy_targets=healthy, unhealthy_targets=unhealthy,
            )
        # A State Manager association that ran for this tag and Failed will not turn healthy by waiting.
        final = running["compute"] == "ec2" and running["association_parameter"] == tag and running["association_status"].startswith("Failed")
        if verified or final or ctx.monotonic() >= deadline:
            return verified, message
        ctx.say(f"  waiting: {message}")
        ctx.sleep(max(ctx.args.poll_interval, 0.0))


def running_now(ctx: Context, stack: d.Stack) -> dict:
    outputs = stack.outputs
    compute = outputs.get("ComputeMode", ctx.stage.compute)
    # ECS blue/green, canary and linear serve from either group after a release: both count.
    targets = [target for key in ("TargetGroupArn", "AlternateTargetGroupArn") if outputs.get(key)
               for target in ctx.aws.target_health(outputs[key])]
    if compute == "ec2":
        for key in ("AutoScalingGroupName", "ActivateAssociationId"):
            if not outputs.get(key):
                raise MissingOutput(stack.name, key)
        ec2 = ctx.aws.ec2_running(outputs["AutoScalingGroupName"], outputs["ActivateAssociationId"])
        return {"compute": "ec2", "targets": targets, "hosts": ec2["instances"], "desired_count": ec2["desired_count"],
                "association_parameter": ec2["association_parameter"], "association_status": ec2["association_status"]}
    for key in ("ClusterName", "EcsServiceName"):
        if not outputs.get(key):
            raise MissingOutput(stack.name, key)
    ecs = ctx.aws.ecs_running(outputs["ClusterName"], outputs["EcsServiceName"])
    return {"compute": "ecs", "targets": targets, "tasks": ecs["tasks"], "desired_count": ecs["desired_count"],
            "task_definition_image": ecs["task_definition_image"]}



# --- the lock by hand -----------------------------------------------------------------------------

def run_unlock(ctx: Context) -> dict:
    ledger = ctx.ledger()
    lock = ledger.read_lock()
    if lock is None:
        ctx.say(f"the lock of {ctx.stage.name} is free; nothing to unlock")
        return {"lock": None, "broken": False}
    ctx.say(f"lock of {ctx.stage.name}:")
    for line in describe_lock(lock):
        ctx.say(f"  {line}")
    confirm(ctx, f"break this lock? If release {lock.release_id} is still running it keeps going without it "
                  "and another release could start beside it")
    who = ctx.aws.caller_arn()
    if not ledger.release(lock.release_id):
        raise Abort(d.EXIT_REFUSED, f"the lock changed while you confirmed (release {lock.release_id} no longer holds it); nothing broken",
                    "run `liftoff lock` to see who holds it now")
    orphan = close_orphan(ctx, ledger, lock, f"its lock was broken by {who} with `liftoff unlock`")
    detail = (f"broke the lock of release {lock.release_id} ({lock.gate} {lock.version} by {lock.holder}; "
              f"last: {lock.activity or '-'} since {lock.activity_at or '-'})")
    if orphan is not None:
        detail += f"; closed its entry as {orphan.result}"
    entry = record(ctx, ledger, gate="unlock", release_id=new_release_id(), who=who, from_version="",
                    to_version=lock.version, result=d.RESULT_SUCCEEDED, detail=detail)
    ctx.say(f"unlocked {ctx.stage.name}: {detail}")
    return {"lock": asdict(lock), "broken": True, "seq": entry.seq, "orphan_closed": asdict(orphan) if orphan else None}

