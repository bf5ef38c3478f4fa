"""Rollout benchmark: what clients see while `liftoff` switches versions on real hosts (`make bench-rollout`).

Each run starts from nothing: a local AWS emulator, the production stage's stacks deployed from the
synthesized assembly, the real release images in the ECR stand-in, the hosts booted as boxes from the
launch template's user data, the load balancer stand-in (HAProxy, configured from the synthesized
target group) in front of them. Steady load (local/load.py: open loop, a new connection per request,
GET /version through the load balancer) runs while `liftoff activate` / `liftoff rollback` (in-process,
`--yes`) switch the version; the State Manager stand-in runs the gates on the hosts, which drain and
re-register themselves. Everything is torn down after each run.

Scenarios (one table row per scenario and action, median of --runs with min-max); the shipped
production stage switches with two slots per host (activation: slots):
  ec2, 1 host / 2 hosts:  activate 1.0.0 -> 1.1.0 (the new version starts beside the old);
                          the bake window ends (each host's retire timer, run at once); rollback
                          (an ordinary start of 1.0.0); activate 1.1.0 again (not measured); then
                          rollback-warm, inside the window: a flip back to the warm 1.0.0
  ec2, 1 host, activation: restart: activate, rollback with the in-place restart (a variant synth)
  bad release, 2 hosts: activate an image whose service never starts (readiness never passes),
                        one that passes its health checks but answers 5xx, and one that is only 300 ms slower
                        (bench/faults/): the host canary holds the last two back on the first host (exit 7);
                        harm_s is the time from the first answer the bad version gave to its last
  ec2, scale 1 -> 3 -> 1: the group (floor 1, ceiling 3, as max_count 3 deploys it) is told to run 3 hosts,
                        then 1, as its target-tracking policy would (the CloudWatch trigger is AWS's; see
                        docs/scaling.md): new hosts boot from the user data into the active version, State
                        Manager's gates reach them (the staged version is pulled), and they get requests once
                        healthy; leaving hosts are deregistered and drained for the delay before they stop

  ecs (the staging stage on the ECS stand-in's real tasks, local/ecs_service.py; 2 tasks):
    blue/green:  activate 1.0.0 -> 1.1.0 (new tasks in the other target group, the listener rule's weights move,
                 a one-minute bake); rollback after the bake (a new deployment of 1.0.0); activate 1.1.0 again
                 up to its bake (not measured); rollback-warm inside the bake: StopServiceDeployment, traffic back
                 to the tasks that still run
    bad release: activate the release that answers 5xx, with the shipped five-minute bake: the release alarm
                 (the alarm stand-in) rolls ECS's deployment back; failed answers and how long they lasted
    rolling:     activate 1.0.0 -> 1.1.0 with deployment_strategy rolling (minimum 100 %, maximum 200 %)
  On ecs, "hosts pulling / starting" counts the tasks started until every answer came from the version
  (Fargate pulls the image for each task it starts); tasks started after that are said below the table.

Columns: requests sent, failed (non-2xx or connection error), longest stretch without a successful
response, seconds from the command to every response coming from the new version (for scale-out: to
the last new host healthy in the load balancer, i.e. serving; for scale-in: to the last leaving host
stopped, after its drain), p50/p99 latency during the command, the versions that answered, the command's
exit code (scaling: 0 when every new host serves the active version with the staged one pulled), and how
many hosts pulled an image or started a container for it (0 and 0 is a warm flip).

    python -m bench.rollout [--runs 3] [--rate 50] [--scenario NAME ...] [--json]

Not a test: figures depend on the machine. Loopback only; every run stops by itself.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from config import load_config
from local import aws, deploy as flow, emulator as emulators, images
from local.ecs_stage import TasksRuntime
from local.hosts import HostsRuntime
from local.load import LoadRun
from release import cli as release_cli

REPO = Path(__file__).resolve().parents[1]
FAULTS = Path(__file__).parent / "faults"
FIRST, TARGET = "1.0.0", "1.1.0"
NEVER_READY, ANSWERS_5XX, SLOWER = "1.9.9-neverready", "1.9.8-answers5xx", "1.9.7-slower"
# Releases that pass their health checks and harm their users: each is held back by the host canary.
HARMFUL = {ANSWERS_5XX: FAULTS / "sitecustomize.py", SLOWER: FAULTS / "slower.py"}
SETTLE_SECONDS = 3.0  # steady load before and after each command
LOAD_BOUND_SECONDS = 400.0  # the longest a load run may last; it is stopped when the command is done


@dataclass(frozen=True)
class Scenario:
    name: str
    hosts: int  # hosts (ec2) or tasks (ecs)
    # (action, verb, version): action names the row ("" = a step that is run but not measured);
    # verb is a liftoff verb, window-ends (each host retires its warm slot, as its timer would), or, on ecs,
    # activate-to-bake (activate without waiting for its verification, until ECS's deployment is in its bake).
    actions: tuple[tuple[str, str, str], ...]
    settings: tuple[tuple[str, object], ...] = ()  # the stage's settings in a variant synth (None removes a key)
    mode: str = "ec2"
    stage: str = "production"


SLOT_WALK = (("activate", "activate", TARGET), ("", "window-ends", ""), ("rollback", "rollback", FIRST),
             ("", "activate", TARGET), ("rollback-warm", "rollback", FIRST))
SCALE_FLOOR, SCALE_CEILING = 1, 3
SCENARIOS = {
    "ec2-1-host": Scenario("ec2, 1 host", 1, SLOT_WALK),
    "ec2-2-hosts": Scenario("ec2, 2 hosts", 2, SLOT_WALK),
    "ec2-1-host-restart": Scenario("ec2, 1 host, activation: restart", 1,
                                   (("activate", "activate", TARGET), ("rollback", "rollback", FIRST)),
                                   settings=(("activation", "restart"),)),
    # Between the two, the rollback an operator runs after an unverified release (exit 6), where the stack
    # took the never-ready version (one host at a time; in waves the canary host stops it before the stack moves).
    "bad-release": Scenario("bad release, 2 hosts", 2, (("bad-release", "activate", NEVER_READY), ("", "rollback", FIRST),
                                                        ("bad-release", "activate", ANSWERS_5XX),
                                                        ("slow-release", "activate", SLOWER))),
    # The version column holds the host count the group is told to run.
    "ec2-scale": Scenario("ec2, scale 1 -> 3 -> 1 hosts", SCALE_FLOOR, (("scale-out", "scale", str(SCALE_CEILING)),
                                                                         ("scale-in", "scale", str(SCALE_FLOOR)))),
    # The staging stage (ecs) on the ECS stand-in's real tasks, with a one-minute bake (ECS's shortest) so a run
    # takes minutes: activate and rollback are each verified once the bake has ended; rollback-warm is inside it.
    "ecs-blue-green": Scenario("ecs blue/green, 2 tasks", 2, (("activate", "activate", TARGET), ("rollback", "rollback", FIRST),
                                                            ("", "activate-to-bake", TARGET), ("rollback-warm", "rollback", FIRST)),
                               settings=(("desired_count", 2), ("bake_seconds", 60)), mode="ecs", stage="staging"),
    # The shipped five-minute bake: the release alarm (two one-minute periods) must fire inside it.
    "ecs-bad-release": Scenario("ecs blue/green bad release, 2 tasks", 2, (("bad-release", "activate", ANSWERS_5XX),),
                                settings=(("desired_count", 2),), mode="ecs", stage="staging"),
    "ecs-rolling": Scenario("ecs rolling, 2 tasks", 2, (("activate", "activate", TARGET),),
                            settings=(("desired_count", 2), ("deployment_strategy", "rolling"), ("bake_seconds", None)),
                            mode="ecs", stage="staging"),
}


def fault_images(daemon, built: str) -> dict[str, str]:
    """The bad releases: one whose service exits at every start, one that answers 5xx and one that is only
    slower (bench/faults/)."""
    return {NEVER_READY: images.release_image(daemon, built, NEVER_READY, never_starts=True),
            **{version: harmful_image(daemon, built, version) for version in HARMFUL}}


def harmful_image(daemon, built: str, version: str) -> str:
    """The release image `version` of HARMFUL: the service image with its fault loaded at interpreter start."""
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "sitecustomize.py").write_text(HARMFUL[version].read_text())
        (Path(context) / "Dockerfile").write_text(
            f"FROM {built}\nLABEL org.opencontainers.image.version={version}\nCOPY sitecustomize.py /srv/service/sitecustomize.py\n")
        daemon.run("build", "--quiet", "--tag", f"{images.RELEASE_IMAGE}:{version}", context, timeout=300)
    return f"{images.RELEASE_IMAGE}:{version}"


def liftoff(deployed: flow.LocalStage, runtime: HostsRuntime, *argv: str, config: Path = flow.CONFIG_FILE) -> tuple[int, str]:
    out = io.StringIO()
    switch = ["--yes", "--verify-timeout", "240"] if argv[0] in ("activate", "rollback") else []
    code = release_cli.main([*argv, "--config", str(config), "--stage", deployed.stage.name, "--poll-interval", "1",
                             *switch],
                            stdin=io.StringIO(""), stdout=out, stderr=out, aws=runtime)
    return code, out.getvalue()


def command(verb: str, version: str) -> tuple[str, ...]:
    if verb == "rollback":
        return ("rollback",)
    forced = ("--force",) if version not in (FIRST, TARGET) else ()
    # The bad releases are watched through the bake window (their rollback is the point); the walk's
    # activations return once verified, and the rollback that follows is inside the window.
    watch = () if version in HARMFUL else ("--no-watch",)
    return (verb, version, *forced, *watch)


def host_work(runs) -> tuple[int, int]:
    """How many hosts pulled an image, and how many started a container, in these gate runs."""
    return (sum(1 for run in runs if "pulling " in run.output),
            sum(1 for run in runs if "starting " in run.output or "restarting " in run.output))


def under_load(url: str, rate: float, deployed, runtime, verb: str, version: str, config: Path) -> tuple[int, str, LoadRun, float]:
    """One liftoff command with steady load before, during and after it: (exit, output, the load run, wall clock at the command)."""
    with LoadRun(url, rate=rate, duration=LOAD_BOUND_SECONDS) as run:
        time.sleep(SETTLE_SECONDS)
        run.mark("command")
        command_at = time.time()
        code, output = liftoff(deployed, runtime, *command(verb, version), config=config)
        run.mark("done")
        time.sleep(SETTLE_SECONDS)
        run.stop()
    return code, output, run, command_at


def measure(url: str, rate: float, deployed, runtime, scenario: Scenario, action: str, verb: str, version: str,
            config: Path) -> dict:
    gate_runs_before, command_runs_before = len(runtime.state_manager.runs), len(runtime.command_runs)
    code, output, run, _ = under_load(url, rate, deployed, runtime, verb, version, config)
    whole = run.summary(version=version, marker="command")
    during = run.summary(since="command", until="done")
    # The fleet's canary host runs its gate alone (Run Command) before State Manager runs the rest.
    gate_runs = [r for r in runtime.command_runs[command_runs_before:] + runtime.state_manager.runs[gate_runs_before:]
                 if r.gate == "activate"]
    pulls, starts = host_work(gate_runs)
    extra = {}
    if version in HARMFUL:
        # Watched through the bake window: how long until every answer came from the old version again,
        # and the alarm rule that decided it (the alarm stand-in evaluates the synthesized one).
        command_at = run.marks["command"]
        failures = [r.ended for r in run.records if r.failed and r.sent is not None and r.sent >= command_at and r.ended]
        alarms = runtime.hosts.alarms
        # Failed answers are the 5xx release's (or the switch's); the last one is when the rollback took effect.
        # The harm: from the first answer the bad version gave (a 5xx, or its own slower answer) to its last.
        harmed = [r.ended for r in run.records if r.ended and r.sent is not None and r.sent >= command_at
                  and (r.version == version or (version == ANSWERS_5XX and r.failed))]
        extra = {"rolled_back_after_s": round(max(failures) - command_at, 2) if code == 7 and failures else None,
                 "errors_for_s": round(max(failures) - min(failures), 2) if failures else None,
                 "harm_s": round(max(harmed) - min(harmed), 2) if harmed else 0.0, "harmed": len(harmed),
                 # The fleet's canary is its first host: the others must never have started the bad version.
                 "hosts_ran_bad": len({r.instance_id for r in gate_runs if r.tag == version and "starting " in r.output}),
                 "canary": next((line.strip() for line in output.splitlines() if line.strip().startswith("CANARY")), ""),
                 "alarms": [f"{rule.name}: {rule.kind} {rule.comparison} {rule.threshold:g}, {rule.datapoints_to_alarm} of "
                            f"{rule.evaluation_periods} x {rule.period} s" for rule in (alarms.rules if alarms else [])]}
    return {**extra, "scenario": scenario.name, "mode": "ec2", "hosts": scenario.hosts, "action": action, "version": version,
            "sent": whole.sent, "failed": whole.failed, "longest_gap_s": whole.longest_gap_s, "switch_s": whole.switch_s,
            "p50_ms": during.p50_ms, "p99_ms": during.p99_ms, "versions": whole.versions, "exit": code,
            "pulls": pulls, "starts": starts,
            "outcomes": whole.outcomes, "tool": output.strip().splitlines()[-1] if output.strip() else ""}


def measure_ecs(url: str, rate: float, deployed, runtime, scenario: Scenario, action: str, verb: str, version: str,
                config: Path) -> dict:
    """One liftoff command on the ECS stand-in's tasks under steady load; tasks started are counted from the stand-in."""
    stand_in = runtime.stage_tasks.ecs
    service = deployed.outputs(deployed.stacks.service)["EcsServiceName"]
    known = {task["taskArn"] for task in stand_in.tasks(service)}
    code, output, run, command_at = under_load(url, rate, deployed, runtime, verb, version, config)
    whole = run.summary(version=version, marker="command")
    during = run.summary(since="command", until="done")
    switched_at = command_at + whole.switch_s if whole.switch_s is not None else None
    started = [task for task in stand_in.tasks(service) if task["taskArn"] not in known]
    # Tasks started before every answer came from the version (what the switch itself needed), and after it.
    before = [t for t in started if switched_at is None or _epoch(t["createdAt"]) <= switched_at]
    extra = {}
    if version in HARMFUL:
        start = run.marks["command"]
        failures = [r.ended for r in run.records if r.failed and r.sent is not None and r.sent >= start and r.ended]
        harmed = [r.ended for r in run.records if r.ended and r.sent is not None and r.sent >= start
                  and (r.version == version or (version == ANSWERS_5XX and r.failed))]
        deployment = next((d for d in stand_in.deployments(service) if d.target.endswith(f":{_revision_of(stand_in, service, version)}")), None)
        extra = {"rolled_back_after_s": round(max(failures) - start, 2) if failures else None,
                 "errors_for_s": round(max(failures) - min(failures), 2) if failures else None,
                 "harm_s": round(max(harmed) - min(harmed), 2) if harmed else 0.0, "harmed": len(harmed),
                 "tasks_ran_bad": sum(1 for t in started if t["revision"].endswith(f":{_revision_of(stand_in, service, version)}")),
                 "deployment": f"{deployment.status}: {deployment.reason}" if deployment else "",
                 "alarms": [f"{rule.name}: {rule.kind} {rule.comparison} {rule.threshold:g}, {rule.datapoints_to_alarm} of "
                            f"{rule.evaluation_periods} x {rule.period} s"
                            for rule in (runtime.stage_tasks.alarms.rules if runtime.stage_tasks.alarms else [])]}
    return {**extra, "scenario": scenario.name, "mode": "ecs", "hosts": scenario.hosts, "action": action, "version": version,
            "sent": whole.sent, "failed": whole.failed, "longest_gap_s": whole.longest_gap_s, "switch_s": whole.switch_s,
            "p50_ms": during.p50_ms, "p99_ms": during.p99_ms, "versions": whole.versions, "exit": code,
            "pulls": len(before), "starts": len(before), "starts_after_switch": len(started) - len(before),
            "outcomes": whole.outcomes, "tool": output.strip().splitlines()[-1] if output.strip() else ""}


