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

import argparse
import errno
import signal
import threading
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from config import StageConfig
from release import bake
from release import decisions as d
from release.aws import Aws, MissingOutput, StackNotFound, healthy_and_unhealthy
from release.ledger import Ledger, LockHeld, entry_key, new_record_version, new_release_id


class Abort(Exception):
    """Stop the verb with an exit code and a message that says what to do; `extra` joins the --json document."""

    def __init__(self, exit_code: int, message: str, hint: str = "", extra: dict | None = None):
        super().__init__(message)
        self.exit_code, self.message, self.hint, self.extra = exit_code, message, hint, extra or {}


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every `finally` runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class WaitTimedOut(Exception):
    """The user's --timeout passed while CloudFormation was still updating."""


class LockCollision(Exception):
    def __init__(self, lock: d.Lock, why: str):
        super().__init__(why)
        self.lock, self.why = lock, why


def signal_of(error: BaseException) -> int | None:
    if isinstance(error, Interrupted):
        return error.signum
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    return None


# While the outcome is being read back and recorded, a second Ctrl-C must not cut that short.
_shield = threading.Event()


def raise_on_signal(signum, _frame) -> None:
    if _shield.is_set():
        return
    raise Interrupted(signum)


class Shielded:
    def __enter__(self):
        _shield.set()

    def __exit__(self, *_):
        _shield.clear()


# --- context --------------------------------------------------------------------------------------

