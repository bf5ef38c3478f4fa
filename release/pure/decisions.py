"""Pure release decisions: no AWS, no clock, no I/O. Everything AWS-shaped arrives as plain data.

Each gate is a function from the facts (images, stack, lock, ledger) to a Decision. The CLI gathers
the facts through `release.adapters.aws`, asks here, and only then changes anything, so a refusal can never
have changed anything.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Mapping, Sequence

from config import RELEASE_TAG_DESCRIPTION, RELEASE_TAG_PATTERN

# Exit codes, shared by every verb (documented in docs/release-tool.md and `liftoff --help`).
EXIT_OK = 0
EXIT_USAGE = 2  # bad input: unknown stage, malformed or mutable tag, unknown version, no confirmation
EXIT_REFUSED = 3  # refused by a gate: lock held, not staged, scan findings/no scan, image gone
EXIT_AWS = 4  # AWS error: no credentials, access denied, stack missing, busy or broken
EXIT_ROLLED_BACK = 5  # the switch failed and was undone (CloudFormation rolled back, or the fleet's canary host failed before the stack moved): the old version is active
EXIT_UNVERIFIED = 6  # the stack took the new version but it was not seen running healthy in time
EXIT_AUTO_ROLLED_BACK = 7  # switched, then a host's canary or a release alarm in the bake window said bad: liftoff rolled it back
EXIT_INTERNAL = 1  # a bug: the message says what was recorded; never a Python traceback
EXIT_SIGNAL_BASE = 128  # interrupted by signal N: exit 128 + N (SIGHUP 129, SIGINT 130, SIGTERM 143)

IMAGE_TAG = "ImageTag"
STAGED_IMAGE_TAG = "StagedImageTag"
# The ec2 activation association's MaxConcurrency (stacks/service_stack.py): set on every switch.
ACTIVATE_CONCURRENCY = "ActivateConcurrency"
ONE_HOST_AT_A_TIME, IN_WAVES, EVERY_HOST_AT_ONCE = "1", "25%", "100%"


def hosts_at_once(max_concurrency: str, hosts: int) -> int:
    """An association's MaxConcurrency as a number of hosts: "1", "10" or "25%" (of the targets, at least one)."""
    if max_concurrency.endswith("%"):
        return max(1, hosts * int(max_concurrency[:-1]) // 100)
    return max(1, int(max_concurrency))


GATES = ("stage", "activate", "rollback")
GATE_PARAMETER = {"stage": STAGED_IMAGE_TAG, "activate": IMAGE_TAG, "rollback": IMAGE_TAG}

# Lowest first. UNDEFINED/UNTRIAGED carry no severity, so they never reach a threshold on their own.
SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
DEFAULT_FAIL_SEVERITY = "CRITICAL"

STABLE_STATUSES = frozenset({
    "CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE",
})
MASKED_VALUE = "****"
MUTABLE_TAGS = frozenset({"latest", "stable", "main", "master", "head", "current", "prod", "production", "staging", "edge", "dev"})

RESULT_IN_PROGRESS = "in_progress"
RESULT_SUCCEEDED = "succeeded"
RESULT_ROLLED_BACK = "rolled_back"
RESULT_FAILED = "failed"
RESULT_UNVERIFIED = "unverified"
# The run stopped before the outcome could be read (stack still updating, or unreachable).
RESULT_INTERRUPTED = "interrupted"
# Recorded without a switch: a gate or the lock refused, or there was nothing to do.
RESULT_REFUSED = "refused"
RESULT_NOOP = "noop"
# A switch happened (whatever its verification said): these entries move the active version.
SWITCHED_RESULTS = frozenset({RESULT_SUCCEEDED, RESULT_UNVERIFIED})
SWITCH_GATES = ("activate", "rollback")


@dataclass(frozen=True)
class Image:
    tag: str
    digest: str
    pushed_at: str = ""
    size_bytes: int = 0
    # COMPLETE, IN_PROGRESS, FAILED, ... or NONE when the image was never scanned.
    scan_status: str = "NONE"
    severity_counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    name: str
    status: str
    parameters: Mapping[str, str]
    outputs: Mapping[str, str]
    status_reason: str = ""


@dataclass(frozen=True)
class Lock:
    """The stage's lease. Times are the holder's own clock, shown to people, never compared across clients:
    a waiter judges the lease only by `record_version` staying unchanged for `lease_seconds` on its own clock."""

    holder: str
    release_id: str
    gate: str
    version: str
    acquired_at: str
    record_version: str
    lease_seconds: float
    activity: str = ""
    activity_at: str = ""
    heartbeat_at: str = ""
    entry_key: str = ""


@dataclass(frozen=True)
class Entry:
    """One release in the ledger: written when it starts, completed once with its outcome."""

    release_id: str
    gate: str
    from_version: str
    to_version: str
    who: str
    started_at: str
    digest: str = ""
    result: str = RESULT_IN_PROGRESS
    finished_at: str = ""
    duration_seconds: float | None = None
    forced: bool = False
    detail: str = ""
    # Assigned by the table (an atomic counter) when the entry is written; the ledger's order.
    seq: int | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # "proceed", "noop" or "refuse"
    exit_code: int = EXIT_OK
    message: str = ""
    hint: str = ""

    @property
    def proceeds(self) -> bool:
        return self.action == "proceed"


def proceed(message: str = "") -> Decision:
    return Decision("proceed", EXIT_OK, message)


def noop(message: str) -> Decision:
    return Decision("noop", EXIT_OK, message)


def refuse(exit_code: int, message: str, hint: str = "") -> Decision:
    return Decision("refuse", exit_code, message, hint)


# --- single checks ------------------------------------------------------------------------------

def check_tag(tag: str) -> Decision | None:
    """A release tag must be immutable: `latest` and friends could mean a different image tomorrow."""
    if tag.lower() in MUTABLE_TAGS:
        return refuse(
            EXIT_USAGE, f"{tag!r} is a mutable tag: it can point at a different image tomorrow",
            f"name an immutable release tag ({RELEASE_TAG_DESCRIPTION}); `liftoff versions` lists them",
        )
    if not re.fullmatch(RELEASE_TAG_PATTERN, tag):
        return refuse(
            EXIT_USAGE, f"{tag!r} is not a release tag",
            f"expected {RELEASE_TAG_DESCRIPTION}; `liftoff versions` lists the release images",
        )
    return None


def check_stack(stack: Stack) -> Decision | None:
    if stack.status in STABLE_STATUSES:
        return None
    if stack.status.endswith("_IN_PROGRESS"):
        return refuse(
            EXIT_AWS, f"stack {stack.name} is busy ({stack.status})",
            "wait for the running update to finish (`liftoff status`), then try again",
        )
    return refuse(
        EXIT_AWS, f"stack {stack.name} is in {stack.status}, not a state a release can start from"
        + (f": {stack.status_reason}" if stack.status_reason else ""),
        "repair the stack first (UPDATE_ROLLBACK_FAILED: `aws cloudformation continue-update-rollback`; "
        "a failed create: delete it and `cdk deploy` again)",
    )


def check_image(tag: str, images: Mapping[str, Image], known_versions: Iterable[str] = ()) -> Decision | None:
    """Unknown tag = probably a typo (bad input); a tag we once released whose image is gone = a gate."""
    if tag in images:
        return None
    if tag in set(known_versions):
        return refuse(
            EXIT_REFUSED, f"the image for {tag} is gone from the repository",
            "push the same build again under a new tag and release that; a missing image cannot start",
        )
    near = nearest_tags(tag, images)
    return refuse(
        EXIT_USAGE, f"no release image {tag!r} in the repository",
        ("nearest existing tags: " + ", ".join(near)) if near else "the repository holds no release images yet; push one first",
    )


def scan_blockers(image: Image, fail_severity: str = DEFAULT_FAIL_SEVERITY) -> dict[str, int]:
    """The findings at or above `fail_severity`, by severity."""
    threshold = SEVERITIES.index(fail_severity)
    return {
        severity: count for severity, count in image.severity_counts.items()
        if severity in SEVERITIES and SEVERITIES.index(severity) >= threshold and count > 0
    }


def check_scan(image: Image, fail_severity: str = DEFAULT_FAIL_SEVERITY) -> Decision | None:
    if image.scan_status != "COMPLETE":
        # No scan is not a clean scan: refuse rather than guess.
        return refuse(
            EXIT_REFUSED, f"image {image.tag} has no completed scan (scan status {image.scan_status})",
            f"run `aws ecr start-image-scan --repository-name <repo> --image-id imageTag={image.tag}` and try again when it is COMPLETE",
        )
    blockers = scan_blockers(image, fail_severity)
    if blockers:
        found = ", ".join(f"{count} {severity}" for severity, count in sorted(blockers.items(), key=lambda kv: -SEVERITIES.index(kv[0])))
        return refuse(
            EXIT_REFUSED, f"image {image.tag} failed its scan: {found} (refusing at {fail_severity} or above)",
            "fix the findings and push a new tag, or accept the risk explicitly with --fail-severity",
        )
    return None


def _first(*checks: Decision | None) -> Decision | None:
    return next((check for check in checks if check is not None), None)


# --- gates --------------------------------------------------------------------------------------

def decide_stage(
    tag: str, *, images: Mapping[str, Image], stack: Stack,
    fail_severity: str = DEFAULT_FAIL_SEVERITY, known_versions: Iterable[str] = (),
) -> Decision:
    """The update gate: may `tag` be pulled onto the stage? Asked while holding the lock, on fresh reads."""
    refusal = _first(check_tag(tag), check_stack(stack), check_image(tag, images, known_versions))
    if refusal:
        return refusal
    if stack.parameters.get(STAGED_IMAGE_TAG) == tag:
        return noop(f"{tag} is already staged on {stack.name}")
    return check_scan(images[tag], fail_severity) or proceed(f"stage {tag} (staged now: {stack.parameters.get(STAGED_IMAGE_TAG, '-')})")


def decide_activate(
    tag: str, *, images: Mapping[str, Image], stack: Stack,
    gate: str = "activate", force: bool = False,
    fail_severity: str = DEFAULT_FAIL_SEVERITY, known_versions: Iterable[str] = (),
    ran_before: Iterable[str] = (),
) -> Decision:
    """The activation gate (also the rollback path): may `tag` become the running version now?

    Asked while holding the lock, on fresh reads. Activation must follow staging unless forced. A
    rollback may go without staging only to a version that already ran on this stage or was staged
    there (`ran_before`); any other `--to` needs staging or `--force`, like `activate`. Every path
    re-checks the scan: `--force` skips the staging step, not the scan.
    """
    refusal = _first(check_tag(tag), check_stack(stack), check_image(tag, images, known_versions))
    if refusal:
        return refusal
    active = stack.parameters.get(IMAGE_TAG)
    if active == tag:
        return noop(f"{tag} is already active on {stack.name}")
    staged = stack.parameters.get(STAGED_IMAGE_TAG)
    if gate == "activate" and staged != tag and not force:
        return refuse(
            EXIT_REFUSED, f"{tag} is not staged on {stack.name} (staged: {staged or '-'})",
            f"run `liftoff stage {tag}` first, or pass --force to activate without staging (recorded as forced)",
        )
    if gate == "rollback" and staged != tag and tag not in set(ran_before) and not force:
        return refuse(
            EXIT_REFUSED, f"{tag} never ran on {stack.name} and is not staged (staged: {staged or '-'}); a rollback goes back to a version that ran",
            f"run `liftoff stage {tag}` first, or pass --force to switch to it anyway (recorded as forced)",
        )
    return check_scan(images[tag], fail_severity) or proceed(f"{gate} {active or '-'} -> {tag}")


def parameters_for(current: Mapping[str, str], gate: str, tag: str, *, concurrency: str | None = None) -> list[dict[str, str]]:
    """Every stack parameter, explicitly: the gate's own parameter set to `tag`, the activation's concurrency
    to `concurrency` where given and the stack has it, all others kept.

    Explicit values (never UsePreviousValue) so the update means exactly what was decided here.
    """
    key = GATE_PARAMETER[gate]
    if key not in current:
        raise ValueError(f"the stack has no {key} parameter; deploy a service stack with the release gates first")
    masked = sorted(name for name, value in current.items() if value == MASKED_VALUE and name != key)
    if masked:
        raise ValueError(f"parameters {', '.join(masked)} are NoEcho; their values cannot be passed on explicitly")
    chosen = {key: tag, **({ACTIVATE_CONCURRENCY: concurrency} if concurrency and ACTIVATE_CONCURRENCY in current else {})}
    return [
        {"ParameterKey": name, "ParameterValue": chosen.get(name, value)}
        for name, value in sorted(current.items())
    ]


def changed_parameters(current: Mapping[str, str], parameters: Sequence[Mapping[str, str]]) -> dict[str, tuple[str, str]]:
    """What an update would change: name -> (old, new)."""
    return {
        p["ParameterKey"]: (current.get(p["ParameterKey"], ""), p["ParameterValue"])
        for p in parameters if current.get(p["ParameterKey"]) != p["ParameterValue"]
    }


# --- the ledger ---------------------------------------------------------------------------------

def switched(entry: Entry) -> bool:
    """Did this entry move the active version? (Whatever its verification said: an unverified switch ran.)"""
    # A re-drive (from == to) ran the gate again on hosts that disagreed: it moved nothing on the stack.
    return entry.gate in SWITCH_GATES and entry.result in SWITCHED_RESULTS and entry.from_version != entry.to_version


def switches(entries: Sequence[Entry], active: str | None) -> list[Entry]:
    """The entries that moved the active version, oldest first (`entries` newest first).

    An `interrupted` entry (its run stopped while CloudFormation was still updating) counts when the
    update turned out to complete: the next release's `from` (every activate/rollback entry, refused or
    not, records the version active when it looked), or for the newest one the active version now, is
    its `to`. Entries stay write-once; this is read from what came after.
    """
    ordered = list(reversed(entries))
    moved: list[Entry] = []
    for index, entry in enumerate(ordered):
        if switched(entry):
            moved.append(entry)
        elif entry.gate in SWITCH_GATES and entry.result == RESULT_INTERRUPTED:
            later = next((e.from_version for e in ordered[index + 1:] if e.gate in SWITCH_GATES and e.from_version), active)
            if later == entry.to_version:
                moved.append(entry)
    return moved


def previous_version(entries: Sequence[Entry], active: str | None) -> str | None:
    """The version that ran before `active`: the `from` of the newest switch to it (newest first).

    A rolled-back or refused activation never took over and a stage never switched anything; an
    unverified switch did take over, so it counts.
    """
    for entry in reversed(switches(entries, active)):
        if entry.to_version == active:
            return entry.from_version or None
    return None


def undo_stack(entries: Sequence[Entry], active: str | None = None) -> list[str]:
    """The versions a run of rollbacks walks back through, the next one last (`entries` newest first).

    An activation pushes the version it replaced. A rollback to a version on the stack pops down to
    it (so a second rollback continues backwards instead of returning to what the first one undid);
    a rollback to any other version (`--to`, forced) counts as an activation.
    """
    stack: list[str] = []
    for entry in switches(entries, active):
        if entry.gate == "rollback" and entry.to_version in stack:
            del stack[len(stack) - 1 - stack[::-1].index(entry.to_version):]
        elif entry.from_version:
            stack.append(entry.from_version)
    return stack


def last_switched_to(entries: Sequence[Entry], active: str | None = None) -> str | None:
    moved = switches(entries, active)
    return moved[-1].to_version if moved else None


def rollback_target(entries: Sequence[Entry], active: str | None) -> str | None:
    """Where `liftoff rollback` (no --to) goes: the version active before the current one took over,
    walking further back on each rollback. None when the ledger cannot say."""
    if last_switched_to(entries, active) != active:
        return None
    stack = undo_stack(entries, active)
    return stack[-1] if stack else None


def ran_on_stage(entries: Sequence[Entry], active: str | None = None) -> set[str]:
    """Versions this stage ran or staged (a rollback --to them needs no staging)."""
    ran: set[str] = set()
    for entry in switches(entries, active):
        ran.update(v for v in (entry.from_version, entry.to_version) if v)
    for entry in entries:
        if entry.gate == "stage" and entry.result == RESULT_SUCCEEDED:
            ran.update(v for v in (entry.from_version, entry.to_version) if v)
    return ran


def released_versions(entries: Iterable[Entry]) -> set[str]:
    """Versions this stage really knew: a refused attempt (a typo'd tag) never released anything, so it
    cannot turn the next identical typo from "no such image" (exit 2) into "image gone" (exit 3)."""
    return {v for e in entries if e.result != RESULT_REFUSED for v in (e.from_version, e.to_version) if v}


def auto_rollback_target(entries: Sequence[Entry], *, released: str, previous: str | None) -> tuple[str | None, str]:
    """Where an automatic rollback of `released` goes, and why, if not to `previous` (`entries` newest first).

    Never to a version whose own switch ended unverified (it was never seen running healthy): further back
    along the undo path, to the newest version whose switch was verified. (None, why) when there is none."""
    moved = switches(entries, released)

    def unverified(version: str) -> bool:
        own = next((e for e in reversed(moved) if e.to_version == version), None)
        if own is None or own.result == RESULT_SUCCEEDED:
            return False  # a version liftoff never switched to has no verdict against it
        # A later run of the same verb that verified it (the re-drive that converged the hosts) clears the verdict.
        newer = entries[:next(i for i, e in enumerate(entries) if e is own)]
        return not any(e.gate in SWITCH_GATES and e.to_version == version and e.result == RESULT_SUCCEEDED for e in newer)

    if previous and not unverified(previous):
        return previous, ""
    for candidate in (v for v in reversed(undo_stack(entries, released)) if v not in (released, previous)):
        if not unverified(candidate):
            return candidate, (f"{previous} is skipped: its own switch ended unverified (never seen running healthy); "
                               f"going to {candidate}, the newest version before it not recorded unverified")
    return None, f"{previous or '-'}'s own switch ended unverified and no version before it ran verified here"


OUTCOME_PREFIX = "outcome "


def own_outcome_activity(result: str, detail: str) -> str:
    """What a run writes into the lock when the ledger refused its outcome, so the takeover can record it."""
    return f"{OUTCOME_PREFIX}{result}: {detail}"


def trust_own_outcome(settled: "Settlement", activity: str) -> "Settlement":
    """A takeover closing a dead run's entry: that run's own outcome (left in the lock's activity when the
    ledger refused it) wins over the bare read-back when the stack agrees with it (same switched-or-not)."""
    if not activity.startswith(OUTCOME_PREFIX):
        return settled
    result, _, detail = activity[len(OUTCOME_PREFIX):].partition(": ")
    agrees = (result in SWITCHED_RESULTS and settled.switched is True) or (
        result in (RESULT_FAILED, RESULT_ROLLED_BACK) and settled.switched is False)
    if not agrees:
        return settled
    return Settlement(result, settled.switched, settled.value,
                      f"{detail} (its run's own outcome, which the ledger had refused; the stack agrees)",
                      settled.exit_code)


def decide_rollback_target(to: str | None, *, active: str | None, entries: Sequence[Entry]) -> Decision:
    """Which version a rollback goes to; the chosen tag is in `message` when it proceeds."""
    if to is not None:
        return proceed(to)
    target = rollback_target(entries, active)
    if target is not None:
        return proceed(target)
    last = last_switched_to(entries, active)
    if last is not None and last != active:
        return refuse(
            EXIT_USAGE, f"the active version {active or '-'} was not set by liftoff (its last switch went to {last})",
            "name the version with `liftoff rollback --to VERSION` (`liftoff versions` lists them)",
        )
    return refuse(
        EXIT_USAGE, f"the ledger records no version before {active or 'the active one'} to go back to",
        "name the version with `liftoff rollback --to VERSION` (`liftoff versions` lists them)",
    )


def nearest_tags(tag: str, existing: Iterable[str], limit: int = 3) -> list[str]:
    """The existing tags that look most like `tag`, best first (for "did you mean")."""
    candidates = sorted(set(existing))
    return difflib.get_close_matches(tag, candidates, n=limit, cutoff=0.0)


def mark_versions(tags: Iterable[str], *, active: str | None, staged: str | None, previous: str | None) -> dict[str, list[str]]:
    marks: dict[str, list[str]] = {}
    for tag in tags:
        marks[tag] = [name for name, value in (("ACTIVE", active), ("STAGED", staged), ("PREVIOUS", previous)) if value == tag]
    return marks


def version_sort_key(tag: str) -> tuple:
    """Semantic versions by number (1.10.0 after 1.9.0); shas after them, alphabetically."""
    match = re.fullmatch(r"v?([0-9]+)\.([0-9]+)\.([0-9]+)(-.*)?", tag)
    if match:
        major, minor, patch, pre = match.groups()
        # A pre-release sorts before its release.
        return (0, int(major), int(minor), int(patch), 0 if pre else 1, pre or "")
    return (1, 0, 0, 0, 0, tag)


# --- outcomes -----------------------------------------------------------------------------------

def stack_outcome(status: str) -> str:
    """What a finished update's final status means for the release."""
    if status == "UPDATE_COMPLETE":
        return RESULT_SUCCEEDED
    if status == "UPDATE_ROLLBACK_COMPLETE":
        return RESULT_ROLLED_BACK
    return RESULT_FAILED


def failing_events(events: Iterable[Mapping[str, str]]) -> list[Mapping[str, str]]:
    """The events that say why an update failed (oldest first as given), without the cancellation noise."""
    return [
        event for event in events
        if event.get("ResourceStatus", "").endswith("_FAILED")
        and "Resource update cancelled" not in event.get("ResourceStatusReason", "")
    ]


def verify_ecs(tag: str, *, task_definition_image: str, running_images: Sequence[str], desired_count: int,
               healthy_targets: int, unhealthy_targets: Sequence[str]) -> tuple[bool, str]:
    """Is `tag` what the ECS service runs: its task definition, every running task, healthy targets?"""
    if not _image_has_tag(task_definition_image, tag):
        return False, f"the service's task definition runs {task_definition_image or 'no image'}, not {tag}"
    stale = [image for image in running_images if not _image_has_tag(image, tag)]
    if stale:
        return False, f"{len(stale)} task(s) still run another image ({', '.join(sorted(set(stale)))})"
    if len(running_images) < desired_count:
        return False, f"{len(running_images)} of {desired_count} task(s) running {tag}"
    not_healthy = targets_not_healthy(desired_count, healthy_targets, unhealthy_targets)
    if not_healthy:
        return False, not_healthy
    return True, f"{len(running_images)} task(s) run {tag}; {healthy_targets} target(s) healthy"


def last_stopped_of(tag: str, stopped_tasks: Sequence[dict], *, since: float | None = None) -> dict | None:
    """The newest stopped task that ran `tag` (since `since`, epoch seconds, when given): why the version does not run."""
    for task in stopped_tasks:
        if not _image_has_tag(task.get("image", ""), tag):
            continue
        if since is not None:
            try:
                if datetime.fromisoformat(task["stopped_at"].replace("Z", "+00:00")).timestamp() < since:
                    continue
            except (KeyError, ValueError):
                continue
        return task
    return None


def verify_ec2(tag: str, *, association_parameter: str, association_status: str, instance_count: int,
               desired_count: int, healthy_targets: int, unhealthy_targets: Sequence[str]) -> tuple[bool, str]:
    """Is `tag` what the hosts run: the activate association targets it, succeeded, targets healthy?"""
    if association_parameter != tag:
        return False, f"the activate association runs {association_parameter or 'nothing'}, not {tag}"
    if association_status != "Success":
        return False, f"the activate association is {association_status or 'not reported yet'}"
    if instance_count < desired_count:
        return False, f"{instance_count} of {desired_count} host(s) in service"
    not_healthy = targets_not_healthy(desired_count, healthy_targets, unhealthy_targets)
    if not_healthy:
        return False, not_healthy
    return True, f"{instance_count} host(s) activated {tag}; {healthy_targets} target(s) healthy"


def targets_not_healthy(desired_count: int, healthy_targets: int, unhealthy_targets: Sequence[str]) -> str:
    """Why the load balancer does not yet serve the new version from every target ('' when it does)."""
    if unhealthy_targets:
        return f"targets not healthy: {', '.join(unhealthy_targets)}"
    if healthy_targets < desired_count:
        return f"{healthy_targets} of {desired_count} target(s) healthy"
    return ""


def _image_has_tag(image: str, tag: str) -> bool:
    return image.rsplit("/", 1)[-1].endswith(f":{tag}")


# --- the lease ----------------------------------------------------------------------------------

LOCK_FREE, LOCK_ALIVE, LOCK_WAIT, LOCK_STALE = "free", "alive", "wait", "stale"


@dataclass(frozen=True)
class LockSighting:
    """A record version of the lock and when this client first saw it, on this client's monotonic clock."""

    record_version: str
    since: float


def judge_lock(lock: Lock | None, seen: LockSighting | None, now: float) -> tuple[str, LockSighting | None]:
    """Is the lock free, alive (its holder renewed it while we watched), stale (unchanged for a full
    lease on our clock: its holder is gone) or still to be watched? Never compares clocks across
    machines: the holder's times in the item are for people only (AWS DynamoDB Lock Client's rule)."""
    if lock is None:
        return LOCK_FREE, None
    if seen is None:
        return LOCK_WAIT, LockSighting(lock.record_version, now)
    if seen.record_version != lock.record_version:
        return LOCK_ALIVE, LockSighting(lock.record_version, now)
    if now - seen.since >= lock.lease_seconds:
        return LOCK_STALE, seen
    return LOCK_WAIT, seen


def lock_refusal(lock: Lock, why: str) -> Decision:
    return refuse(
        EXIT_REFUSED,
        f"another release holds the lock: {lock.gate} {lock.version} by {lock.holder} (release {lock.release_id}"
        + (f", {lock.activity}" if lock.activity else "") + f"); {why}",
        "wait for it to finish (`liftoff lock` shows what it is doing); a lock whose holder died is taken over "
        f"once its lease ({lock.lease_seconds:.0f} s) passes without a heartbeat; `liftoff unlock` breaks it by hand",
    )


# --- the truth after an interruption ------------------------------------------------------------

@dataclass(frozen=True)
class Settlement:
    """What an interrupted or failed release did, read back from the stack."""

    result: str
    switched: bool | None  # None: cannot tell (stack unreadable or still updating)
    value: str | None  # the gate parameter's value now (None when unreadable)
    detail: str
    exit_code: int


def settle(*, gate: str, from_version: str, to_version: str, stack: Stack | None, cause: str) -> Settlement:
    """The outcome to report and record for a release that stopped before its normal end, from a fresh
    read of the stack (None when it could not be read). A switch that happened is never `failed`."""
    key = GATE_PARAMETER[gate]
    if stack is None:
        return Settlement(RESULT_INTERRUPTED, None, None,
                          f"{cause}; the stack could not be read back, so whether {key} became {to_version} is unknown "
                          "(`liftoff status` tells)", EXIT_AWS)
    value = stack.parameters.get(key, "")
    if stack.status.endswith("_IN_PROGRESS"):
        return Settlement(RESULT_INTERRUPTED, None, value,
                          f"{cause}; {stack.name} is still {stack.status} ({key} {value or '-'}): the update continues "
                          f"and may yet switch to {to_version} (`liftoff status` follows it)", EXIT_AWS)
    if value == to_version and value != from_version:
        if gate == "stage":
            return Settlement(RESULT_SUCCEEDED, True, value, f"{cause}; {key} is {value}: the update completed", EXIT_OK)
        return Settlement(RESULT_UNVERIFIED, True, value,
                          f"{cause}; {key} is {value}: the switch happened, not verified running healthy", EXIT_UNVERIFIED)
    if value == from_version:
        rolled = stack.status == "UPDATE_ROLLBACK_COMPLETE"
        return Settlement(RESULT_ROLLED_BACK if rolled else RESULT_FAILED, False, value,
                          f"{cause}; {key} is still {value or '-'}: nothing switched", EXIT_AWS)
    return Settlement(RESULT_FAILED, False, value,
                      f"{cause}; {key} is {value or '-'}, neither {from_version or '-'} nor {to_version}: something else changed it",
                      EXIT_AWS)


def one_line(text: str) -> str:
    """History keeps one line per entry whatever a detail contains (AWS messages carry newlines)."""
    return " ".join(text.split())


# --- a denied call -------------------------------------------------------------------------------

DENIED_CODES = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
                "AuthorizationError", "NotAuthorized")