def _epoch(stamp: str | None) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp() if stamp else 0.0


def _revision_of(stand_in, service: str, version: str) -> str:
    """The newest task definition revision whose app image is `version` ('' when none is)."""
    for deployment in stand_in.deployments(service):
        if any(container.get("image", "").endswith(f":{version}") for container in stand_in.definition(deployment.target)["containerDefinitions"]):
            return deployment.target.rsplit(":", 1)[-1]
    return ""


def to_bake(deployed, runtime, version: str, config: Path, log) -> None:
    """activate without waiting for verification (which needs the bake over), then wait until ECS's deployment bakes."""
    out = io.StringIO()
    code = release_cli.main(["activate", version, "--config", str(config), "--stage", deployed.stage.name, "--poll-interval", "1",
                             "--yes", "--no-watch", "--verify-timeout", "0"], stdin=io.StringIO(""), stdout=out, stderr=out, aws=runtime)
    if code not in (0, 6):
        raise SystemExit(f"liftoff activate {version} exited {code}:\n{out.getvalue()}")
    service = deployed.outputs(deployed.stacks.service)["EcsServiceName"]
    deadline = time.monotonic() + 300
    while runtime.stage_tasks.ecs.deployments(service)[0].stage != "BAKE_TIME":
        if time.monotonic() > deadline:
            raise SystemExit(f"the deployment of {version} did not reach its bake within 300 s")
        time.sleep(0.5)
    print(f"  {version}: ECS's deployment is in its bake", file=log, flush=True)