class Context:
    def __init__(self, args, *, stage: StageConfig, aws: Aws, stdin: TextIO, stdout: TextIO, stderr: TextIO,
                 clock: Callable[[], float], monotonic: Callable[[], float], sleep: Callable[[float], None]):
        self.args, self.aws, self.stage = args, aws, stage
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        self.json = args.json
        self.stdout_closed = False

    def say(self, text: str = "") -> None:
        """Human output; in --json mode it goes to stderr so stdout stays one JSON document.

        A closed stdout (`liftoff status | head -2`) ends the printing, never the release."""
        stream = self.stderr if self.json else self.stdout
        if stream is self.stdout and self.stdout_closed:
            return
        try:
            print(text, file=stream, flush=True)
        except (BrokenPipeError, ValueError):
            self.stdout_closed = True
        except OSError as error:
            if error.errno != errno.EPIPE:
                raise
            self.stdout_closed = True

    def now(self) -> int:
        return int(self.clock())

    def iso(self, epoch: float | None = None) -> str:
        moment = datetime.fromtimestamp(self.clock() if epoch is None else epoch, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # Names come from the stacks' outputs, never guessed from naming conventions.
    def service_stack(self) -> d.Stack:
        return self.aws.stack(self.stage.service_stack_name)

    def repository(self) -> str:
        return self.aws.output(self.stage.registry_stack_name, "RepositoryName")

    def ledger(self) -> Ledger:
        return self.aws.ledger(self.aws.output(self.stage.data_stack_name, "ReleaseLedgerTable"))


# --- the lease ------------------------------------------------------------------------------------

class Lease:
    """Our hold on the stage's lock. A thread renews it (a new record version) every third of the lease;
    `doing` renews it at once with what the release does now, for `liftoff lock` to show."""

    def __init__(self, ctx: Context, ledger: Ledger, lock: d.Lock):
        self.ctx, self.ledger, self.lock = ctx, ledger, lock
        self.lost = False
        # Set when an outcome could not be written: the lock then stays until its lease passes, so the
        # next release takes it over and closes the entry from the stack (nothing stays `in_progress`).
        self.keep_for_takeover = False
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"liftoff-heartbeat-{lock.release_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lock.lease_seconds / 3):
            self.renew()

    def renew(self, *, activity: str | None = None, entry: d.Entry | None = None, version: str | None = None) -> None:
        with self._mutex:
            if self.lost or (self._stop.is_set() and activity is None and entry is None):
                return
            try:
                ours = self.ledger.heartbeat(self.lock.release_id, record_version=new_record_version(), at=self.ctx.iso(),
                                             epoch=self.ctx.now(), activity=activity, version=version,
                                             entry_key=entry_key(entry) if entry is not None else None)
            except Exception:  # a missed beat; the lease spans three, and the flow's own next call reports a real outage
                return
            if not ours:
                self.lost = True

    def doing(self, activity: str) -> None:
        self.renew(activity=activity)

    def end(self) -> bool:
        """Stop the heartbeat and drop the lock if it is still ours; False if it could not be dropped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.ctx.aws.read_timeout * 3)
        if self.keep_for_takeover:
            return True
        try:
            self.ledger.release(self.lock.release_id)
            return True
        except Exception:
            return False


def acquire(ctx: Context, ledger: Ledger, *, gate: str, version: str, who: str, release_id: str) -> tuple[Lease, d.Lock | None]:
    """Take the lock; return our lease and the dead lock taken over (if any). Raises LockCollision."""
    seen: d.LockSighting | None = None
    announced = False
    while True:
        current = ledger.read_lock()
        verdict, seen = d.judge_lock(current, seen, ctx.monotonic())
        if verdict == d.LOCK_ALIVE:
            raise LockCollision(current, f"its holder renewed it while this release watched (heartbeat every "
                                         f"{current.lease_seconds / 3:.0f} s)")
        if verdict in (d.LOCK_FREE, d.LOCK_STALE):
            mine = d.Lock(holder=who, release_id=release_id, gate=gate, version=version, acquired_at=ctx.iso(),
                          record_version=new_record_version(), lease_seconds=ctx.args.lease_seconds,
                          activity="taking the lock", activity_at=ctx.iso(), heartbeat_at=ctx.iso())
            try:
                if verdict == d.LOCK_FREE:
                    ledger.create_lock(mine, epoch=ctx.now())
                    return Lease(ctx, ledger, mine), None
                ledger.take_over(mine, seen_record_version=seen.record_version, epoch=ctx.now())
                return Lease(ctx, ledger, mine), current
            except LockHeld as held:
                raise LockCollision(held.lock or current or mine, "another release took it at the same moment") from None
        if not announced:
            ctx.say(f"the lock is held: {current.gate} {current.version} by {current.holder} (release {current.release_id}"
                    + (f", {current.activity}" if current.activity else "") + f"); watching its heartbeat for up to "
                    f"{current.lease_seconds:.0f} s: renewed means alive (refused), unchanged means its holder is gone (taken over)")
            announced = True
        ctx.sleep(min(1.0, max(0.05, current.lease_seconds / 10)))


def close_orphan(ctx: Context, ledger: Ledger, lock: d.Lock, cause: str) -> d.Entry | None:
    """Complete the entry a dead (or unlocked) run left `in_progress`, with what the stack says now."""
    if not lock.entry_key:
        return None  # that run stopped before it wrote an entry: nothing switched through it
    entry = ledger.entry(lock.entry_key)
    if entry is None or entry.result != d.RESULT_IN_PROGRESS or entry.release_id != lock.release_id:
        return None
    try:
        stack = ctx.service_stack()
    except (BotoCoreError, ClientError, StackNotFound):
        stack = None
    settled = d.settle(gate=entry.gate, from_version=entry.from_version, to_version=entry.to_version, stack=stack, cause=cause)
    detail = "; ".join(part for part in (entry.detail, settled.detail) if part)
    try:
        ledger.finish(entry, result=settled.result, finished_at=ctx.iso(), duration_seconds=None, detail=detail)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return None  # closed meanwhile (by its own run's last write, or an unlock): nothing left to tell
    ctx.say(f"closed release {entry.release_id} ({entry.gate} {entry.from_version or '-'} -> {entry.to_version}) "
            f"as {settled.result}: {settled.detail}")
    return replace(entry, result=settled.result, detail=detail)


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
        recorded = _record(ctx, ledger, gate=gate, release_id=release_id, who=who, from_version="", to_version=requested or "",
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


def _record(ctx: Context, ledger: Ledger, *, gate, release_id, who, from_version, to_version, result, detail,
            digest="", forced=False) -> d.Entry:
    """A finished entry in one write: a refusal, a lock collision, a no-op."""
    now = ctx.iso()
    return ledger.record(d.Entry(release_id=release_id, gate=gate, from_version=from_version, to_version=to_version, who=who,
                                 started_at=now, digest=digest, result=result, finished_at=now, duration_seconds=0.0,
                                 forced=forced, detail=detail), ctx.stage.name)


def _under_lock(ctx: Context, gate: str, ledger: Ledger, lease: Lease, who: str, release_id: str, base: dict) -> dict:
    args = ctx.args
    lease.doing("checking the gates (fresh reads under the lock)")
    stack = ctx.service_stack()
    entries = ledger.entries()
    key = d.GATE_PARAMETER[gate]
    from_version = stack.parameters.get(key, "")
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
    force = bool(getattr(args, "force", False))

    def refused(decision: d.Decision, tag: str, digest: str = "") -> Abort:
        entry = _record(ctx, ledger, gate=gate, release_id=release_id, who=who, from_version=from_version, to_version=tag,
                        result=d.RESULT_REFUSED, detail=decision.message, digest=digest)
        return Abort(decision.exit_code, decision.message, decision.hint,
                     {**base, "from": from_version, "to": tag, "result": d.RESULT_REFUSED, "seq": entry.seq})

    tag = args.version
    if gate == "rollback":
        target = d.decide_rollback_target(tag, active=active, entries=entries)
        if not target.proceeds:
            raise refused(target, tag or "")
        tag = target.message
        refusal = d.check_tag(tag)
        if refusal:
            raise refused(refusal, tag)
    images = ctx.aws.images(ctx.repository())
    known = d.released_versions(entries) | {v for v in (active, staged) if v}
    ran_before = d.ran_on_stage(entries, active) | {v for v in (active,) if v}
    common = dict(images=images, stack=stack, fail_severity=args.fail_severity, known_versions=known)
    if gate == "stage":
        decision = d.decide_stage(tag, **common)
    else:
        decision = d.decide_activate(tag, gate=gate, force=force, ran_before=ran_before, **common)
    digest = images[tag].digest if tag in images else ""
    base.update({"from": from_version, "to": tag, "digest": digest})
    if decision.action == "refuse":
        raise refused(decision, tag, digest)
    if decision.proceeds and gate != "stage":
        from release import schema_flow  # the schema gate (release/schema_flow.py); --force never skips it

        schema_refusal = schema_flow.check_switch(ctx, ledger, lease, who=who, stack=stack, tag=tag, entries=entries)
        if schema_refusal is not None:
            raise refused(schema_refusal, tag, digest)
    if decision.action == "noop":
        entry = _record(ctx, ledger, gate=gate, release_id=release_id, who=who, from_version=from_version, to_version=tag,
                        result=d.RESULT_NOOP, detail=decision.message, digest=digest)
        ctx.say(f"nothing to do: {decision.message}")
        return {"forced": False, "result": d.RESULT_NOOP, "message": decision.message, "seq": entry.seq}

    inputs = ctx.aws.parameter_inputs(stack)
    try:
        parameters = d.parameters_for(inputs, gate, tag)
    except ValueError as error:
        raise refused(d.refuse(d.EXIT_AWS, f"cannot update {stack.name}: {error}"), tag, digest) from None
    changes = d.changed_parameters(inputs, parameters)
    # Recorded as forced only when --force actually skipped the staging requirement.
    forced = force and staged != tag and (gate == "activate" or (gate == "rollback" and tag not in ran_before))
    base["forced"] = forced
    why = "undo the last release" if gate == "rollback" and args.version is None else gate
    if getattr(args, "automatic", ""):
        why = "automatic: a release alarm fired"
    ctx.say(f"plan: {gate} {ctx.stage.name}: {key} {from_version or '-'} -> {tag} ({why}"
            + ("; forced: not staged" if forced else "") + ")")
    if gate != "stage":
        lease.doing("waiting for confirmation")
        _confirm(ctx, f"{gate} {ctx.stage.name}: switch the running version {from_version or '-'} -> {tag}?")

    started = ctx.clock()
    # The entry's place is reserved and named in the lock before the entry is written, so whoever takes
    # the lock over after a crash finds it (and finds nothing to close if the crash came first).
    automatic = getattr(args, "automatic", "")
    note = "; ".join(part for part in (f"automatic rollback: {automatic}" if automatic else "",
                                       "forced: not staged" if forced else "") if part)
    entry = d.Entry(
        release_id=release_id, gate=gate, from_version=from_version, to_version=tag, who=who, started_at=ctx.iso(started),
        digest=digest, forced=forced, detail=note, seq=ledger.next_seq(),
    )
    lease.renew(activity=f"updating {stack.name}: {key} {from_version or '-'} -> {tag}", entry=entry, version=tag)
    entry = ledger.start(entry, ctx.stage.name)
    outcome: dict[str, Any] = {"result": d.RESULT_IN_PROGRESS, "seq": entry.seq}

    def finish(result: str, detail: str) -> None:
        # The start's own note (e.g. forced) stays in front of the outcome: the entry is completed, not rewritten.
        detail = "; ".join(part for part in (entry.detail, detail) if part)
        outcome.update(result=result, detail=detail)
        ledger.finish(entry, result=result, finished_at=ctx.iso(), duration_seconds=ctx.clock() - started, detail=detail)
        outcome["finished"] = True  # only once written: a failed write still gets the read-back path

    try:
        if lease.lost:
            finish(d.RESULT_FAILED, "the lock was broken (`liftoff unlock`) before the update; nothing changed")
            raise Abort(d.EXIT_REFUSED, "the lock was broken before the update; nothing changed",
                        "`liftoff history` shows who broke it; run the command again", {**base, **_public(outcome)})
        for name, (old, new) in changes.items():
            ctx.say(f"{stack.name}: {name} {old or '-'} -> {new}")
        seen = ctx.aws.stack_event_ids(stack.name)
        try:
            ctx.aws.update_parameters(stack.name, parameters)
        except ClientError as error:
            # CloudFormation answered with a refusal: the update was not accepted.
            finish(d.RESULT_FAILED, f"CloudFormation refused the update: {_client_error_text(error)}; nothing changed")
            raise Abort(d.EXIT_AWS, outcome["detail"], "fix the cause and run the same command again",
                        {**base, **_public(outcome)}) from None
        lease.doing(f"waiting for CloudFormation: {stack.name} {key} -> {tag}")
        final, events = _wait(ctx, stack.name, seen)
        outcome["events"] = events
        result = d.stack_outcome(final.status)
        if result == d.RESULT_ROLLED_BACK:
            failing = d.failing_events(events)
            reasons = "; ".join(f"{e['LogicalResourceId']} {e['ResourceStatus']}: {e['ResourceStatusReason']}" for e in failing)
            finish(d.RESULT_ROLLED_BACK, reasons or final.status_reason or "rolled back")
            outcome["failing_events"] = failing
            ctx.say(f"FAILED: CloudFormation rolled {stack.name} back; {from_version or '-'} is still "
                    f"{'staged' if gate == 'stage' else 'active'}.")
            for event in failing:
                ctx.say(f"  {event['LogicalResourceId']} ({event['ResourceType']}) {event['ResourceStatus']}: {event['ResourceStatusReason']}")
            outcome["exit_code"] = d.EXIT_ROLLED_BACK
            return _public(outcome)
        if result != d.RESULT_SUCCEEDED:
            settled = d.settle(gate=gate, from_version=from_version, to_version=tag, stack=final,
                               cause=f"stack ended in {final.status}: {final.status_reason}")
            finish(settled.result if settled.result != d.RESULT_INTERRUPTED else d.RESULT_FAILED, settled.detail)
            raise Abort(d.EXIT_AWS, f"{stack.name} ended in {final.status}: {settled.detail}",
                        "see the events above and `liftoff status`; repair the stack before the next release", {**base, **_public(outcome)})
        if gate != "stage":
            lease.doing(f"verifying {tag} runs")
            verified, message = _verify(ctx, final, tag)
            outcome["verification"] = {"verified": verified, "message": message}
            if not verified:
                finish(d.RESULT_UNVERIFIED, message)
                ctx.say(f"NOT VERIFIED: {message}")
                back = d.rollback_target(ledger.entries(), tag)
                ctx.say(f"  {tag} is set active but not confirmed running healthy; check `liftoff status`; "
                        f"`liftoff rollback --stage {ctx.stage.name}` returns to {back or from_version or '-'}")
                outcome["exit_code"] = d.EXIT_UNVERIFIED
                return _public(outcome)
            ctx.say(f"verified: {message}")
        finish(d.RESULT_SUCCEEDED, outcome.get("verification", {}).get("message", ""))
        ctx.say(f"{gate} {tag} on {ctx.stage.name}: succeeded in {ctx.clock() - started:.1f}s (release {release_id})")
        return _public(outcome)
    except BaseException as error:
        if outcome.get("finished") or isinstance(error, Abort):
            raise
        raise _told_truth(ctx, error, gate=gate, from_version=from_version, tag=tag, stack_name=stack.name,
                          finish=finish, outcome=outcome, base=base, lease=lease) from None


def _public(outcome: dict) -> dict:
    return {k: v for k, v in outcome.items() if k != "finished"}


def _told_truth(ctx: Context, error: BaseException, *, gate, from_version, tag, stack_name, finish, outcome, base,
                lease: Lease) -> Abort:
    """Something stopped the release after its entry was written: read the stack back, record that, say it."""
    signum = signal_of(error)
    if signum is not None:
        cause = f"interrupted by {signal.Signals(signum).name}"
    elif isinstance(error, WaitTimedOut):
        cause = str(error)
    elif isinstance(error, (BotoCoreError, ClientError)):
        cause = f"AWS error: {_error_text(error)}"
    else:
        cause = f"stopped by {type(error).__name__}: {error}"
    with Shielded():
        try:
            stack = ctx.service_stack()
        except Exception:
            stack = None
        settled = d.settle(gate=gate, from_version=from_version, to_version=tag, stack=stack, cause=cause)
        verification = outcome.get("verification", {})
        if settled.switched and verification.get("verified"):  # it got as far as seeing the version run
            settled = replace(settled, result=d.RESULT_SUCCEEDED, exit_code=d.EXIT_OK,
                              detail=f"{settled.detail.replace(', not verified running healthy', '')}; verified: {verification['message']}")
        recorded = True
        try:
            finish(settled.result, settled.detail)
        except Exception:
            recorded = False
            lease.keep_for_takeover = True
    key = d.GATE_PARAMETER[gate]
    if settled.switched:
        now = f"{key} is now {settled.value}: the switch happened" + (
            "" if gate == "stage" else ", verified" if settled.result == d.RESULT_SUCCEEDED else ", not verified")
        hint = (f"check `liftoff status --stage {ctx.stage.name}`" +
                ("" if gate == "stage" else f"; `liftoff rollback --stage {ctx.stage.name}` returns to {from_version or '-'}"))
    elif settled.switched is False:
        now = f"{key} is still {settled.value or '-'}: nothing switched"
        hint = "run the same command again when the cause is fixed"
    else:
        now = f"whether {key} became {tag} is not known yet" + (f" ({stack_name} {stack.status})" if stack is not None else "")
        hint = f"follow it with `liftoff status --stage {ctx.stage.name}`; the update may still complete"
    if not recorded:
        hint += (f"; the ledger could not be written now, so the lock is kept: the next release takes it over after "
                 f"its lease ({lease.lock.lease_seconds:.0f} s) and records the outcome of release {base['release_id']} "
                 "from the stack (or `liftoff unlock` does)")
    exit_code = d.EXIT_SIGNAL_BASE + signum if signum is not None else settled.exit_code
    extra = {**base, **_public(outcome), "result": settled.result, "switched": settled.switched, "value_now": settled.value}
    return Abort(exit_code, f"{cause}; {now} (recorded as {settled.result})" if recorded else f"{cause}; {now}", hint, extra)


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


def _confirm(ctx: Context, question: str) -> None:
    if ctx.args.yes:
        return
    if not ctx.stdin.isatty():
        raise Abort(d.EXIT_USAGE, "refusing without confirmation: stdin is not a terminal; nothing changed",
                    "pass --yes to confirm non-interactively (pipelines)")
    print(f"{question} [y/N] ", end="", file=ctx.stderr, flush=True)
    if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Abort(d.EXIT_USAGE, "not confirmed; nothing changed")


# --- the lock by hand -----------------------------------------------------------------------------

def describe_lock(lock: d.Lock) -> list[str]:
    return [
        f"held by   {lock.holder}",
        f"release   {lock.release_id}: {lock.gate} {lock.version}",
        f"doing     {lock.activity or '-'} (since {lock.activity_at or '-'})",
        f"acquired  {lock.acquired_at or '-'}; last heartbeat {lock.heartbeat_at or '-'} (the holder's clock)",
        f"lease     {lock.lease_seconds:.0f} s: renewed every {lock.lease_seconds / 3:.0f} s while its run lives; "
        "a release waiting for it takes it over once it stays unchanged that long",
    ]


def run_unlock(ctx: Context) -> dict:
    ledger = ctx.ledger()
    lock = ledger.read_lock()
    if lock is None:
        ctx.say(f"the lock of {ctx.stage.name} is free; nothing to unlock")
        return {"lock": None, "broken": False}
    ctx.say(f"lock of {ctx.stage.name}:")
    for line in describe_lock(lock):
        ctx.say(f"  {line}")
    _confirm(ctx, f"break this lock? If release {lock.release_id} is still running it keeps going without it "
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
    entry = _record(ctx, ledger, gate="unlock", release_id=new_release_id(), who=who, from_version="",
                    to_version=lock.version, result=d.RESULT_SUCCEEDED, detail=detail)
    ctx.say(f"unlocked {ctx.stage.name}: {detail}")
    return {"lock": asdict(lock), "broken": True, "seq": entry.seq, "orphan_closed": asdict(orphan) if orphan else None}


# --- error text -----------------------------------------------------------------------------------

def _client_error_text(error: ClientError) -> str:
    info = error.response.get("Error", {})
    return f"{info.get('Code', 'Error')}: {info.get('Message', str(error))}"


def _error_text(error: BaseException) -> str:
    return _client_error_text(error) if isinstance(error, ClientError) else str(error)
