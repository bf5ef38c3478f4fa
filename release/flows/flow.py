"""What a release does, in order, with the stage's lock held: the lease and its heartbeat, the gates on
fresh reads, the switch, the wait, the verification, and the truth when any of it is interrupted.

`release.cli` parses arguments and prints; this module decides nothing itself (`release.pure.decisions`
does) and calls AWS only through the adapter (`release.adapters.aws`).

Order of a release (`run_release`):
  1. the tag's form is checked (no AWS needed);
  2. the lock is taken: free -> taken; held -> watched for up to one lease on our own clock: renewed
     (holder alive) -> refused and recorded; unchanged (holder dead) -> taken over and the dead run's
     entry closed with what the stack says now, and the group processes its entry says it suspended resumed;
  3. a heartbeat renews the lease every third of it and says what the release is doing;
  4. under the lock, on fresh reads: the gates (rollback target, image, scan, staged, already active);
     a refusal is recorded; "already there" is a no-op only if every host agrees (where hosts report),
     else the gate is re-run on the hosts (a re-drive) instead of updating the stack;
  5. the plan is printed, confirmed, the entry written; the lease is proven against the lock record
     (the fence), the stack updated, waited for, verified (where hosts report: on every host's report); an ec2
     activate/rollback suspends the group's Terminate and AZRebalance first and resumes its own on every way out;
  6. if anything stops it after the entry was written (a signal, an AWS error, a lost connection, a
     timeout) the stack is read back and the entry records what really happened;
  7. the lock is released (only if still ours; kept, carrying the outcome, when the ledger refused it);
  8. with the lock free: an activation a host's canary held back is rolled back automatically, as a release
     of its own (exit 7); a verified ec2 activation is watched through the bake window, and an alarm there
     rolls it back the same way.
"""
from __future__ import annotations

import argparse
import signal
from dataclasses import asdict, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from release.pure import bake
from release.pure import decisions as d
from release.pure import fleet
from release.pure import scale_in
from release.adapters.aws import MissingOutput, healthy_and_unhealthy
from release.adapters.ledger import Ledger, new_release_id
from release.flows import schema_flow
from release.flows.context import (Abort, Context, Deferred, Interrupted, Shielded, WaitTimedOut, client_error_text, confirm,
                                   error_text, raise_on_signal, record, signal_of)
from release.flows.lease import Lease, LeaseLost, LockCollision, acquire, close_orphan, describe_lock

# How long a read-back follows an accepted update still in progress before saying "unknown".
SETTLE_SECONDS = 60.0

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
            base["scale_in_resumed"] = resume_orphans_hold(ctx, ledger, taken_over)
        base["lock_taken_over"] = asdict(taken_over) if taken_over else None
        base["orphan_closed"] = asdict(orphan) if orphan else None
        outcome = _under_lock(ctx, gate, ledger, lease, who, release_id, base)  # fills in base's from/to/digest/forced
        released = {**base, **outcome}
    finally:
        with Shielded():
            if not lease.end():
                ctx.say(f"could not release the lock (AWS unreachable?); it frees itself {lease.lock.lease_seconds:.0f} s "
                        "after its last heartbeat, and the next release records what happened")
    if released.get("canary") and released.get("result") != d.RESULT_ROLLED_BACK:
        # A host's canary held the version back: it is not watched (it never served everywhere); it is undone
        # (unless CloudFormation already did, as on AWS where the association's failure fails the update).
        return _canary_held_back(ctx, released)
    if bake.should_watch(gate=gate, compute=ctx.stage.compute, bake_seconds=ctx.stage.bake_seconds,
                         requested=bool(getattr(args, "watch", False)), result=released.get("result", "")):
        released = _bake_window(ctx, released)
    return released


def _canary_held_back(ctx: Context, released: dict) -> dict:
    """A host's canary judged the activated version bad: roll the stage back to what served, as an alarm would."""
    tag, canary = released["to"], released["canary"]
    previous = released["from"]
    if previous == tag:  # a re-drive: the stack named the version before this run; the ledger knows what it replaced
        previous = d.previous_version(ctx.ledger().entries(), tag)
    return _roll_back_automatically(ctx, released, previous=previous,
                                    note=f"the canary on {canary['host']} judged {tag} bad: {canary['reason']}",
                                    why=f"the canary on {canary['host']} held {tag} back")


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
    return _roll_back_automatically(ctx, released, previous=previous, note=check.reason, why="a release alarm fired")


