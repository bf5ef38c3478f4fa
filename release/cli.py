"""`liftoff`: pass the release gates of a stage safely (stage -> activate -> rollback), with boto3 only.

This module parses arguments and prints; what a release does, in order, with the lock held, is
`release.flows.flow`. `main(argv)` returns the exit code instead of exiting, so `make deploy` and the
tests can call it; `run()` is the console script (it installs the signal handlers).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError, NoCredentialsError,
                                 NoRegionError, PartialCredentialsError, ReadTimeoutError)

from config import ConfigError, load_config
from release.pure import bake
from release.pure import decisions as d
from release.pure import fleet as reports
from release.pure import scale_in
from release.pure import scaling
from release.adapters import runtime as runtimes
from release.adapters import scaling_aws
from release.adapters.aws import Aws, MissingOutput, StackNotFound, healthy_and_unhealthy
from release.flows import ecs_rollback
from release.flows import schema_flow
from release.flows.context import Abort, Context, client_error_text, raise_on_signal, signal_of
from release.flows.flow import host_truths, run_release, run_unlock, running_now
from release.flows.lease import describe_lock

EXIT_CODES = """\
exit codes (and what runs on the hosts / tasks afterwards):
  0  ok: every in-service host reports it holds the version (stage: image present; activate/rollback:
     serving and ready); "nothing to do" only when the stack and every host already agree
  1  internal error (a bug): the message says what was recorded; never a traceback (hosts: `status`)
  2  usage or bad input: unknown stage, malformed or mutable tag (latest), unknown version, a bad
     option value (--timeout inf), no confirmation; a JSON document under --json (hosts untouched)
  3  refused by a gate or the lock: lock held by a live release, or a release this one watched
     finished while it waited; the lock lost before this run's write (nothing written); version not
     staged, scan findings or no completed scan, image gone, schema (never overridden by --force)
     (hosts untouched)
  4  AWS error: no credentials or region, access denied (named: who may not call what on which
     resource), endpoint not answering, stack or output
     missing, stack busy or failed, CloudFormation refused the update, the wait timed out, an
     UpdateStack with no answer (the message says whether the version switched; the ledger records
     the same); migrate: the one-off could not run, did not finish, or its migration failed
  5  the rollout failed and CloudFormation rolled back: the previous version is still active
  6  the change is on the stack but not verified on every host: activate/rollback not seen running
     healthy, or a host's gate failed (named with its reason); stage: a host's stage gate failed,
     nothing switched. The hosts named disagree; the same verb again re-runs the gate on them
  7  ec2: the version switched, then a host's canary judged it bad during activate, or a release
     alarm fired in the stage's bake window, and liftoff rolled back automatically (never to a
     version whose own switch ended unverified)
  128+N  interrupted by signal N (129 SIGHUP, 130 Ctrl-C/SIGINT, 143 SIGTERM): the stack was read
     back, the outcome recorded and the lock released; the message says whether it switched
Refusals (2, 3, and 4 before an update starts) change nothing."""

DESCRIPTION = """\
Release gates for a liftoff stage. Every change goes through the service stack's parameters
(StagedImageTag for `stage`, ImageTag for `activate`/`rollback`), so the next `cdk deploy` keeps it.
Scaling is not a release: edit desired_count (the floor) and max_count (the ceiling, for scaling
by traffic) in cdk.json and `cdk deploy`; `status` shows both and the last scaling activity."""

# --- argument parsing -----------------------------------------------------------------------------

def _seconds(option: str, *, minimum: float, maximum: float | None = None, allow_zero: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        low_ok = value >= minimum if not allow_zero else value >= 0
        if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
            allowed = f"a finite number of seconds, at least {minimum:g}" if not allow_zero else "a finite number of seconds, 0 or more"
            if maximum is not None:
                allowed += f" and at most {maximum:g}"
            raise argparse.ArgumentTypeError(f"{option} {text!r} is not allowed: expected {allowed} (waits are bounded)")
        return value
    return parse


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--limit {text!r} is not allowed: expected a whole number of entries, 1 or more")
    return value


class UsageError(Exception):
    def __init__(self, message: str, prog: str, usage: str):
        super().__init__(message)
        self.message, self.prog, self.usage = message, prog, usage


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is raised (for `main` to print, and as JSON under --json), not exited."""

    def error(self, message: str):
        raise UsageError(message, self.prog, self.format_usage())