@contextlib.contextmanager
def deployed_stage(scenario: Scenario, assembly: Path, log):
    """The scenario's stage deployed into a fresh emulator (stopped at the end): (deployed stage, its cdk.json, state dir)."""
    config = assembly / "cdk.json" if (assembly / "cdk.json").exists() else flow.CONFIG_FILE
    stage = load_config(config).stage(scenario.stage)
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch)
        emulator = emulators.start(state)
        try:
            with contextlib.redirect_stdout(log):
                yield flow.deploy_stage(stage, emulator, source=assembly, target=state / "adapted", image_tag=FIRST), config, state
        finally:
            emulators.stop(emulator, state)


def stage_target(deployed, runtime, config: Path) -> None:
    code, output = liftoff(deployed, runtime, "stage", TARGET, config=config)
    if code != 0:
        raise SystemExit(f"liftoff stage {TARGET} exited {code}:\n{output}")


def one_run_ecs(scenario: Scenario, assembly: Path, rate: float, log) -> list[dict]:
    rows = []
    with deployed_stage(scenario, assembly, log) as (deployed, config, state):
        extra = fault_images if scenario.name.startswith("ecs blue/green bad") else None
        with flow.real_tasks(deployed, [FIRST, TARGET], state_dir=state, extra_images=extra) as tasks:
            if tasks is None:
                raise SystemExit("bench/rollout.py needs Docker (see README's test prerequisites)")
            runtime = TasksRuntime(tasks=tasks, service_stack=deployed.stacks.service, registry_stack=deployed.stacks.registry,
                                   region=aws.FAKE_ENVIRONMENT["AWS_REGION"], session=deployed.clients)
            stage_target(deployed, runtime, config)
            for action, verb, version in scenario.actions:
                if verb == "activate-to-bake":
                    to_bake(deployed, runtime, version, config, log)
                else:
                    rows.append(measure_ecs(f"{tasks.balancer.url}/version", rate, deployed, runtime, scenario,
                                            action, verb, version, config))
    return rows


