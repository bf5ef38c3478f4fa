"""The stage's lock as a lease, held by one run: taking it (free, or over a dead holder), renewing it from
a heartbeat thread, proving it right before a write (the fence), releasing it, and closing the entry a
dead run left open. The ledger's conditional writes (`release.adapters.ledger`) are what make each step safe.

A waiter that finds the lock held watches its record version for one lease on its own monotonic clock:
renewed means the holder is alive (refused, exit 3), unchanged means it is gone (taken over). A waiter
that saw a live holder and then finds the lock free refuses too: the holder finished while it waited,
and what it did may change what this release should do (`liftoff status`, then run it again).
"""
from __future__ import annotations

import threading
from dataclasses import replace

from botocore.exceptions import BotoCoreError, ClientError

from release.pure import decisions as d
from release.adapters.aws import StackNotFound
from release.adapters.ledger import Ledger, LockHeld, entry_key, new_record_version
from release.flows.context import Context


class LockCollision(Exception):
    def __init__(self, lock: d.Lock, why: str):
        super().__init__(why)
        self.lock, self.why = lock, why


class LeaseLost(Exception):
    """The lock is no longer this run's: taken over (this run was paused or cut off for longer than its
    lease) or broken by `liftoff unlock`. `holder` is the lock as read now (None: free)."""

    def __init__(self, why: str, holder: d.Lock | None):
        super().__init__(why)
        self.why, self.holder = why, holder


class Lease:
    """Our hold on the stage's lock. A thread renews it (a new record version) every third of the lease;
    `doing` renews it at once with what the release does now, for `liftoff lock` to show."""

    def __init__(self, ctx: Context, ledger: Ledger, lock: d.Lock):
        self.ctx, self.ledger, self.lock = ctx, ledger, lock
        self.lost = False
        # Set when an outcome could not be written: the lock then stays until its lease passes, so the
        # next release takes it over and closes the entry from the stack (nothing stays `in_progress`).
        self.keep_for_takeover = False
        self.renewed_at = ctx.monotonic()  # the last renewal that DynamoDB accepted, on this run's monotonic clock
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
            started = self.ctx.monotonic()
            try:
                ours = self.ledger.heartbeat(self.lock.release_id, record_version=new_record_version(), at=self.ctx.iso(),
                                             epoch=self.ctx.now(), activity=activity, version=version,
                                             entry_key=entry_key(entry) if entry is not None else None)
            except Exception:  # a missed beat; the lease spans three, and the flow's own next call reports a real outage
                return
            if not ours:
                self.lost = True
            else:
                self.renewed_at = started

    def fence(self, activity: str) -> float:
        """Prove, right before a write to the stack, that the lock is still ours: a conditional write to the
        lock record in DynamoDB (a new record version, only if `release_id` is still ours), never this run's
        memory of it. Returns when the proof started on the monotonic clock: a waiter can take the lock over
        no sooner than one whole lease after that. Raises LeaseLost; an AWS error propagates (nothing written)."""
        with self._mutex:
            started = self.ctx.monotonic()
            paused = started - self.renewed_at
            note = (f"this run was paused or cut off for {paused:.0f} s since its last renewal, longer than its lease "
                    f"({self.lock.lease_seconds:.0f} s)") if paused >= self.lock.lease_seconds else ""
            ours = False if self.lost else self.ledger.heartbeat(
                self.lock.release_id, record_version=new_record_version(), at=self.ctx.iso(), epoch=self.ctx.now(),
                activity=activity)
            if not ours:
                self.lost = True
                try:
                    holder = self.ledger.read_lock()
                except Exception:
                    holder = None
                now = (f"release {holder.release_id} ({holder.gate} {holder.version} by {holder.holder}) holds it now"
                       if holder is not None else "the lock is free now (broken with `liftoff unlock`, or released by a takeover)")
                raise LeaseLost("; ".join(part for part in (note, f"the lock is no longer this run's: {now}") if part), holder)
            self.renewed_at = started
            return started

    def held_since(self, proven_at: float) -> bool:
        """Has less than one lease passed since the lock was last proven ours (`fence`)? Then no waiter can
        have taken it over yet, whatever this run's process went through meanwhile."""
        return self.ctx.monotonic() - proven_at < self.lock.lease_seconds

    def doing(self, activity: str) -> None:
        self.renew(activity=activity)

    def end(self) -> bool:
        """Stop the heartbeat and drop the lock if it is still ours; False if it could not be dropped."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.ctx.aws.read_timeout * 3)
        if self.keep_for_takeover or self.lost:
            return True  # kept on purpose, or not ours to drop
        try:
            self.ledger.release(self.lock.release_id)
            return True
        except Exception:
            return False


def acquire(ctx: Context, ledger: Ledger, *, gate: str, version: str, who: str, release_id: str) -> tuple[Lease, d.Lock | None]:
    """Take the lock; return our lease and the dead lock taken over (if any). Raises LockCollision."""
    seen: d.LockSighting | None = None
    announced = False
    watched: d.Lock | None = None
    while True:
        current = ledger.read_lock()
        verdict, seen = d.judge_lock(current, seen, ctx.monotonic())
        if verdict == d.LOCK_FREE and watched is not None:
            # Its holder was alive and finished while this release waited: it changed the stage, maybe to
            # what this release wanted, maybe the opposite. Following it blindly would silently replace it.
            raise LockCollision(watched, "its holder finished while this release waited; see what it did "
                                         "(`liftoff status`, `liftoff history`) and run the command again if it still applies")
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
        watched = current
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
    settled = d.trust_own_outcome(settled, lock.activity)
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



def describe_lock(lock: d.Lock) -> list[str]:
    return [
        f"held by   {lock.holder}",
        f"release   {lock.release_id}: {lock.gate} {lock.version}",
        f"doing     {lock.activity or '-'} (since {lock.activity_at or '-'})",
        f"acquired  {lock.acquired_at or '-'}; last heartbeat {lock.heartbeat_at or '-'} (the holder's clock)",
        f"lease     {lock.lease_seconds:.0f} s: renewed every {lock.lease_seconds / 3:.0f} s while its run lives; "
        "a release waiting for it takes it over once it stays unchanged that long",
    ]

