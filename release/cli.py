"""`liftoff`: pass the release gates of a stage safely (stage -> activate -> rollback), with boto3 only.

`main(argv)` returns the exit code instead of exiting, so `make deploy` and the tests can call it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

from config import ConfigError, StageConfig, load_config
from release import decisions as d
from release.aws import Aws, MissingOutput, StackNotFound, healthy_and_unhealthy
from release.ledger import Ledger, LockHeld, new_release_id

EXIT_CODES = """\
exit codes:
  0  ok (also: nothing to do, the version was already staged/active)
  2  usage or bad input: unknown stage, malformed or mutable tag (latest), unknown version,
     no confirmation (non-interactive without --yes)
  3  refused by a gate: lock held by another release, version not staged, image scan has
     findings at or above --fail-severity or no completed scan, image gone from the repository
  4  AWS error: no credentials or region, access denied, stack or output missing, stack busy
     or in a failed state, CloudFormation refused the update or the wait timed out
  5  the rollout failed and CloudFormation rolled back: the previous version is still active
  6  CloudFormation completed but the new version was not seen running healthy in time
     (see `liftoff status`; `liftoff rollback` to go back)
Refusals (2, 3, and 4 before an update starts) change nothing."""

DESCRIPTION = """\
Release gates for a liftoff stage. Every change goes through the service stack's parameters
(StagedImageTag for `stage`, ImageTag for `activate`/`rollback`), so the next `cdk deploy` keeps it.
Scaling is not a release: edit desired_count in cdk.json and `cdk deploy`; `status` shows it."""


class Abort(Exception):
    """Stop the verb with an exit code and a message that says what to do."""

    def __init__(self, exit_code: int, message: str, hint: str = ""):
        super().__init__(message)
        self.exit_code, self.message, self.hint = exit_code, message, hint


# --- argument parsing -----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stage", required=True, help="stage name from cdk.json (e.g. staging)")
    common.add_argument("--config", type=Path, default=Path("cdk.json"), help="path to cdk.json (default: ./cdk.json)")
    common.add_argument("--region", help="AWS region (default: the stage's region in cdk.json, else your AWS config)")
    common.add_argument("--json", action="store_true", help="one JSON document on stdout; progress goes to stderr")

    gate = argparse.ArgumentParser(add_help=False)
    gate.add_argument("--fail-severity", choices=d.SEVERITIES, default=d.DEFAULT_FAIL_SEVERITY,
                      help="refuse an image with a scan finding at or above this severity (default: CRITICAL)")
    gate.add_argument("--poll-interval", type=float, default=5.0, help="seconds between stack event polls (default 5)")
    gate.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for CloudFormation (default 1800)")
    gate.add_argument("--lock-minutes", type=int, default=30, help="lock expiry, at least this run's waits + 5 min; an expired lock (a crashed run) is taken over (default 30)")

    switch = argparse.ArgumentParser(add_help=False)
    switch.add_argument("--yes", action="store_true", help="do not ask for confirmation (required when stdin is not a terminal)")
    switch.add_argument("--verify-timeout", type=float, default=600.0,
                        help="seconds to wait for the new version to run healthy after the update (default 600)")

    parser = argparse.ArgumentParser(
        prog="liftoff", description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("versions", parents=[common], help="release images with digest, push time, size, scan; ACTIVE/STAGED/PREVIOUS")
    p = verbs.add_parser("stage", parents=[common, gate], help="update gate: pull VERSION onto the stage (StagedImageTag); nothing restarts")
    p.add_argument("version")
    p = verbs.add_parser("activate", parents=[common, gate, switch], help="activation gate: switch the running version to a staged VERSION (ImageTag)")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="activate a version that was not staged (recorded as forced)")
    p = verbs.add_parser("rollback", parents=[common, gate, switch], help="activate the previous version (or --to VERSION) through the same path")
    p.add_argument("--to", dest="version", help="the version to go back to (default: the one before the active one)")
    verbs.add_parser("status", parents=[common], help="stack state, versions, desired count, target health, what runs, last releases")
    p = verbs.add_parser("history", parents=[common], help="the release ledger: who, when, gate, from -> to, digest, result, duration")
    p.add_argument("--limit", type=int, default=50, help="newest entries to show (default 50)")
    return parser


# --- context --------------------------------------------------------------------------------------

class Context:
    def __init__(self, args, *, aws: Aws, stdin: TextIO, stdout: TextIO, stderr: TextIO,
                 clock: Callable[[], float], sleep: Callable[[float], None]):
        self.args, self.aws = args, aws
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.clock, self.sleep = clock, sleep
        self.json = args.json
        self.stage: StageConfig = load_config(args.config).stage(args.stage)

    def say(self, text: str = "") -> None:
        """Human output; in --json mode it goes to stderr so stdout stays one JSON document."""
        print(text, file=self.stderr if self.json else self.stdout, flush=True)

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


# --- verbs ----------------------------------------------------------------------------------------

def cmd_versions(ctx: Context) -> dict:
    stack = ctx.service_stack()
    images = ctx.aws.images(ctx.repository())
    entries = ctx.ledger().entries()
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
    previous = d.previous_version(entries, active)
    marks = d.mark_versions(images, active=active, staged=staged, previous=previous)
    rows = [
        {**_image_json(images[tag]), "marks": marks[tag]}
        for tag in sorted(images, key=d.version_sort_key, reverse=True)
    ]
    ctx.say(_table(
        ["TAG", "DIGEST", "PUSHED", "SIZE", "SCAN", ""],
        [[r["tag"], r["digest"][:19], r["pushed_at"], _size(r["size_bytes"]), _scan_text(r), " ".join(r["marks"])] for r in rows],
    ) if rows else f"no release images in {ctx.repository()}")
    return {"repository": ctx.repository(), "active": active, "staged": staged, "previous": previous, "images": rows}


def cmd_status(ctx: Context) -> dict:
    stack = ctx.service_stack()
    ledger = ctx.ledger()
    entries = ledger.entries(limit=200)
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
    running = _running(ctx, stack)
    lock = ledger.read_lock()
    result = {
        "stack": {"name": stack.name, "status": stack.status, "reason": stack.status_reason},
        "compute": running["compute"],
        "active": active, "staged": staged, "previous": d.previous_version(entries, active),
        "desired_count": running["desired_count"], "configured_desired_count": ctx.stage.desired_count,
        "targets": running["targets"], "tasks": running.get("tasks", []), "hosts": running.get("hosts", []),
        "lock": asdict(lock) | {"expired": lock.expired(ctx.now())} if lock else None,
        "releases": [asdict(e) for e in entries[:5]],
        "alarms_firing": ctx.aws.firing_alarms(stack.name),
    }
    ctx.say(f"stage {ctx.stage.name}: {stack.name} {stack.status}" + (f" ({stack.status_reason})" if stack.status_reason else ""))
    ctx.say(f"  active   {active or '-'}\n  staged   {staged or '-'}\n  previous {result['previous'] or '-'}")
    ctx.say(f"  desired count {running['desired_count']} ({running['compute']}; cdk.json desired_count {ctx.stage.desired_count} "
            "- change it there and `cdk deploy`)")
    healthy, unhealthy = healthy_and_unhealthy(running["targets"])
    ctx.say(f"  targets  {healthy} healthy" + (f", not healthy: {', '.join(unhealthy)}" if unhealthy else ""))
    for task in running.get("tasks", []):
        ctx.say(f"  task {task['task']} {task['status']} {task['image']}")
    for host in running.get("hosts", []):
        ctx.say(f"  host {host['instance']} {host['state']} {host['health']} (activate association: "
                f"{running['association_parameter'] or '-'} {running['association_status'] or '-'})")
    alarms = result["alarms_firing"]
    ctx.say(f"  alarms   {len(alarms)} firing" if alarms else "  alarms   none firing")
    for alarm in alarms:
        ctx.say(f"    {alarm['name']} since {alarm['since']}: {alarm['description'] or alarm['reason']}")
    if lock:
        ctx.say(f"  lock     {lock.gate} {lock.version} by {lock.holder}" + (" (expired, can be taken over)" if lock.expired(ctx.now()) else ""))
    if entries:
        ctx.say("last releases:")
        ctx.say(_history_table(entries[:5]))
    return result


def cmd_history(ctx: Context) -> dict:
    entries = ctx.ledger().entries(limit=ctx.args.limit)
    ctx.say(_history_table(entries) if entries else f"no releases recorded for {ctx.stage.name} yet")
    return {"entries": [asdict(e) for e in entries]}


def cmd_release(ctx: Context, gate: str) -> dict:
    args = ctx.args
    stack = ctx.service_stack()
    ledger = ctx.ledger()
    entries = ledger.entries()
    tag = args.version
    if gate == "rollback":
        target = d.decide_rollback_target(tag, active=stack.parameters.get(d.IMAGE_TAG), entries=entries)
        if not target.proceeds:
            raise Abort(target.exit_code, target.message, target.hint)
        tag = target.message
    tag_refusal = d.check_tag(tag)
    if tag_refusal:  # before touching ECR: a malformed tag needs no image listing to be refused
        raise Abort(tag_refusal.exit_code, tag_refusal.message, tag_refusal.hint)
    images = ctx.aws.images(ctx.repository())
    known = d.released_versions(entries) | {v for v in (stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)) if v}
    force = bool(getattr(args, "force", False))

    def decide(stack: d.Stack, lock: d.Lock | None) -> d.Decision:
        common = dict(images=images, stack=stack, lock=lock, now=ctx.now(), fail_severity=args.fail_severity, known_versions=known)
        if gate == "stage":
            return d.decide_stage(tag, **common)
        return d.decide_activate(tag, gate=gate, force=force, **common)

    decision = decide(stack, ledger.read_lock())
    from_version = stack.parameters.get(d.GATE_PARAMETER[gate], "")
    base = {"gate": gate, "from": from_version, "to": tag, "digest": images[tag].digest if tag in images else "", "forced": force}
    if decision.action == "refuse":
        raise Abort(decision.exit_code, decision.message, decision.hint)
    if decision.action == "noop":
        ctx.say(f"nothing to do: {decision.message}")
        return {**base, "result": "noop", "message": decision.message}
    if gate != "stage":
        _confirm(ctx, f"{gate} {ctx.stage.name}: switch the running version {from_version or '-'} -> {tag}?")

    who = ctx.aws.caller_arn()
    release_id = new_release_id()
    try:
        taken_over = ledger.acquire(holder=who, release_id=release_id, gate=gate, version=tag,
                                    now=ctx.now(), ttl_seconds=lock_seconds(args))
    except LockHeld as held:
        refusal = d.check_lock(held.lock, ctx.now()) or d.refuse(d.EXIT_REFUSED, "another release took the lock just now", "try again shortly")
        raise Abort(refusal.exit_code, refusal.message, refusal.hint) from None
    if taken_over:
        ctx.say(f"took over an expired lock: {taken_over.gate} {taken_over.version} by {taken_over.holder} "
                f"(release {taken_over.release_id}) expired at {ctx.iso(taken_over.expires_at)}")
    try:
        return {**base, "release_id": release_id, "who": who,
                "lock_taken_over": asdict(taken_over) if taken_over else None,
                **{k: v for k, v in _run_release(ctx, gate, tag, force, decide, ledger, release_id, who, images).items() if k != "finished"}}
    finally:
        ledger.release(release_id)


def lock_seconds(args) -> int:
    """The lock must outlive this run's own waits, or a second release could take it over mid-update."""
    waits = args.timeout + getattr(args, "verify_timeout", 0.0) + 300
    return int(max(args.lock_minutes * 60, waits))