_NOT_AUTHORIZED = re.compile(r"(?:User|Principal): (?P<principal>\S+) is not authorized to perform: (?P<action>[\w-]+:[\w*-]+)"
                             r"(?: on resource: (?P<resource>\S+?))?(?=[\s,;]|$)")


@dataclass(frozen=True)
class Denial:
    principal: str
    action: str
    resource: str

    def text(self) -> str:
        return f"access denied: {self.principal} may not call {self.action} on {self.resource}"


def denial(code: str, message: str, *, operation: str, principal: str = "") -> Denial | None:
    """An AWS error that is a permission refusal, with who was refused what on which resource (from AWS's own message
    where it says so; `operation` and `principal` fill what it left out), else None."""
    if code not in DENIED_CODES and not code.endswith("AccessDenied"):
        return None
    found = _NOT_AUTHORIZED.search(message or "")
    return Denial(principal=(found and found.group("principal")) or principal or "the caller (AWS did not name it)",
                  action=(found and found.group("action")) or f"{operation} (AWS did not name the action)",
                  resource=(found and found.group("resource")) or "a resource AWS did not name")


def refusal_hint(info: Mapping[str, str], operation: str | None) -> str:
    """What to do about a permission refusal ('' for any other error)."""
    refused = denial(info.get("Code", ""), info.get("Message", ""), operation=operation or "the call")
    if refused is None:
        return ""
    return (f"grant {refused.action.split(' ', 1)[0]} on the resource to the principal that ran this (docs/security.md lists "
            "what each principal needs); nothing after the refused call was done")