def _roll_back_automatically(ctx: Context, released: dict, *, previous: str | None, note: str, why: str) -> dict:
    """Roll back what `released` switched to, as a release of its own (the lock taken again), recorded as
    automatic with `note`; exit 7 when that rollback succeeds. Never to a version whose own switch ended
    unverified (`d.auto_rollback_target`); with none, nothing moves and the release stays (exit 6)."""
    tag = released["to"]
    target, skipped = d.auto_rollback_target(ctx.ledger().entries(), released=tag, previous=previous)
    if target is None:
        released["exit_code"] = d.EXIT_UNVERIFIED
        ctx.say(f"NOT rolling back automatically: {skipped}; {tag} stays active. Choose a version: "
                f"`liftoff rollback --stage {ctx.stage.name} --to VERSION`")
        released["auto_rollback"] = {"result": "not attempted", "reason": skipped}
        return released
    if skipped:
        ctx.say(skipped)
    ctx.say(f"rolling back to {target} automatically")
    automatic = argparse.Namespace(**{**vars(ctx.args), "version": target, "yes": True, "force": False,
                                      "watch": False, "automatic": note, "automatic_why": why})
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
        self.final: d.Stack | None = None  # the stack as the wait saw it settle
        self.hosts: list[fleet.HostTruth] | None = None  # the hosts' own reports, where they report
        self.redrive = ""  # set when the stack already names the target but hosts disagree: the gate runs again
        self.one_wave = False  # every host flips at once (fleet.one_wave)
        self.canary_host: str | None = None  # the fleet's canary: its gate runs alone before the stack moves
        self.flip_first = False  # a warm wave: every host flips through Run Command before the stack moves
        self.inputs: dict[str, str] = {}  # the stack's parameters as the update starts from them
        self.hold: tuple[str, list[str]] | None = None  # the ec2 group and the processes this run suspends
        self.start_note = ""

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
        if decision.action == "noop":
            # The stack already names it; "nothing to do" only if every host agrees, by its own report.
            self.hosts = host_truths(self.ctx, self.stack)
            if self.hosts is not None and fleet.disagreeing(self.gate, self.tag, self.hosts):
                self.redrive = fleet.redrive_message(self.gate, self.tag, self.hosts)
                decision = d.proceed(self.redrive)
            elif self.hosts is not None:
                decision = d.noop(f"{decision.message}, and every host in service ({len(self.hosts)}) reports it")
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
        inputs = self.inputs = ctx.aws.parameter_inputs(stack)
        concurrency = None
        if self.gate != "stage" and d.ACTIVATE_CONCURRENCY in inputs:
            if self.hosts is None:
                self.hosts = host_truths(ctx, stack)
            self.one_wave = fleet.one_wave(self.gate, self.tag, self.hosts)
            self.flip_first = self.one_wave and fleet.ACTIVATE_DOCUMENT_OUTPUT in stack.outputs
            if not self.one_wave and fleet.ACTIVATE_DOCUMENT_OUTPUT in stack.outputs:
                self.canary_host = fleet.fleet_canary(self.gate, self.tag, self.hosts, canary_on=_canary_on(ctx.stage))
            concurrency = (d.EVERY_HOST_AT_ONCE if self.one_wave else d.IN_WAVES if self.canary_host
                           else d.ONE_HOST_AT_A_TIME)
        try:
            parameters = d.parameters_for(inputs, self.gate, self.tag, concurrency=concurrency)
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
            why = f"automatic: {getattr(args, 'automatic_why', '') or 'a release alarm fired'}"
        ctx.say(f"plan: {self.gate} {ctx.stage.name}: {self.key} {self.from_version or '-'} -> {self.tag} ({why}"
                + ("; forced: not staged" if self.forced else "")
                + (f"; every host holds {self.tag} warm: all {len(self.hosts or [])} flip at once" if self.one_wave else "")
                + (" (Run Command), then the stack follows" if self.flip_first else "")
                + (f"; {self.canary_host} is the fleet's canary: its gate runs alone first, then the rest "
                   f"{d.IN_WAVES} of the fleet at a time" if self.canary_host else "")
                + ")")
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
                                           "forced: not staged" if self.forced else "",
                                           f"re-drive: {self.redrive}" if self.redrive else "") if part)
        self.start_note = note
        note = "; ".join(part for part in (note, self.hold_note) if part)
        entry = d.Entry(release_id=self.release_id, gate=self.gate, from_version=self.from_version, to_version=self.tag,
                        who=self.who, started_at=ctx.iso(self.started), digest=self.digest, forced=self.forced, detail=note,
                        seq=self.ledger.next_seq())
        activity = (f"re-running the {fleet.HOST_GATE[self.gate]} gate of {self.tag} on the hosts" if self.redrive
                    else f"updating {self.stack.name}: {self.key} {self.from_version or '-'} -> {self.tag}")
        self.lease.renew(activity=activity, entry=entry, version=self.tag)
        self.entry = self.ledger.start(entry, ctx.stage.name)
        self.outcome = {"result": d.RESULT_IN_PROGRESS, "seq": self.entry.seq}

    def finish(self, result: str, detail: str) -> None:
        # The start's own note (e.g. forced) stays in front of the outcome: the entry is completed, not rewritten.
        # The scale-in note goes last: the outcome (e.g. a canary's verdict) is what a reader needs first.
        detail = "; ".join(part for part in (self.start_note, detail, self.hold_note) if part)
        self.outcome.update(result=result, detail=detail)
        try:
            self.ledger.finish(self.entry, result=result, finished_at=self.ctx.iso(),
                               duration_seconds=self.ctx.clock() - self.started, detail=detail)
        except (BotoCoreError, ClientError) as error:
            self.outcome.setdefault("ledger_refused", error_text(error))
            raise
        self.outcome["finished"] = True  # only once written: a failed write still gets the read-back path

    def public(self) -> dict:
        return {k: v for k, v in self.outcome.items() if k != "finished"}

    def aborted(self, exit_code: int, message: str, hint: str) -> Abort:
        return Abort(exit_code, message, hint, {**self.base, **self.public()})

    def update(self, parameters: list[dict[str, str]]) -> set[str]:
        """UpdateStack, only while the lease provably holds; the stack's event ids before it, to follow the update.

        Fencing: right before the call the lock record is written conditionally on still being ours (`Lease.fence`),
        and the call goes out only if less than one lease has passed on the monotonic clock since that proof (a
        SIGSTOP'd laptop resumed later proves it again, and finds the lock taken over). A signal during the call
        waits for its answer (`Deferred`), so "accepted or not" is known; the read-back then follows what lands."""
        ctx, stack = self.ctx, self.stack
        for name, (old, new) in self.changes.items():
            ctx.say(f"{stack.name}: {name} {old or '-'} -> {new}")
        seen = ctx.aws.stack_event_ids(stack.name)
        proven = self.prove_lease(f"updating {stack.name}: {self.key} {self.from_version or '-'} -> {self.tag}")
        try:
            with Deferred():
                self.outcome["update"] = "sent"
                ctx.aws.update_parameters(stack.name, parameters)
                self.outcome["update"] = "accepted"
        except ClientError as error:
            # CloudFormation answered with a refusal: the update was not accepted.
            self.outcome["update"] = "refused"
            canary = self.outcome.get("fleet_canary", {})
            flipped = self.outcome.get("warm_flip", {}).get("flipped")
            if canary.get("result") == "passed":
                changed = (f"the stack is unchanged, but {canary['host']} (the fleet's canary host) already serves {self.tag}: "
                           f"`liftoff activate {self.from_version} --stage {ctx.stage.name}` puts it back")
            elif flipped:
                changed = (f"the stack is unchanged, but {', '.join(flipped)} already serve {self.tag} (flipped back first): "
                           f"`liftoff activate {self.from_version} --stage {ctx.stage.name}` puts them back")
            else:
                changed = "nothing changed"
            self.finish(d.RESULT_FAILED, f"CloudFormation refused the update: {client_error_text(error, caller=self.who)}; {changed}")
            raise self.aborted(d.EXIT_AWS, self.outcome["detail"], d.refusal_hint(error.response.get("Error", {}), error.operation_name)
                               or "fix the cause and run the same command again") from None
        if not self.lease.held_since(proven):
            # The call itself outlasted the lease: another release may have taken the lock over while it was in flight.
            self.outcome["late_write"] = (f"UpdateStack returned {ctx.monotonic() - proven:.0f} s after the lock was last "
                                          f"proven this run's, longer than the lease ({self.lease.lock.lease_seconds:.0f} s)")
            ctx.say(f"warning: {self.outcome['late_write']}; `liftoff lock` shows whether another release holds it now")
        return seen

    # --- scale-in held off the hosts for the update (ec2) -------------------------------------------

    def plan_hold(self) -> None:
        """Which of the group's processes this run suspends, read before the entry is written so the entry names
        them: a takeover of this run's lock (after a SIGKILL) resumes what the entry says, and nothing more."""
        outputs = self.stack.outputs
        group = outputs.get("AutoScalingGroupName")
        if self.gate == "stage" or outputs.get("ComputeMode", self.ctx.stage.compute) != "ec2" or not group:
            return  # the stage gate switches nothing; ECS replaces tasks through its own deployment
        already = self.ctx.aws.suspended_processes(group)
        others = scale_in.kept(already)
        if others:
            self.ctx.say(f"{group}: {', '.join(others)} already suspended, not by this release: left suspended afterwards "
                         f"({scale_in.resume_command(group, others)} resumes it)")
        self.hold = (group, scale_in.to_suspend(already))

    @property
    def hold_note(self) -> str:
        return scale_in.note(*self.hold) if self.hold else ""

    def hold_scale_in(self) -> None:
        if not self.hold or not self.hold[1]:
            return
        group, ours = self.hold
        self.lease.doing(f"suspending {', '.join(ours)} on {group}")
        # Noted before the call: a call that fails after AWS applied it (a lost answer) is still resumed on the way out.
        self.outcome["scale_in"] = {"group": group, "suspended": ours, "resumed": []}
        self.ctx.aws.suspend_processes(group, ours)
        self.ctx.say(f"{group}: suspended {', '.join(ours)} for the update (no scale-in terminates a host mid-activation)")

    def release_scale_in(self) -> None:
        """Resume what this run suspended, whatever ended the run. A failure here is said with the command that
        resumes it (`liftoff status` shows the suspension too); it never replaces the release's own outcome."""
        if not self.hold or not self.hold[1] or "scale_in" not in self.outcome:
            return
        group, ours = self.hold
        with Shielded():  # a second Ctrl-C must not leave the group unable to scale in
            try:
                resumed = resume_own(self.ctx, group, ours)
            except Exception as error:
                self.ctx.say(f"warning: could not resume {', '.join(ours)} on {group} ({error_text(error)}); the group does "
                             f"not scale in until `{scale_in.resume_command(group, ours)}` is run")
                return
        self.outcome["scale_in"]["resumed"] = resumed
        self.ctx.say(f"{group}: resumed {', '.join(resumed) or 'nothing (already resumed by someone else)'}")

    def prove_lease(self, activity: str) -> float:
        """The lock record written conditionally on still being ours, right before a write to the stage; proven again
        if the run was paused between the proof and now. Returns when it was proven (monotonic)."""
        try:
            proven = self.lease.fence(activity)
            while not self.lease.held_since(proven):  # paused between the proof and the call
                proven = self.lease.fence(activity)
        except LeaseLost as lost:
            raise self.lease_lost(lost) from None
        return proven

    def lease_lost(self, lost: LeaseLost) -> Abort:
        """The lock stopped being ours before the update: nothing is written to the stack; the entry says so."""
        detail = f"{lost.why}; so this run did not update {self.stack.name}: nothing changed by it"
        try:
            self.finish(d.RESULT_FAILED, detail)
            recorded = "recorded as failed"
        except Exception:  # the release that took the lock over closed this entry already (from the stack: nothing switched)
            recorded = "its entry was closed by the release that took the lock over"
        self.ctx.say(f"STOPPED: {detail}")
        return self.aborted(d.EXIT_REFUSED, f"the lock was lost before the update ({lost.why}); nothing changed by this run "
                                            f"({recorded})",
                            "`liftoff status` and `liftoff history` show what the other release did; run the command again "
                            "if it still applies")

    def wait(self, seen: set[str]) -> d.Stack:
        self.lease.doing(f"waiting for CloudFormation: {self.stack.name} {self.key} -> {self.tag}")
        final, events = _wait(self.ctx, self.stack.name, seen)
        self.outcome["events"] = events
        self.final = final
        return final

    def _canary_behind_rollback(self, final: d.Stack) -> tuple[str, str] | None:
        try:
            return fleet.canary_verdict(self.tag, host_truths(self.ctx, final) or [], since=self.started)
        except Exception:  # only an explanation: the rollback stands whatever the hosts say
            return None

    def _held_back_by_canary(self, host: str, reason: str) -> str:
        """Keeps and says a host canary's verdict; returns it as the ledger's words."""
        self.outcome["canary"] = {"host": host, "reason": reason}
        self.ctx.say(f"CANARY: {host} held back {self.tag}: {reason}")
        return f"the canary on {host} judged {self.tag} bad: {reason}"

    def judge_update(self, final: d.Stack) -> dict | None:
        """A rolled-back or failed update ends the release here (returned or raised); None when it completed."""
        ctx, gate, stack = self.ctx, self.gate, self.stack
        result = d.stack_outcome(final.status)
        if result == d.RESULT_ROLLED_BACK:
            failing = d.failing_events(self.outcome["events"])
            reasons = "; ".join(f"{e['LogicalResourceId']} {e['ResourceStatus']}: {e['ResourceStatusReason']}" for e in failing)
            # On AWS the activate association's failure fails the update (WaitForSuccessTimeoutSeconds): where a host's
            # canary was that failure, its reason is the one worth keeping.
            held_back = self._canary_behind_rollback(final) if gate == "activate" else None
            if held_back:
                reasons = f"{self._held_back_by_canary(*held_back)}; {reasons}"
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
        """Is the gate seen done (activate/rollback: running healthy; where hosts report, held by every host)?
        None when verified; the unverified (stage: failed) outcome otherwise."""
        ctx, tag = self.ctx, self.tag
        self.lease.doing(f"verifying {tag} runs" if self.gate != "stage" else f"verifying every host staged {tag}")
        verified, message, hosts = _verify(ctx, final, tag, self.gate, since=self.started)
        self.outcome["verification"] = {"verified": verified, "message": message}
        if verified:
            ctx.say(f"verified: {message}")
            return None
        # A rollback held back by a canary is not undone in turn: that would go back to what was just left.
        held_back = fleet.canary_verdict(tag, hosts or [], since=self.started) if self.gate == "activate" else None
        if held_back is not None:
            self.finish(d.RESULT_UNVERIFIED, message)
            self._held_back_by_canary(*held_back)
            self.outcome["exit_code"] = d.EXIT_UNVERIFIED  # until the automatic rollback says otherwise
            return self.public()
        if self.gate == "stage":
            self.finish(d.RESULT_FAILED, f"{message}; {self.key} is {tag} on the stack but not held by every host; "
                                         f"nothing switched ({d.IMAGE_TAG} is still {self.active or '-'})")
            ctx.say(f"NOT STAGED on every host: {message}")
            ctx.say(f"  nothing switched: {self.active or '-'} is still active. Fix the cause on the host(s) named and run "
                    f"`liftoff stage {tag} --stage {ctx.stage.name}` again: it re-runs the stage gate where hosts disagree")
            self.outcome["exit_code"] = d.EXIT_UNVERIFIED
            return self.public()
        self.finish(d.RESULT_UNVERIFIED, message)
        ctx.say(f"NOT VERIFIED: {message}")
        back = d.rollback_target(self.ledger.entries(), tag)
        ctx.say(f"  {tag} is set active but not confirmed running healthy; check `liftoff status`; "
                f"`liftoff rollback --stage {ctx.stage.name}` returns to {back or self.from_version or '-'}")
        self.outcome["exit_code"] = d.EXIT_UNVERIFIED
        return self.public()

    def plan_redrive(self) -> str:
        """The association that runs this gate on the hosts, printed and (activate/rollback) confirmed."""
        ctx = self.ctx
        output = fleet.ASSOCIATION_OUTPUT[self.gate]
        association = self.stack.outputs.get(output)
        if not association:
            raise MissingOutput(self.stack.name, output)
        ctx.say(f"plan: {self.gate} {ctx.stage.name}: {self.redrive}; running the {fleet.HOST_GATE[self.gate]} gate again "
                f"on the hosts ({output} {association}), then verifying every host")
        if self.gate != "stage":
            self.lease.doing("waiting for confirmation")
            confirm(ctx, f"{self.gate} {ctx.stage.name}: run the {fleet.HOST_GATE[self.gate]} gate of {self.tag} again on the hosts?")
        return association

    def redrive_hosts(self, association: str) -> None:
        """StartAssociationsOnce, fenced like an update: only while the lease provably holds."""
        self.prove_lease(f"re-running the {fleet.HOST_GATE[self.gate]} gate of {self.tag} on the hosts")
        with Deferred():
            self.ctx.aws.start_association_once(association)
        self.ctx.say(f"{self.stack.name}: asked State Manager to run {association} again")

    def run_fleet_canary(self) -> dict | None:
        """The activate gate on the fleet's canary host alone (SSM Run Command, the stack's activate document),
        fenced like an update, before the stack moves. None when the host serves the tag ready afterwards (the
        update follows, in waves); else the outcome: the stack was never updated, and the entry says what the
        host itself reports now."""
        ctx, host, tag = self.ctx, self.canary_host, self.tag
        document = self.stack.outputs[fleet.ACTIVATE_DOCUMENT_OUTPUT]
        self.prove_lease(f"the fleet's canary: the activate gate of {tag} on {host} alone")
        ctx.say(f"{host}: the fleet's canary: running the activate gate of {tag} there alone (Run Command, {document})")
        self.outcome["fleet_canary"] = {"host": host, "sent": True}
        timeout = getattr(ctx.args, "verify_timeout", 600.0)
        code, output, where = ctx.aws.send_and_wait(host, document, {"ImageTag": [tag]}, timeout=timeout,
                                                    poll=max(ctx.args.poll_interval, 1.0), sleep=ctx.sleep,
                                                    monotonic=ctx.monotonic)
        truth = next((h for h in host_truths(ctx, self.stack) or [] if h.instance == host), None)
        self.outcome["fleet_canary"].update(exit_code=code, where=where)
        if code == 0 and truth is not None and fleet.holds("activate", tag, truth):
            ctx.say(f"{host}: passed alone, serves {tag} ready; the rest follow, {d.IN_WAVES} of the fleet at a time")
            self.outcome["fleet_canary"]["result"] = "passed"
            return None
        untouched = f"the stack was not updated ({self.key} is still {self.from_version or '-'})"
        verdict = fleet.canary_verdict(tag, [truth], since=self.started) if truth is not None else None
        if truth is not None and truth.active == tag:
            # The host runs it although its gate did not pass (killed, timed out): the record says so, and
            # activating what the stack names puts it back.
            detail = (f"{host}, the fleet's canary host, serves {tag} but its activate gate did not pass "
                      f"({fleet.why_not('activate', tag, truth, since=self.started) if not fleet.holds('activate', tag, truth) else f'exit {code}'}); "
                      f"{untouched}; `liftoff activate {self.from_version} --stage {ctx.stage.name}` converges it")
            result, exit_code = d.RESULT_FAILED, d.EXIT_UNVERIFIED
        elif verdict is not None:
            detail = f"{self._held_back_by_canary(*verdict)}; {untouched}: {truth.active or '-'} serves on every host"
            result, exit_code = d.RESULT_ROLLED_BACK, d.EXIT_AUTO_ROLLED_BACK
        else:
            why = fleet.why_not("activate", tag, truth, since=self.started) if truth is not None else f"{host}: no report"
            if code is None:
                why = f"{why}; its gate did not finish within {timeout:.0f} s ({where})"
            elif truth is None and output.strip():  # the host's own words, where its report says nothing
                why = f"{why}; {output.strip().splitlines()[-1]}"
            detail = f"the activate gate of {tag} failed on the fleet's canary host: {why}; {untouched}"
            result, exit_code = d.RESULT_FAILED, d.EXIT_ROLLED_BACK
        self.outcome["fleet_canary"]["result"] = result
        self.finish(result, detail)
        ctx.say(f"NOT SWITCHED: {detail}")
        self.outcome["exit_code"] = exit_code
        return self.public()

    def flip_warm_first(self, parameters: list[dict[str, str]]) -> list[dict[str, str]]:
        """A warm wave: every host flips back now (Run Command, the stack's activate document, all at once, fenced
        like an update), then the stack follows and its association finds each host already there. On AWS State
        Manager applies a changed association seconds to minutes after CloudFormation changes it; Run Command
        reaches the hosts in about one. Returns the update's parameters: one host at a time if a host did not flip
        (its gate then runs with the stack, as any activation's)."""
        ctx, tag = self.ctx, self.tag
        hosts = [host.instance for host in self.hosts or []]
        document = self.stack.outputs[fleet.ACTIVATE_DOCUMENT_OUTPUT]
        self.prove_lease(f"flipping every host back to {tag} (warm) before the stack follows")
        ctx.say(f"flipping all {len(hosts)} host(s) to the warm {tag} now (Run Command, {document})")
        self.outcome["warm_flip"] = {"hosts": hosts, "flipped": []}
        began = ctx.monotonic()
        results = ctx.aws.send_to_hosts(hosts, document, {"ImageTag": [tag]}, timeout=getattr(ctx.args, "verify_timeout", 600.0),
                                        poll=max(ctx.args.poll_interval, 0.5), sleep=ctx.sleep, monotonic=ctx.monotonic)
        flipped = self.outcome["warm_flip"]["flipped"] = [host for host in hosts if results[host][0] == 0]
        for host in hosts:
            code, output, where = results[host]
            if code != 0:
                said = output.strip().splitlines()[-1] if output.strip() else where
                ctx.say(f"{host}: its warm flip did not pass ({f'exit {code}' if code is not None else 'no answer in time'}: "
                        f"{said}); its gate runs again with the stack")
        if len(flipped) == len(hosts):
            ctx.say(f"every host serves {tag} again ({ctx.monotonic() - began:.1f} s); the stack follows")
            return parameters
        parameters = d.parameters_for(self.inputs, self.gate, tag, concurrency=d.ONE_HOST_AT_A_TIME)
        self.changes = d.changed_parameters(self.inputs, parameters)
        return parameters

    def ahead_of_stack(self) -> str:
        """The hosts this run switched before the stack moved, as a record says them ("" when none)."""
        canary = self.outcome.get("fleet_canary")
        if canary:
            return f"{canary['host']} (the fleet's canary host) was running the activate gate of {self.tag} alone"
        flip = self.outcome.get("warm_flip")
        if flip:
            return f"{', '.join(flip['hosts'])} (every host) were flipping back to the warm {self.tag}"
        return ""

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
        elif self.outcome.get("ledger_refused"):
            cause = f"the ledger refused this release's outcome ({self.outcome['ledger_refused']})"
        elif isinstance(error, WaitTimedOut):
            cause = str(error)
        elif isinstance(error, (BotoCoreError, ClientError)):
            cause = f"AWS error: {error_text(error)}"
        else:
            cause = f"stopped by {type(error).__name__}: {error}"
        with Shielded():
            stack, seen_before = self.read_back()
            settled = d.settle(gate=gate, from_version=from_version, to_version=tag, stack=stack, cause=cause)
            if seen_before:
                settled = replace(settled, detail=f"{settled.detail} ({seen_before})")
            if self.redrive:
                # The stack was not written; what the hosts hold now is the outcome, and it is not known yet.
                settled = d.Settlement(d.RESULT_INTERRUPTED, None, settled.value,
                                       f"{cause}; the {fleet.HOST_GATE[gate]} gate of {tag} was asked to run again on the "
                                       "hosts and its outcome is not known (`liftoff status` shows each host)", d.EXIT_AWS)
            elif self.ahead_of_stack() and "update" not in self.outcome:
                # Stopped while hosts switched ahead of the stack (the canary host, a warm flip): the stack did not
                # move, those hosts may have.
                settled = d.Settlement(d.RESULT_INTERRUPTED, None, settled.value,
                                       f"{cause}; the stack was not updated, but {self.ahead_of_stack()}: `liftoff status` "
                                       f"shows what each host serves, and `liftoff activate {from_version} --stage "
                                       f"{ctx.stage.name}` converges them", d.EXIT_AWS)
            elif self.outcome.get("update") == "sent" and settled.switched is False:
                # The call got no answer: it may still land. "Nothing switched" would be a guess.
                settled = d.Settlement(d.RESULT_INTERRUPTED, None, settled.value,
                                       f"{cause}; the UpdateStack call got no answer, so whether {key} becomes {tag} is unknown "
                                       f"({key} is {settled.value or '-'} now; `liftoff status` tells)", d.EXIT_AWS)
            verification = self.outcome.get("verification", {})
            if settled.switched and verification.get("verified"):  # it got as far as seeing the version run
                settled = replace(settled, result=d.RESULT_SUCCEEDED, exit_code=d.EXIT_OK,
                                  detail=f"{settled.detail.replace(', not verified running healthy', '')}; verified: {verification['message']}")
            if self.outcome.get("late_write"):
                settled = replace(settled, detail=f"{settled.detail}; {self.outcome['late_write']}")
            refused = ""
            try:
                self.finish(settled.result, settled.detail)
            except Exception as refusal:
                refused = error_text(refusal)
                self.keep_for_takeover(settled)
        if settled.switched:
            now = f"{key} is now {settled.value}: the switch happened" + (
                "" if gate == "stage" else ", verified" if settled.result == d.RESULT_SUCCEEDED else ", not verified")
            hint = (f"check `liftoff status --stage {ctx.stage.name}`" +
                    ("" if gate == "stage" else f"; `liftoff rollback --stage {ctx.stage.name}` returns to {from_version or '-'}"))
        elif self.ahead_of_stack() and "update" not in self.outcome:
            now = f"{key} is still {settled.value or '-'}, but {self.ahead_of_stack()}"
            hint = (f"`liftoff status --stage {ctx.stage.name}` shows what each host serves; `liftoff activate {from_version} "
                    f"--stage {ctx.stage.name}` converges them, or run the same command again")
        elif settled.switched is False:
            now = f"{key} is still {settled.value or '-'}: nothing switched"
            hint = "run the same command again when the cause is fixed"
        else:
            now = f"whether {key} became {tag} is not known yet" + (f" ({self.stack.name} {stack.status})" if stack is not None else "")
            hint = f"follow it with `liftoff status --stage {ctx.stage.name}`; the update may still complete"
        exit_code = d.EXIT_SIGNAL_BASE + signum if signum is not None else settled.exit_code
        extra = {**self.base, **self.public(), "result": settled.result, "switched": settled.switched, "value_now": settled.value}
        if not refused:
            return Abort(exit_code, f"{cause}; {now} (recorded as {settled.result})", hint, extra)
        extra["ledger_refused"] = refused
        return Abort(exit_code, f"{cause}; {now}. The ledger refused the outcome too ({refused}): entry {self.entry.seq} stays "
                                f"in_progress and the lock stays held, naming it and carrying the outcome ({settled.result}), so "
                                f"the next release takes the lock over after its lease ({lease.lock.lease_seconds:.0f} s) and "
                                f"records it", hint + f"; `liftoff unlock --stage {ctx.stage.name}` records it at once", extra)

    def keep_for_takeover(self, settled: d.Settlement) -> None:
        """The ledger refused the outcome: keep the lock (it names the entry), with the outcome in its activity,
        so whoever takes it over (or `liftoff unlock`) closes the entry with it when the stack agrees."""
        self.lease.keep_for_takeover = True
        self.lease.doing(d.own_outcome_activity(settled.result, settled.detail))

    def read_back(self) -> tuple[d.Stack | None, str]:
        """The stack now. After an accepted update still in progress, followed until it settles (bounded), so
        what lands is what is recorded. If the stack cannot be read, the settled stack this run already saw
        stands (the lock was ours: nothing else changed it), said as such; else None (unknown)."""
        ctx = self.ctx
        deadline = ctx.monotonic() + min(ctx.args.timeout, SETTLE_SECONDS)
        while True:
            try:
                stack = ctx.service_stack()
            except Exception:
                if self.final is not None:
                    return self.final, f"as seen when the update ended ({self.final.status}); the stack could not be read again"
                return None, ""
            if (not stack.status.endswith("_IN_PROGRESS") or self.outcome.get("update") != "accepted"
                    or ctx.monotonic() >= deadline):
                return stack, ""
            ctx.sleep(max(ctx.args.poll_interval, 0.5))