VERBS = ("versions", "stage", "activate", "rollback", "migrate", "status", "history", "lock", "unlock")


def _option(argv: list[str], name: str) -> str | None:
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--stage", required=True, help="stage name from cdk.json (e.g. staging)")
    common.add_argument("--config", type=Path, default=Path("cdk.json"), help="path to cdk.json (default: ./cdk.json)")
    common.add_argument("--region", help="AWS region (default: the stage's region in cdk.json, else your AWS config)")
    common.add_argument("--json", action="store_true", help="one JSON document on stdout; progress goes to stderr")

    reads = _Parser(add_help=False)
    reads.add_argument("--timeout", type=_seconds("--timeout", minimum=1), default=60.0,
                       help="seconds any one AWS call may take, retries included (default 60; a silent endpoint fails within it)")

    gate = _Parser(add_help=False)
    gate.add_argument("--fail-severity", choices=d.SEVERITIES, default=d.DEFAULT_FAIL_SEVERITY,
                      help="refuse an image with a scan finding at or above this severity (default: CRITICAL)")
    gate.add_argument("--poll-interval", type=_seconds("--poll-interval", minimum=0, maximum=300, allow_zero=True), default=5.0,
                      help="seconds between stack event polls (default 5)")
    gate.add_argument("--timeout", type=_seconds("--timeout", minimum=1, maximum=6 * 3600), default=1800.0,
                      help="seconds to wait for CloudFormation (default 1800); every AWS call's own timeouts fit inside it")
    gate.add_argument("--lease-seconds", type=_seconds("--lease-seconds", minimum=1, maximum=3600), default=60.0,
                      help="the lock's lease: renewed every third of it while this run lives; a waiting release takes "
                           "the lock over once it stays unchanged this long on the waiter's clock (default 60)")
    # Replaced by the lease (a crashed run now frees the stage within one lease); accepted so old scripts still run.
    gate.add_argument("--lock-minutes", type=int, default=None, help=argparse.SUPPRESS)

    switch = _Parser(add_help=False)
    switch.add_argument("--yes", action="store_true", help="do not ask for confirmation (required when stdin is not a terminal)")
    switch.add_argument("--verify-timeout", type=_seconds("--verify-timeout", minimum=0, maximum=6 * 3600, allow_zero=True), default=600.0,
                        help="seconds to wait for the new version to run healthy after the update (default 600)")

    parser = _Parser(
        prog="liftoff", description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("versions", parents=[common, reads], help="release images with digest, push time, size, scan; ACTIVE/STAGED/PREVIOUS")
    p = verbs.add_parser("stage", parents=[common, gate], help="update gate: pull VERSION onto the stage (StagedImageTag); nothing restarts")
    p.add_argument("version")
    p = verbs.add_parser("activate", parents=[common, gate, switch], help="activation gate: switch the running version to a staged VERSION (ImageTag)")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="activate a version that was not staged (recorded as forced)")
    p.add_argument("--no-watch", dest="watch", action="store_false",
                   help="ec2: return once the switch is verified instead of watching the release alarms through the "
                        "stage's bake window (an alarm in the window rolls back automatically, exit 7)")
    p.add_argument("--migrate", action="store_true", help="run the version's migrations first (`liftoff migrate`) when its expand steps are missing")
    p = verbs.add_parser("rollback", parents=[common, gate, switch],
                         help="undo the last release (again: one further back), or --to VERSION, through the activation path")
    p.add_argument("--to", dest="version", help="the version to switch to; it must have run on this stage or be staged, else --force")
    p.add_argument("--force", action="store_true", help="with --to: switch to a version that never ran here and is not staged (recorded as forced)")
    p.add_argument("--migrate", action="store_true", help="run the version's migrations first when its expand steps are missing")
    p = verbs.add_parser("migrate", parents=[common, gate],
                         help="run a version's migrations once as a one-off (ecs task / one ec2 host); contract steps only when the stage allows")
    p.add_argument("--version", help="whose migrations to run (default: the staged version)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required when stdin is not a terminal)")
    verbs.add_parser("status", parents=[common, reads], help="stack state, versions, desired count, target health, what runs, the schema, the lock, last releases")
    p = verbs.add_parser("history", parents=[common, reads], help="the release ledger: one line per attempt, in the ledger's order")
    p.add_argument("--limit", type=_at_least_one, default=50, help="newest entries to show, 1 or more (default 50)")
    verbs.add_parser("lock", parents=[common, reads], help="who holds the stage's lock, what that release is doing, since when")
    p = verbs.add_parser("unlock", parents=[common, reads], help="break the stage's lock after confirmation; recorded, closes the orphaned entry")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation (required when stdin is not a terminal)")
    return parser