def measure_scale(url: str, rate: float, hosts, state_manager, scenario: Scenario, action: str, count: int) -> dict:
    """One capacity change under steady load (local.hosts.StageHosts.scale_to, the Auto Scaling group stand-in)."""
    with LoadRun(url, rate=rate, duration=LOAD_BOUND_SECONDS) as run:
        time.sleep(SETTLE_SECONDS)
        run.mark("command")
        event = hosts.scale_to(count, state_manager=state_manager)
        run.mark("done")
        time.sleep(SETTLE_SECONDS)
        run.stop()
    whole = run.summary(marker="command")
    during = run.summary(since="command", until="done")
    active = state_manager.status.get("activate", {}).get("tag", "")
    staged = state_manager.status.get("stage", {}).get("tag", "")
    joined = {run_.instance_id for run_ in event.gate_runs}
    # What a new host must be: serving the active version, with the staged one already pulled.
    checks = {box.instance_id: {"serves": hosts.serving_version(box),
                                "staged_pulled": staged_image_present(hosts, box, staged)}
              for box in hosts.hosts if box.instance_id in event.added}
    good = (all(c["serves"] == active and c["staged_pulled"] for c in checks.values())
            and all(r.succeeded for r in event.gate_runs) and joined == set(event.added))
    seconds = event.added or event.removed
    # State Manager's gates on the new hosts: the stage gate pulls the staged version; the activate gate
    # finds the active version already serving (the boot started it) and starts nothing.
    pulls, starts = host_work(event.gate_runs)
    return {"scenario": scenario.name, "mode": "ec2", "hosts": f"{event.before}->{event.after}", "action": action,
            "version": active, "sent": whole.sent, "failed": whole.failed, "longest_gap_s": whole.longest_gap_s,
            "switch_s": round(max(seconds.values()), 2) if seconds else None,
            "p50_ms": during.p50_ms, "p99_ms": during.p99_ms, "versions": whole.versions, "exit": 0 if good else 1,
            "outcomes": whole.outcomes, "new_hosts": checks, "seconds_per_host": seconds, "pulls": pulls, "starts": starts,
            "tool": f"{action}: {event.before} -> {event.after} hosts"}