def _under_lock(ctx: Context, gate: str, ledger: Ledger, lease: Lease, who: str, release_id: str, base: dict) -> dict:
    """A release with the lock held, step by step; fills in `base`'s from/to/digest/forced."""
    attempt = Attempt(ctx, gate, ledger, lease, who, release_id, base)
    attempt.read_facts()
    attempt.choose_target()
    decision = attempt.decide()
    if decision.action == "noop":
        return attempt.record_noop(decision)
    if attempt.redrive:
        association = attempt.plan_redrive()
        attempt.plan_hold()
        attempt.start_entry()
        try:
            attempt.hold_scale_in()
            attempt.redrive_hosts(association)
            return attempt.verify(attempt.stack) or attempt.succeeded()
        except BaseException as error:
            if attempt.outcome.get("finished") or isinstance(error, Abort):
                raise
            raise attempt.told_truth(error) from None
        finally:
            attempt.release_scale_in()
    parameters = attempt.plan()
    attempt.plan_hold()
    attempt.start_entry()
    try:
        attempt.hold_scale_in()
        if attempt.canary_host:
            held_back = attempt.run_fleet_canary()
            if held_back is not None:
                return held_back
        elif attempt.flip_first:
            parameters = attempt.flip_warm_first(parameters)
        seen = attempt.update(parameters)
        final = attempt.wait(seen)
        ended = attempt.judge_update(final)
        if ended is None and (gate != "stage" or host_truths(ctx, final) is not None):
            ended = attempt.verify(final)
        return ended if ended is not None else attempt.succeeded()
    except BaseException as error:
        if attempt.outcome.get("finished") or isinstance(error, Abort):
            raise
        raise attempt.told_truth(error) from None
    finally:
        attempt.release_scale_in()