# --- read verbs -----------------------------------------------------------------------------------

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
    schema = schema_flow.version_marks(ctx, [r["tag"] for r in rows])
    return {"repository": ctx.repository(), "active": active, "staged": staged, "previous": previous,
            "rollback_target": d.rollback_target(entries, active), "images": rows, "schema": schema}


def cmd_status(ctx: Context) -> dict:
    stack = ctx.service_stack()
    ledger = ctx.ledger()
    entries = ledger.entries(limit=200)
    active, staged = stack.parameters.get(d.IMAGE_TAG), stack.parameters.get(d.STAGED_IMAGE_TAG)
    running = running_now(ctx, stack)
    lock = ledger.read_lock()
    back = d.rollback_target(entries, active)
    fleet = scaling_aws.read(ctx.aws, running["compute"], stack.outputs)
    fleet_notes = scaling.notes(fleet, configured_floor=ctx.stage.desired_count, configured_ceiling=ctx.stage.ceiling,
                                configured_scales=ctx.stage.scales)
    result = {
        "stack": {"name": stack.name, "status": stack.status, "reason": stack.status_reason},
        "compute": running["compute"],
        "active": active, "staged": staged, "previous": d.previous_version(entries, active), "rollback_target": back,
        "desired_count": running["desired_count"], "configured_desired_count": ctx.stage.desired_count,
        "targets": running["targets"], "tasks": running.get("tasks", []), "hosts": running.get("hosts", []),
        "scaling": scaling.as_json(fleet, fleet_notes),
        "lock": asdict(lock) if lock else None,
        "releases": [asdict(e) for e in entries[:5]],
        "alarms_firing": ctx.aws.firing_alarms(stack.name),
    }
    ctx.say(f"stage {ctx.stage.name}: {stack.name} {stack.status}" + (f" ({stack.status_reason})" if stack.status_reason else ""))
    ctx.say(f"  active   {active or '-'}\n  staged   {staged or '-'}\n  previous {result['previous'] or '-'}")
    ctx.say(f"  rollback goes to {back or '- (the ledger has no earlier version: use --to)'}")
    truths = host_truths(ctx, stack, running)
    result["host_reports"] = [asdict(truth) for truth in truths] if truths is not None else None
    if truths is not None and ctx.stage.activation == "slots":
        # Only where a host reports it warm is a rollback a flip there; the ledger's bake window is no evidence.
        warm_at = reports.warm_hosts(truths, back)
        result["warm"] = {"version": back, "hosts": {h.instance: h.warm_until for h in warm_at}} if warm_at else None
        ctx.say(f"  warm     {back} on {len(warm_at)} of {len(truths)} host(s) ("
                + ", ".join(f"{h.instance} until {h.warm_until or '-'}" for h in warm_at)
                + "): a rollback to it now is a traffic flip on " + ("each host" if len(warm_at) == len(truths) else "those hosts")
                if warm_at else f"  warm     nothing reported warm by the hosts; a rollback to {back or '-'} starts it again")
    elif running["compute"] == "ec2" and ctx.stage.activation == "slots":
        warm = bake.warm_window(entries, active=active, bake_seconds=ctx.stage.bake_seconds, now=ctx.clock())
        result["warm"] = {"version": warm["version"], "until": ctx.iso(warm["until"])} if warm else None
        ctx.say(f"  warm     {warm['version']} until {ctx.iso(warm['until'])} ({warm['seconds_left']:.0f} s left of the "
                f"{ctx.stage.bake_seconds} s bake window): a rollback to it now is a traffic flip on each host"
                if warm else f"  warm     nothing (the previous version stops {ctx.stage.bake_seconds} s after a switch); "
                "a rollback starts it again")
    ctx.say(f"  desired count {running['desired_count']} ({running['compute']}; cdk.json desired_count {ctx.stage.desired_count} "
            "- change it there and `cdk deploy`)")
    for line in scaling.lines(fleet, fleet_notes):
        ctx.say(line)
    group = stack.outputs.get("AutoScalingGroupName")
    if running["compute"] == "ec2" and group:
        suspended = ctx.aws.suspended_processes(group)
        result["suspended_processes"] = suspended
        if suspended:
            # A suspension nobody is holding for a release stops scale-in and the replacement of unhealthy hosts.
            by = (f"release {lock.release_id} holds the lock and suspends {', '.join(scale_in.PROCESSES)} for its update"
                  if lock else "no release is running: a killed run (the next release's takeover resumes what it "
                  "suspended) or an operator left them")
            ctx.say(f"  suspended {', '.join(suspended)} on {group} ({by}); resume: "
                    f"{scale_in.resume_command(group, suspended)}")
        else:
            ctx.say(f"  suspended nothing on {group}")
    healthy, unhealthy = healthy_and_unhealthy(running["targets"])
    ctx.say(f"  targets  {healthy} healthy" + (f", not healthy: {', '.join(unhealthy)}" if unhealthy else ""))
    for task in running.get("tasks", []):
        ctx.say(f"  task {task['task']} {task['status']} {task['image']}")
    result["stopped_tasks"] = running.get("stopped_tasks", [])
    for task in result["stopped_tasks"]:
        ctx.say(f"  stopped  task {task['task']} {task['image']} at {task['stopped_at'] or '-'}: {task['reason'] or '-'}")
    if running["compute"] == "ecs":
        result["deployment"] = ecs_rollback.status(ctx, stack)
    by_instance = {truth.instance: truth for truth in truths or []}
    for host in running.get("hosts", []):
        ctx.say(f"  host {host['instance']} {host['state']} {host['health']} (activate association: "
                f"{running['association_parameter'] or '-'} {running['association_status'] or '-'})")
        if host["instance"] in by_instance:
            ctx.say(f"    reports {_host_truth(by_instance[host['instance']], ctx.clock())}")
            if by_instance[host["instance"]].canary:
                ctx.say(f"    canary {_canary(by_instance[host['instance']].canary)}")
    result["schema"] = schema_flow.status(ctx, stack, entries)
    alarms = result["alarms_firing"]
    ctx.say(f"  alarms   {len(alarms)} firing" if alarms else "  alarms   none firing")
    for alarm in alarms:
        ctx.say(f"    {alarm['name']} since {alarm['since']}: {alarm['description'] or alarm['reason']}")
    if lock:
        ctx.say(f"  lock     {lock.gate} {lock.version} by {lock.holder}: {lock.activity or '-'} (since {lock.activity_at or '-'}; "
                "`liftoff lock` for more)")
    if entries:
        ctx.say("last releases:")
        ctx.say(_history_table(entries[:5]))
    return result