def _run_release(ctx: Context, gate, tag, force, decide, ledger: Ledger, release_id, who, images) -> dict:
    # Re-read under the lock: another release may have finished between our first look and the lock.
    stack = ctx.service_stack()
    decision = decide(stack, None)
    if decision.action == "refuse":
        raise Abort(decision.exit_code, decision.message, decision.hint)
    if decision.action == "noop":
        ctx.say(f"nothing to do: {decision.message}")
        return {"result": "noop", "message": decision.message}
    inputs = ctx.aws.parameter_inputs(stack)
    try:
        parameters = d.parameters_for(inputs, gate, tag)
    except ValueError as error:
        raise Abort(d.EXIT_AWS, f"cannot update {stack.name}: {error}") from None
    changes = d.changed_parameters(inputs, parameters)
    # Recorded as forced only when --force actually skipped the staging requirement.
    forced = force and gate == "activate" and stack.parameters.get(d.STAGED_IMAGE_TAG) != tag
    started = ctx.clock()
    entry = d.Entry(
        release_id=release_id, gate=gate, from_version=stack.parameters.get(d.GATE_PARAMETER[gate], ""), to_version=tag,
        who=who, started_at=ctx.iso(started), digest=images[tag].digest, forced=forced,
        detail="forced: not staged" if forced else "",
    )
    ledger.start(entry, ctx.stage.name)
    outcome: dict[str, Any] = {"result": d.RESULT_IN_PROGRESS}

    def finish(result: str, detail: str) -> None:
        # The start's own note (e.g. forced) stays in front of the outcome: the entry is completed, not rewritten.
        detail = "; ".join(part for part in (entry.detail, detail) if part)
        outcome.update(result=result, detail=detail, finished=True)
        ledger.finish(entry, result=result, finished_at=ctx.iso(), duration_seconds=ctx.clock() - started, detail=detail)

    try:
        for name, (old, new) in changes.items():
            ctx.say(f"{stack.name}: {name} {old or '-'} -> {new}")
        seen = ctx.aws.stack_event_ids(stack.name)
        try:
            ctx.aws.update_parameters(stack.name, parameters)
        except ClientError as error:
            finish(d.RESULT_FAILED, f"CloudFormation refused the update: {_client_error_text(error)}")
            raise Abort(d.EXIT_AWS, outcome["detail"], "nothing changed; fix the cause and run the same command again") from None
        final, events = _wait(ctx, stack.name, seen)
        outcome["events"] = events
        result = d.stack_outcome(final.status)
        if result == d.RESULT_ROLLED_BACK:
            failing = d.failing_events(events)
            reasons = "; ".join(f"{e['LogicalResourceId']} {e['ResourceStatus']}: {e['ResourceStatusReason']}" for e in failing)
            finish(d.RESULT_ROLLED_BACK, reasons or final.status_reason or "rolled back")
            outcome["failing_events"] = failing
            ctx.say(f"FAILED: CloudFormation rolled {stack.name} back; {entry.from_version or '-'} is still "
                    f"{'staged' if gate == 'stage' else 'active'}.")
            for event in failing:
                ctx.say(f"  {event['LogicalResourceId']} ({event['ResourceType']}) {event['ResourceStatus']}: {event['ResourceStatusReason']}")
            outcome["exit_code"] = d.EXIT_ROLLED_BACK
            return outcome
        if result != d.RESULT_SUCCEEDED:
            finish(d.RESULT_FAILED, f"stack ended in {final.status}: {final.status_reason}")
            raise Abort(d.EXIT_AWS, f"{stack.name} ended in {final.status}", "see the events above and `liftoff status`; repair the stack before the next release")
        if gate != "stage":
            verified, message = _verify(ctx, final, tag)
            outcome["verification"] = {"verified": verified, "message": message}
            if not verified:
                finish(d.RESULT_UNVERIFIED, message)
                ctx.say(f"NOT VERIFIED: {message}")
                ctx.say(f"  {tag} is set active but not confirmed running healthy; check `liftoff status`, "
                        f"`liftoff rollback --stage {ctx.stage.name}` returns to {entry.from_version}")
                outcome["exit_code"] = d.EXIT_UNVERIFIED
                return outcome
            ctx.say(f"verified: {message}")
        finish(d.RESULT_SUCCEEDED, outcome.get("verification", {}).get("message", ""))
        ctx.say(f"{gate} {tag} on {ctx.stage.name}: succeeded in {ctx.clock() - started:.1f}s (release {release_id})")
        return outcome
    except BaseException as error:
        # Whatever stopped us (AWS error, Ctrl-C), the entry must not stay "in progress" silently.
        if not outcome.get("finished"):
            detail = error.message if isinstance(error, Abort) else f"interrupted: {type(error).__name__}: {error}"
            try:
                finish(d.RESULT_FAILED, detail + " (the stack update may still be running; see `liftoff status`)")
            except Exception:  # the original error matters more than a failed ledger write
                pass
        raise