def _canary_on(stage) -> bool:
    """Does each host of this stage run a canary before it flips (ec2, two slots, a share above 0)?"""
    return stage.compute == "ec2" and stage.activation == "slots" and stage.canary_percent > 0


def resume_own(ctx: Context, group: str, ours: list[str]) -> list[str]:
    """Resume those of `ours` (what a run of liftoff suspended) still suspended; returns them."""
    back = scale_in.to_resume(ours, ctx.aws.suspended_processes(group))
    if back:
        ctx.aws.resume_processes(group, back)
    return back


def resume_orphans_hold(ctx: Context, ledger: Ledger, lock) -> dict | None:
    """A dead run's lock taken over: resume what its entry says it suspended (a SIGKILL ran no exit path)."""
    entry = ledger.entry(lock.entry_key) if lock.entry_key else None
    held = scale_in.suspended_by(entry.detail) if entry is not None and entry.release_id == lock.release_id else None
    if held is None:
        return None
    group, ours = held
    try:
        resumed = resume_own(ctx, group, ours)
    except (BotoCoreError, ClientError) as error:
        ctx.say(f"warning: release {lock.release_id} suspended {', '.join(ours)} on {group} and they could not be resumed "
                f"({error_text(error)}); run `{scale_in.resume_command(group, ours)}`")
        return {"group": group, "suspended": ours, "resumed": [], "error": error_text(error)}
    ctx.say(f"{group}: resumed {', '.join(resumed) or 'nothing (resumed meanwhile)'} that release {lock.release_id} suspended")
    return {"group": group, "suspended": ours, "resumed": resumed}


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