def _host_truth(truth: reports.HostTruth, now: float) -> str:
    """One host's own report in one line: what it serves, has staged, keeps warm, its last gate, and how old that is."""
    if not truth.reported:
        return truth.error
    gate = truth.last_gate
    age = reports.age_seconds(truth.reported_at, now)
    parts = [
        f"active {truth.active or '-'} (slot {truth.active_slot or '-'}, {'ready' if truth.ready else 'NOT ready'})",
        f"staged {truth.staged or '-'}" + ("" if truth.staged_present or not truth.staged else " (image NOT present)"),
        f"warm {truth.warm} until {truth.warm_until or '-'}" if truth.warm else "warm nothing",
        (f"last gate {gate.get('gate')} {gate.get('version') or '-'} {gate.get('result') or '-'}"
         + (f": {gate['reason']}" if gate.get("reason") else "")) if gate.get("gate") else "last gate -",
        f"reported {age:.0f} s ago" if age is not None else f"reported at {truth.reported_at or '-'}",
    ]
    return "; ".join(parts) + (f" [stand-in: {truth.stand_in}]" if truth.stand_in else "")


def _canary(canary: Mapping[str, str]) -> str:
    """The host's last canary as its judge saw it: the verdict, why, and the numbers it judged on."""
    return (f"{canary.get('version') or '-'} {canary.get('verdict') or '-'}" + (f": {canary['reason']}" if canary.get("reason") else "")
            + f" (new slot {canary.get('requests') or '0'} requests, {canary.get('errors') or '0'} errors, "
              f"{canary.get('new_ms') or '-'} ms; old slot {canary.get('old_ms') or '-'} ms)")