def _wait(ctx: Context, stack_name: str, seen: set[str]) -> tuple[d.Stack, list[dict]]:
    """Poll until the stack leaves *_IN_PROGRESS, printing each new event as it comes."""
    deadline = ctx.clock() + ctx.args.timeout
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
        if ctx.clock() >= deadline:
            raise Abort(d.EXIT_AWS, f"timed out after {ctx.args.timeout:.0f}s waiting for {stack_name} ({stack.status})",
                        "the update continues in CloudFormation; follow it with `liftoff status`")
        ctx.sleep(ctx.args.poll_interval)


def _verify(ctx: Context, stack: d.Stack, tag: str) -> tuple[bool, str]:
    deadline = ctx.clock() + ctx.args.verify_timeout
    while True:
        running = _running(ctx, stack)
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
        if verified or ctx.clock() >= deadline:
            return verified, message
        ctx.say(f"  waiting: {message}")
        ctx.sleep(max(ctx.args.poll_interval, 0.0))


def _running(ctx: Context, stack: d.Stack) -> dict:
    outputs = stack.outputs
    compute = outputs.get("ComputeMode", ctx.stage.compute)
    targets = ctx.aws.target_health(outputs["TargetGroupArn"]) if outputs.get("TargetGroupArn") else []
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
        raise Abort(d.EXIT_USAGE, "refusing to switch versions without confirmation: stdin is not a terminal",
                    "pass --yes to confirm non-interactively (pipelines)")
    print(f"{question} [y/N] ", end="", file=ctx.stderr, flush=True)
    if ctx.stdin.readline().strip().lower() not in ("y", "yes"):
        raise Abort(d.EXIT_USAGE, "not confirmed; nothing changed")