def staged_image_present(hosts, box, tag: str) -> bool:
    if not tag:
        return False
    reference = f"{hosts.host_environment()['REPOSITORY_URI']}:{tag}"
    from local import boxes

    return boxes.run_on_box(hosts.daemon, box, "docker", "image", "inspect", reference).returncode == 0


def scale_rows(url: str, rate: float, hosts, state_manager, scenario: Scenario) -> list[dict]:
    # As a stage with desired_count 1 and max_count 3 deploys its group: the floor and the ceiling.
    hosts.set_limits(floor=SCALE_FLOOR, ceiling=SCALE_CEILING)
    return [measure_scale(url, rate, hosts, state_manager, scenario, action, int(count))
            for action, _, count in scenario.actions]


def one_run(scenario: Scenario, assembly: Path, rate: float, log) -> list[dict]:
    if scenario.mode == "ecs":
        return one_run_ecs(scenario, assembly, rate, log)
    rows = []
    with deployed_stage(scenario, assembly, log) as (deployed, config, _):
        extra = fault_images if scenario.name.startswith("bad release") else None
        with flow.real_hosts(deployed, [FIRST, TARGET], host_count=scenario.hosts, extra_images=extra) as running:
            if running is None:
                raise SystemExit("bench/rollout.py needs Docker (see README's test prerequisites)")
            hosts, state_manager = running
            runtime = HostsRuntime(hosts=hosts, state_manager=state_manager, service_stack=deployed.stacks.service,
                                   registry_stack=deployed.stacks.registry, region=aws.FAKE_ENVIRONMENT["AWS_REGION"],
                                   session=deployed.clients)
            stage_target(deployed, runtime, config)
            if scenario.actions[0][1] == "scale":
                return scale_rows(f"{hosts.balancer.url}/version", rate, hosts, state_manager, scenario)
            for action, verb, version in scenario.actions:
                if verb == "window-ends":
                    for line in hosts.end_bake_window():
                        print(f"  bake window ends: {line}", file=log, flush=True)
                elif not action and verb == "rollback" and \
                        runtime.stack(deployed.stacks.service).parameters.get("ImageTag") == version:
                    # The fleet's canary host held the bad release back before the stack moved.
                    print(f"  nothing to roll back: the stack still names {version}", file=log, flush=True)
                elif not action:
                    code, output = liftoff(deployed, runtime, *command(verb, version), config=config)
                    if code != 0:
                        raise SystemExit(f"liftoff {verb} {version} exited {code}:\n{output}")
                else:
                    rows.append(measure(f"{hosts.balancer.url}/version", rate, deployed, runtime, scenario,
                                        action, verb, version, config))
    return rows