def _verify(ctx: Context, stack: d.Stack, tag: str, gate: str, *,
            since: float | None = None) -> tuple[bool, str, list[fleet.HostTruth] | None]:
    """Wait (up to --verify-timeout) until `gate` of `tag` is seen done: for activate/rollback the version runs
    healthy; where hosts report (ec2 with HostReportPath) every in-service host holds it, by its own report.
    Returns early on what waiting cannot change (a host gate that failed, a Failed association), with the
    hosts' reports the verdict was read from (None where hosts do not report)."""
    deadline = ctx.monotonic() + getattr(ctx.args, "verify_timeout", 600.0)
    while True:
        running = running_now(ctx, stack, gate)
        hosts = host_truths(ctx, stack, running)
        healthy, unhealthy = healthy_and_unhealthy(running["targets"])
        final = False
        if hosts is not None:
            verdict = fleet.judge(gate, tag, hosts, desired_count=running["desired_count"], since=since)
            not_healthy = "" if gate == "stage" else d.targets_not_healthy(running["desired_count"], healthy, unhealthy)
            verified, final = verdict.verified and not not_healthy, verdict.final
            message = verdict.message if not verdict.verified or not not_healthy else not_healthy
            # The gate's association ran for this tag and Failed: no host will change its report by waiting.
            if not verified and _association_failed(running, tag):
                final, message = True, f"{message}; the {gate} association is {running['association_status']}"
            if verified and gate != "stage":
                message += f"; {healthy} target(s) healthy"
        elif running["compute"] == "ec2":
            verified, message = d.verify_ec2(
                tag, association_parameter=running["association_parameter"], association_status=running["association_status"],
                instance_count=len([h for h in running["hosts"] if h["state"] == "InService"]),
                desired_count=running["desired_count"], healthy_targets=healthy, unhealthy_targets=unhealthy,
            )
            final = _association_failed(running, tag)
        else:
            verified, message = d.verify_ecs(
                tag, task_definition_image=running["task_definition_image"],
                running_images=[t["image"] for t in running["tasks"]], desired_count=running["desired_count"],
                healthy_targets=healthy, unhealthy_targets=unhealthy,
            )
            failed = d.last_stopped_of(tag, running.get("stopped_tasks", []), since=since)
            if not verified and failed:
                message += f"; a task of {tag} stopped: {failed['reason']}"
        if verified or final or ctx.monotonic() >= deadline:
            return verified, message, hosts
        ctx.say(f"  waiting: {message}")
        ctx.sleep(max(ctx.args.poll_interval, 0.0))