# --- rendering ------------------------------------------------------------------------------------

def _image_json(image: d.Image) -> dict:
    return {"tag": image.tag, "digest": image.digest, "pushed_at": image.pushed_at, "size_bytes": image.size_bytes,
            "scan_status": image.scan_status, "scan_findings": dict(image.severity_counts)}


def _scan_text(row: dict) -> str:
    if row["scan_status"] != "COMPLETE":
        return "not scanned" if row["scan_status"] == "NONE" else row["scan_status"].lower()
    findings = {s: n for s, n in row["scan_findings"].items() if n}
    return ", ".join(f"{s} {n}" for s, n in findings.items()) or "clean"


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1_000_000:.1f} MB"


def _history_table(entries: list[d.Entry]) -> str:
    return _table(
        ["STARTED", "WHO", "GATE", "FROM -> TO", "DIGEST", "RESULT", "DURATION"],
        [[e.started_at, e.who, e.gate + (" (forced)" if e.forced else ""), f"{e.from_version or '-'} -> {e.to_version}",
          e.digest[:19], e.result + (f": {e.detail}" if e.detail and e.result != d.RESULT_SUCCEEDED else ""),
          f"{e.duration_seconds:.1f}s" if e.duration_seconds is not None else "-"] for e in entries],
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows])