def combine(runs: list[list[dict]]) -> list[dict]:
    """Median (with min-max) of each figure over the runs, per row."""
    combined = []
    for rows in zip(*runs):
        first = rows[0]
        row = {key: first[key] for key in ("scenario", "mode", "hosts", "action", "version")}
        row["runs"] = len(rows)
        for key in ("sent", "failed", "longest_gap_s", "switch_s", "p50_ms", "p99_ms", "pulls", "starts", "starts_after_switch",
                    "rolled_back_after_s", "errors_for_s", "harm_s", "harmed", "hosts_ran_bad", "tasks_ran_bad"):
            if key not in first:
                continue
            values = [r[key] for r in rows if r[key] is not None]
            row[key] = statistics.median(values) if values else None
            row[f"{key}_range"] = [min(values), max(values)] if values else None
        versions: dict[str, int] = {}
        for r in rows:
            for version in r["versions"]:
                versions[version] = versions.get(version, 0) + 1
        row["versions"] = sorted(versions)
        row["exits"] = [r["exit"] for r in rows]
        row["tool"] = [r["tool"] for r in rows]
        if "alarms" in first:
            row["alarms"] = first["alarms"]
            row["canary"] = [r.get("canary", "") for r in rows]
        if "deployment" in first:
            row["deployment"] = [r.get("deployment", "") for r in rows]
        combined.append(row)
    return combined