def cmd_history(ctx: Context) -> dict:
    entries = ctx.ledger().entries(limit=ctx.args.limit)
    ctx.say(_history_table(entries) if entries else f"no releases recorded for {ctx.stage.name} yet")
    return {"entries": [asdict(e) for e in entries]}


def cmd_lock(ctx: Context) -> dict:
    lock = ctx.ledger().read_lock()
    if lock is None:
        ctx.say(f"the lock of {ctx.stage.name} is free")
        return {"lock": None}
    ctx.say(f"lock of {ctx.stage.name}:")
    for line in describe_lock(lock):
        ctx.say(f"  {line}")
    ctx.say(f"  to break it (its run is gone and you cannot wait {lock.lease_seconds:.0f} s): "
            f"liftoff unlock --stage {ctx.stage.name}")
    return {"lock": asdict(lock)}


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
        [[e.started_at, d.one_line(e.who), e.gate + (" (forced)" if e.forced else ""), f"{e.from_version or '-'} -> {e.to_version}",
          e.digest[:19], d.one_line(e.result + (f": {e.detail}" if e.detail and (e.result != d.RESULT_SUCCEEDED
                                                                                     or e.detail.startswith("automatic")
                                                                                     or e.gate == "migrate") else "")),
          f"{e.duration_seconds:.1f}s" if e.duration_seconds is not None else "-"] for e in entries],
    )


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows])


def _aws_error(error: Exception, ctx: Context | None) -> Abort:
    stage = ctx.stage.name if ctx else "STAGE"
    if isinstance(error, (NoCredentialsError, PartialCredentialsError)):
        return Abort(d.EXIT_AWS, "no AWS credentials found",
                     "set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) for the stage's account; `aws sts get-caller-identity` checks them")
    if isinstance(error, NoRegionError):
        return Abort(d.EXIT_AWS, "no AWS region configured", "pass --region, set AWS_DEFAULT_REGION (or region in your AWS profile), or pin the stage's region in cdk.json")
    if isinstance(error, (ReadTimeoutError, ConnectTimeoutError, EndpointConnectionError)):
        endpoint = error.kwargs.get("endpoint_url", "the AWS endpoint")
        what = {ReadTimeoutError: "did not answer within", ConnectTimeoutError: "did not accept a connection within"}
        kind = next((text for cls, text in what.items() if isinstance(error, cls)), "")
        limit = f" {ctx.aws.read_timeout:.1f} s (per call, {2} attempts)" if (kind and ctx) else ""
        message = f"{endpoint} {kind}{limit}" if kind else f"cannot connect to {endpoint}"
        return Abort(d.EXIT_AWS, message + "; nothing changed by this command",
                     "check the network and AWS_ENDPOINT_URL / --region (`liftoff status` retries the read)")
    if isinstance(error, StackNotFound):
        return Abort(d.EXIT_AWS, f"stack {error.name} does not exist in this account/region",
                     f"deploy the stage first (`make deploy STAGE={stage}`) or check AWS_PROFILE/--region")
    if isinstance(error, MissingOutput):
        return Abort(d.EXIT_AWS, f"stack {error.stack} has no output {error.output}",
                     "deploy the current version of the app (`make deploy`) so the stack exports it")
    if isinstance(error, ClientError):
        hint = d.refusal_hint(error.response.get("Error", {}), error.operation_name)
        if hint:
            return Abort(d.EXIT_AWS, client_error_text(error, caller=_caller_or_blank(ctx)), hint)
        return Abort(d.EXIT_AWS, f"AWS error: {client_error_text(error)}", "nothing changed by this error; check the message and run again")
    return Abort(d.EXIT_AWS, f"AWS error: {error}", "check connectivity and the AWS endpoint/region")


def _caller_or_blank(ctx: Context | None) -> str:
    """Who made the refused call, when AWS's message does not say (one more read; a failure leaves it unnamed)."""
    if ctx is None:
        return ""
    try:
        return ctx.aws.caller_arn()
    except Exception:  # noqa: BLE001 (naming the caller is a courtesy: the refusal is reported either way)
        return ""