def _client_error_text(error: ClientError) -> str:
    info = error.response.get("Error", {})
    return f"{info.get('Code', 'Error')}: {info.get('Message', str(error))}"


def _aws_error(error: Exception, ctx: Context | None) -> Abort:
    stage = ctx.stage.name if ctx else "STAGE"
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return Abort(d.EXIT_AWS, "no AWS credentials found",
                     "set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the stage's account; `aws sts get-caller-identity` checks them")
    if isinstance(error, NoRegionError):
        return Abort(d.EXIT_AWS, "no AWS region configured", "pass --region, set AWS_DEFAULT_REGION (or region in your AWS profile), or pin the stage's region in cdk.json")
    if isinstance(error, StackNotFound):
        return Abort(d.EXIT_AWS, f"stack {error.name} does not exist in this account/region",
                     f"deploy the stage first (`make deploy STAGE={stage}`) or check AWS_PROFILE/--region")
    if isinstance(error, MissingOutput):
        return Abort(d.EXIT_AWS, f"stack {error.stack} has no output {error.output}",
                     "deploy the current version of the app (`make deploy`) so the stack exports it")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        hint = ("your identity lacks a permission this verb needs; see docs/release-tool.md (IAM)"
                if "AccessDenied" in code or code in ("UnauthorizedOperation", "AccessDeniedException")
                else "nothing changed by this error; check the message and run again")
        return Abort(d.EXIT_AWS, f"AWS error: {_client_error_text(error)}", hint)
    return Abort(d.EXIT_AWS, f"AWS error: {error}", "check connectivity and the AWS endpoint/region")