def table(rows: list[dict]) -> str:
    def figure(row, key, digits=2):
        value, spread = row[key], row[f"{key}_range"]
        if value is None:
            return "-"
        text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
        return text if spread[0] == spread[1] else f"{text} ({spread[0]:.{digits}f}-{spread[1]:.{digits}f})" if isinstance(value, float) else f"{text} ({spread[0]}-{spread[1]})"

    header = ("| scenario | action | version | runs | sent | failed | longest gap s | switch s | p50 ms | p99 ms | "
              "versions answering | liftoff exit | hosts pulling / starting |")
    lines = [header, "|" + "---|" * 13]
    for row in rows:
        lines.append(f"| {row['scenario']} | {row['action']} | {row['version']} | {row['runs']} | {figure(row, 'sent', 0)} | "
                     f"{figure(row, 'failed', 0)} | {figure(row, 'longest_gap_s')} | {figure(row, 'switch_s')} | "
                     f"{figure(row, 'p50_ms', 1)} | {figure(row, 'p99_ms', 1)} | {', '.join(row['versions'])} | "
                     f"{','.join(str(code) for code in row['exits'])} | {figure(row, 'pulls', 0)} / {figure(row, 'starts', 0)} |")
    for row in rows:
        if row.get("mode") == "ecs" and row.get("starts_after_switch"):
            lines.append(f"\n{row['scenario']}, {row['action']}: tasks started after every answer came from {row['version']}: "
                         f"{figure(row, 'starts_after_switch', 0)} (the ordinary rollback that sets ImageTag back after the flip, "
                         "which the emulator's already finished stack update needs; docs/local-emulator.md)")
        if row.get("mode") == "ecs" and "rolled_back_after_s" in row:
            lines.append(f"\n{row['scenario']}, {row['version']}: errors for {figure(row, 'errors_for_s')} s "
                         f"({figure(row, 'failed', 0)} failed answers; harm, its first answer to its last, {figure(row, 'harm_s')} s); "
                         f"tasks that ran it: {figure(row, 'tasks_ran_bad', 0)}; ECS's deployment: {'; '.join(row.get('deployment') or [])}; "
                         f"alarms: {'; '.join(row.get('alarms') or ['none'])}")
            continue
        if "rolled_back_after_s" in row:
            lines.append(f"\n{row['scenario']}, {row['version']}: rolled back automatically "
                         f"{figure(row, 'rolled_back_after_s')} s after the command (to its last failed answer); errors "
                         f"for {figure(row, 'errors_for_s')} s; harm (its first answer to its last) {figure(row, 'harm_s')} s "
                         f"over {figure(row, 'harmed', 0)} answers; hosts that ran it: {figure(row, 'hosts_ran_bad', 0)}; "
                         f"{'; '.join(filter(None, row.get('canary') or [])) or 'no canary verdict'}; "
                         f"alarms: {'; '.join(row.get('alarms') or ['none'])}")
    return "\n".join(lines)


def _exit_on_signal(signum, _frame) -> None:
    # SIGTERM/SIGHUP unwind like Ctrl-C: every run's `finally` removes its hosts, load balancer and emulator.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    parser = argparse.ArgumentParser(prog="python -m bench.rollout", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second through the load balancer (default 50)")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    parser.add_argument("--log", type=Path, default=REPO / ".local" / "bench-rollout.log", help="where the setup output goes")
    parser.add_argument("--runs-file", type=Path, default=REPO / ".local" / "bench-rollout-runs.jsonl",
                        help="each run's rows, appended as it ends (kept if a later run fails)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    if not 1 <= args.rate <= 500:
        parser.error(f"--rate must be between 1 and 500 requests per second, got {args.rate}")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with open(args.log, "w") as log, tempfile.TemporaryDirectory() as variants:
        with contextlib.redirect_stdout(log):
            shipped = flow.synthesize()
        rows = []
        for key in args.scenario or list(SCENARIOS):
            scenario = SCENARIOS[key]
            assembly = shipped
            if scenario.settings:
                assembly = flow.synthesize_variant({scenario.stage: dict(scenario.settings)}, Path(variants) / key)
            runs = []
            for number in range(1, args.runs + 1):
                print(f"bench/rollout.py: {scenario.name}, run {number}/{args.runs} ...", file=sys.stderr, flush=True)
                runs.append(one_run(scenario, assembly, args.rate, log))
                with open(args.runs_file, "a") as kept:
                    kept.write(json.dumps({"scenario": key, "run": number, "rows": runs[-1]}) + "\n")
            rows.extend(combine(runs))
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