def _emit(stream: TextIO, text: str) -> None:
    try:
        print(text, file=stream, flush=True)
    except (BrokenPipeError, ValueError):
        pass
    except OSError:
        pass


# --- entry point ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None, aws: Aws | None = None, clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
         environ: Mapping[str, str] | None = None) -> int:
    """Run one verb; return its exit code (see EXIT_CODES). Never raises, never prints a traceback."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except UsageError as error:
        _emit(stderr, f"{error.usage}{error.prog}: error: {error.message}")
        if "--json" in argv:  # a pipeline asked for JSON: it gets a JSON document even for a usage error
            verb = next((word for word in argv if word in VERBS), None)
            _emit(stdout, json.dumps({"ok": False, "exit_code": d.EXIT_USAGE, "command": verb, "stage": _option(argv, "--stage"),
                                      "error": {"message": error.message, "hint": f"`{error.prog} --help` lists what is allowed"}},
                                     indent=2))
        return d.EXIT_USAGE
    except SystemExit as exit_:  # --help printed its text
        return int(exit_.code or 0)
    verb = args.verb
    ctx: Context | None = None
    result: dict[str, Any] = {}
    try:
        try:
            try:
                stage = load_config(args.config).stage(args.stage)
            except ConfigError as error:
                raise Abort(d.EXIT_USAGE, str(error), f"stages are configured in {args.config}") from None
            try:
                adapter = aws or runtimes.adapter(stage, args.region or stage.region, environ)
            except runtimes.RuntimeRefused as refused:
                raise Abort(d.EXIT_USAGE, refused.message, refused.hint) from None
            adapter.bound_waits(args.timeout)
            ctx = Context(args, stage=stage, aws=adapter, stdin=stdin, stdout=stdout, stderr=stderr,
                          clock=clock, monotonic=monotonic, sleep=sleep)
            commands = {"versions": cmd_versions, "status": cmd_status, "history": cmd_history, "lock": cmd_lock, "unlock": run_unlock,
                        "migrate": schema_flow.run_migrate}
            fast = ecs_rollback.fast_rollback(ctx) if verb == "rollback" else None
            result = commands[verb](ctx) if verb in commands else (fast or run_release(ctx, verb))
        except (BotoCoreError, ClientError, StackNotFound, MissingOutput) as error:
            raise _aws_error(error, ctx) from None
        except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM/SIGHUP via run(): before any switch began
            signum = signal_of(error)
            raise Abort(d.EXIT_SIGNAL_BASE + signum, f"interrupted by {signal.Signals(signum).name} before anything changed") from None
        except Abort:
            raise
        except Exception as error:  # a bug: say so plainly, still no traceback
            raise Abort(d.EXIT_INTERNAL, f"internal error: {type(error).__name__}: {error}",
                        "nothing further was changed by this error; `liftoff status` and `liftoff history` show the state; please report it") from None
    except Abort as abort:
        _emit(stderr, f"liftoff {verb}: {abort.message}" + (f"\n  -> {abort.hint}" if abort.hint else ""))
        if args.json:
            payload = {"ok": abort.exit_code == d.EXIT_OK, "exit_code": abort.exit_code, "command": verb, "stage": args.stage,
                       "error": {"message": abort.message, "hint": abort.hint}, **abort.extra}
            _emit(stdout, json.dumps(payload, indent=2, default=str))
        return abort.exit_code
    exit_code = result.pop("exit_code", d.EXIT_OK)
    if args.json:
        _emit(stdout, json.dumps({"ok": exit_code == d.EXIT_OK, "exit_code": exit_code, "command": verb, "stage": args.stage, **result},
                                 indent=2, default=str))
    return exit_code


def run() -> None:
    """Console-script entry point: SIGTERM and SIGHUP end a run the way Ctrl-C does (truth recorded, lock freed)."""
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, raise_on_signal)
    code = main()
    # A closed stdout (`liftoff status | head -2`, or `>&-`, where Python sets sys.stdout to None) is a quiet
    # exit with the verb's own code: nothing left for Python to flush at exit.
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    except OSError:
        pass
    sys.exit(code)