# --- entry point ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None, aws: Aws | None = None, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> int:
    """Run one verb; return its exit code (see EXIT_CODES). Never raises for expected failures."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse already printed the usage error
        return int(exit_.code or 0)
    verb = args.verb
    ctx: Context | None = None
    result: dict[str, Any] = {}
    try:
        try:
            ctx = Context(args, aws=aws or Aws(region=args.region), stdin=stdin, stdout=stdout, stderr=stderr, clock=clock, sleep=sleep)
        except ConfigError as error:
            raise Abort(d.EXIT_USAGE, str(error), f"stages are configured in {args.config}") from None
        if aws is None and args.region is None and ctx.stage.region:
            ctx.aws = Aws(region=ctx.stage.region)
        try:
            if verb == "versions":
                result = cmd_versions(ctx)
            elif verb == "status":
                result = cmd_status(ctx)
            elif verb == "history":
                result = cmd_history(ctx)
            else:
                result = cmd_release(ctx, verb)
        except (BotoCoreError, ClientError, StackNotFound, MissingOutput) as error:
            raise _aws_error(error, ctx) from None
    except Abort as abort:
        print(f"liftoff {verb}: {abort.message}" + (f"\n  -> {abort.hint}" if abort.hint else ""), file=stderr, flush=True)
        if args.json:
            payload = {"ok": False, "exit_code": abort.exit_code, "command": verb, "stage": args.stage,
                       "error": {"message": abort.message, "hint": abort.hint}}
            print(json.dumps(payload, indent=2, default=str), file=stdout)
        return abort.exit_code
    exit_code = result.pop("exit_code", d.EXIT_OK)
    if args.json:
        print(json.dumps({"ok": exit_code == d.EXIT_OK, "exit_code": exit_code, "command": verb, "stage": args.stage, **result},
                         indent=2, default=str), file=stdout)
    return exit_code


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