def _association_failed(running: dict, tag: str) -> bool:
    """A State Manager association that ran for this tag and Failed will not turn healthy by waiting."""
    return (running.get("association_parameter") == tag
            and running.get("association_status", "").startswith("Failed"))


def host_truths(ctx: Context, stack: d.Stack, running: dict | None = None) -> list[fleet.HostTruth] | None:
    """What each in-service host reports it holds; None where hosts do not report (ECS, a stack without the
    HostReportPath output): there the older checks stand."""
    path = stack.outputs.get(fleet.REPORT_PATH_OUTPUT)
    if not path or stack.outputs.get("ComputeMode", ctx.stage.compute) != "ec2":
        return None
    running = running or running_now(ctx, stack)
    in_service = [host["instance"] for host in running["hosts"] if host["state"] == "InService"]
    return fleet.truths(in_service, ctx.aws.host_reports(path))


def running_now(ctx: Context, stack: d.Stack, gate: str = "activate") -> dict:
    """What runs now; on ec2 with the association of `gate` (stage has its own, activate and rollback share one)."""
    outputs = stack.outputs
    compute = outputs.get("ComputeMode", ctx.stage.compute)
    # ECS blue/green, canary and linear serve from either group after a release: both count.
    targets = [target for key in ("TargetGroupArn", "AlternateTargetGroupArn") if outputs.get(key)
               for target in ctx.aws.target_health(outputs[key])]
    if compute == "ec2":
        association = fleet.ASSOCIATION_OUTPUT[gate]
        for key in ("AutoScalingGroupName", association):
            if not outputs.get(key):
                raise MissingOutput(stack.name, key)
        ec2 = ctx.aws.ec2_running(outputs["AutoScalingGroupName"], outputs[association])
        return {"compute": "ec2", "targets": targets, "hosts": ec2["instances"], "desired_count": ec2["desired_count"],
                "association_parameter": ec2["association_parameter"], "association_status": ec2["association_status"]}
    for key in ("ClusterName", "EcsServiceName"):
        if not outputs.get(key):
            raise MissingOutput(stack.name, key)
    ecs = ctx.aws.ecs_running(outputs["ClusterName"], outputs["EcsServiceName"])
    return {"compute": "ecs", "targets": targets, "tasks": ecs["tasks"], "desired_count": ecs["desired_count"],
            "task_definition_image": ecs["task_definition_image"], "stopped_tasks": ecs.get("stopped_tasks", [])}



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

