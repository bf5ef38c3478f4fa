"""`make deploy` against the local emulator: the real CDK CLI deploys the real stacks, then the release tool
walks stage -> activate -> rollback on them and prints its ledger.

Each step prints what it does and how long it took. The release tool (`release.cli.main`) runs
in-process with `local.runtime.EmulatedRuntime`, the emulator's stand-in for what really runs.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from config import StageConfig
from local import aws, boxes, docker, images, moto_iam
from local.adapter import adapt_assembly, alarms_to_create, secrets_to_create
from local.assembly import StageStacks, read_templates
from local.ecs_stage import StageTasks, TasksRuntime
from local.emulator import Emulator
from local.hosts import WOKEN_FOLLOW_INTERVAL_SECONDS, HostsRuntime, StageHosts, StateManagerStandIn
from local.load import PATIENT_CLIENT_SECONDS, LoadRun
from local.principals import operator_session
from local.runtime import STAND_IN_NOTE, EmulatedRuntime
from release import cli as release_cli

REPO = Path(__file__).resolve().parents[1]
SYNTH_DIR = REPO / "cdk.out"
ADAPTED_DIR = REPO / "cdk.local.out"
STATE_DIR = REPO / ".local"
CONFIG_FILE = REPO / "cdk.json"
CDK_CLI = REPO / "node_modules" / ".bin" / "cdk"
API_DIR = REPO / "service" / "liftoff_service" / "api"
VERSION_FILE = REPO / "service" / "VERSION"

EMULATOR_NOTE = (
    "This was a local AWS emulator (moto), not AWS. It records what CloudFormation would create and "
    "answers the AWS APIs, but no container runs, no load balancer serves traffic, no health check or "
    "rollout wave happens, and no host executes an SSM document: what `liftoff` saw running was the "
    "emulator's stand-in (local/runtime.py) repeating the stack's record. `make deploy TARGET=aws STAGE=...` "
    "deploys the same stacks to a real account."
)


HOSTS_NOTE = (
    "The control plane was a local AWS emulator (moto); the hosts were real: systemd boxes that ran the launch "
    "template's user data, pulled the real image from a real registry and ran the gate scripts, and HAProxy served the "
    "traffic in the ALB's place. What stood in for AWS (IMDS, cfn-signal, State Manager, the endpoints' names, the "
    "load balancer) is listed in docs/local-emulator.md. `make deploy TARGET=aws STAGE=...` deploys the same stacks "
    "to a real account."
)


TASKS_NOTE = (
    "The control plane was a local AWS emulator (moto); the tasks were real: the ECS stand-in ran the synthesized task "
    "definition as containers (the image from a real registry, the secrets from the emulator, the migrate container before "
    "the app), moved them through ECS's deployment (blue/green: the listener rule's weights, the bake, the rollback) and "
    "HAProxy served the traffic in the ALB's place. What stood in for AWS is listed in docs/local-emulator.md. "
    "`make deploy TARGET=aws STAGE=...` deploys the same stacks to a real account."
)


class DeployError(RuntimeError):
    """A step of the local deploy failed; the message names the step and what to look at."""


def log(message: str) -> None:
    print(f"liftoff local: {message}", flush=True)


@contextmanager
def step(description: str) -> Iterator[None]:
    log(f"{description} ...")
    started = time.monotonic()
    yield
    log(f"  done in {time.monotonic() - started:.1f} s")


def release_tags() -> tuple[list[str], str]:
    """The releases the service keeps code for (service/liftoff_service/api/release_X_Y_Z.py) to push, and the
    version to switch to (service/VERSION, else the newest kept one)."""
    releases = sorted((".".join(path.stem.split("_")[1:]) for path in API_DIR.glob("release_*_*_*.py")),
                      key=lambda version: tuple(int(part) for part in version.split(".")))
    if not releases:
        raise DeployError(f"{API_DIR.relative_to(REPO)} keeps no release module to deploy")
    target = VERSION_FILE.read_text().strip() if VERSION_FILE.exists() else releases[-1]
    if target not in releases:
        releases.append(target)
    return releases, target


def docker_host() -> str:
    """The Docker daemon the hosts run on (DOCKER_HOST, else the default socket, where `up` starts one if none answers)."""
    return os.environ.get("DOCKER_HOST") or docker.DEFAULT_HOST


# The CDK CLI as the harness runs it: no version check and no usage telemetry (CLI 2.1100 and later send both to
# AWS at each command; the local world talks to loopback only), jsii quiet about the Node.js version.
QUIET_CDK_CLI = {"CDK_DISABLE_VERSION_CHECK": "1", "CDK_DISABLE_CLI_TELEMETRY": "true",
                 "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}


def cli_environment(emulator: Emulator) -> dict[str, str]:
    """The environment for the CDK CLI and boto3: fake credentials, every AWS call to the emulator."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment.update(aws.FAKE_ENVIRONMENT)
    environment["AWS_ENDPOINT_URL"] = emulator.endpoint
    environment.update(QUIET_CDK_CLI)
    # Never fall back to a user's real configuration files.
    environment["AWS_CONFIG_FILE"] = os.devnull
    environment["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    return environment


def cdk_command(*arguments: str) -> list[str]:
    """The pinned CDK CLI (package.json, `make setup`) with `arguments`, and no notices: fetching them starts with a
    connectivity check against the internet. Called by its own path, as `npx --no-install cdk` finds it, without npx's
    own Node.js process (~0.4 CPU-s a call, a few dozen calls a test run)."""
    if not CDK_CLI.exists():
        raise DeployError(f"the pinned CDK CLI is not installed ({CDK_CLI} is missing): run `make setup`")
    return [str(CDK_CLI), *arguments, "--no-notices"]


def run_cdk(arguments: list[str], emulator: Emulator, *, what: str) -> None:
    result = subprocess.run(cdk_command(*arguments), cwd=REPO, env=cli_environment(emulator), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-25:])
        raise DeployError(f"{what} failed (cdk {' '.join(arguments[:2])} exited {result.returncode}):\n{tail}")


def synthesize() -> Path:
    result = subprocess.run(cdk_command("synth", "--quiet"), cwd=REPO, stdin=subprocess.DEVNULL,
                            env={**os.environ, **QUIET_CDK_CLI},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise DeployError(f"cdk synth failed (exit {result.returncode}):\n" + "\n".join(result.stdout.splitlines()[-25:]))
    return SYNTH_DIR


def synthesize_variant(stage_settings: dict[str, dict], outdir: Path) -> Path:
    """The app synthesized with some stages' settings changed (say `activation: restart`; None removes a key), into `outdir`.

    Runs app.py the way the CDK CLI does (the whole cdk.json context in CDK_CONTEXT_JSON, the
    assembly to CDK_OUTDIR), so the variant is validated and built exactly like the shipped stages."""
    context = json.loads(CONFIG_FILE.read_text())["context"]
    for stage, settings in stage_settings.items():
        context["liftoff"]["stages"][stage].update(settings)
        for key in [key for key, value in settings.items() if value is None]:  # None: the key is not set at all
            del context["liftoff"]["stages"][stage][key]
    outdir.mkdir(parents=True, exist_ok=True)
    # The variant's own cdk.json, for the release tool's --config (it reads the stage's settings too).
    (outdir / "cdk.json").write_text(json.dumps({"context": context}, indent=1))
    result = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=REPO, stdin=subprocess.DEVNULL,
                            env={**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(outdir),
                                 "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise DeployError(f"synthesizing with {json.dumps(stage_settings)} failed (exit {result.returncode}):\n"
                          + "\n".join(result.stdout.splitlines()[-25:]))
    return outdir


def emulator_session(emulator: Emulator) -> aws.EndpointSession:
    """boto3 clients with the fake identity, all bound to the emulator's endpoint (never a real account)."""
    return aws.EndpointSession(aws.fake_session(), emulator.endpoint)


@dataclass
class LocalStage:
    """A stage deployed into a running emulator by the real CDK CLI."""

    stage: StageConfig
    emulator: Emulator
    stacks: StageStacks
    assembly: Path  # the adapted copy the CLI deploys
    real_hosts: bool = False  # the walk ran on host boxes (ec2 with Docker), not on the stand-in
    real_tasks: bool = False  # the walk ran on real ECS tasks (ecs with Docker), not on the stand-in
    hosts: list[tuple[str, str, str]] = field(default_factory=list)  # (instance id, container, address)
    box_image: str = ""  # the hosts' box image, for the boxes the group launches later
    associations: dict[str, dict] = field(default_factory=dict)  # what the State Manager stand-in last ran per gate
    _operator: aws.EndpointSession | None = field(default=None, repr=False)

    @property
    def clients(self) -> aws.EndpointSession:
        return emulator_session(self.emulator)

    @property
    def operator(self) -> aws.EndpointSession:
        """The stage's operator (local/principals.py): who `liftoff` runs as, held to liftoff-<stage>-operator."""
        if self._operator is None:
            self._operator = operator_session(self.clients, self.stage.name)
        return self._operator

    def outputs(self, stack_name: str) -> dict[str, str]:
        return aws.stack_outputs(self.clients, stack_name)

    def parameters(self, stack_name: str) -> dict[str, str]:
        return aws.stack_parameters(self.clients, stack_name)

    def status(self, stack_name: str) -> str:
        return aws.stack_status(self.clients, stack_name)

    def runtime(self) -> EmulatedRuntime:
        """The release tool's adapter for this stage: every client to the emulator, what runs from the stand-in."""
        return EmulatedRuntime(service_stack=self.stacks.service, registry_stack=self.stacks.registry,
                               region=aws.FAKE_ENVIRONMENT["AWS_REGION"], session=self.operator, stand_in_session=self.clients)

    @property
    def repository_name(self) -> str:
        return self.outputs(self.stacks.registry)["RepositoryName"]


def adapt(source: Path, target: Path, stage: StageConfig, emulator: Emulator) -> list:
    """Create the stage's secrets and alarms in the emulator out of band, then write the adapted copy of `source`."""
    stacks = StageStacks.of(stage)
    templates = read_templates(source, stacks.in_order)
    secret_arns = aws.create_secrets(emulator_session(emulator), secrets_to_create(templates))
    aws.create_alarms(emulator_session(emulator), alarms_to_create(templates))
    return adapt_assembly(source, target, stack_names=stacks.in_order, secret_arns=secret_arns)


def deploy_stage(stage: StageConfig, emulator: Emulator, *, source: Path, target: Path, image_tag: str) -> LocalStage:
    """Bootstrap the emulated account and `cdk deploy` every stack of the stage (direct method, explicit parameters)."""
    stacks = StageStacks.of(stage)
    with step(f"adapting a copy of {source.name} for the emulator into {target.name}/ ({source.name} itself is not changed)"):
        for adaptation in adapt(source, target, stage, emulator):
            log(f"  adapted {adaptation}")
    with step(f"cdk bootstrap aws://{aws.EMULATED_ACCOUNT}/{aws.FAKE_ENVIRONMENT['AWS_REGION']} (into the emulator)"):
        run_cdk(["bootstrap", f"aws://{aws.EMULATED_ACCOUNT}/{aws.FAKE_ENVIRONMENT['AWS_REGION']}", "--app", str(target)],
                emulator, what="cdk bootstrap into the emulator")
    with step(f"cdk deploy {' '.join(stacks.in_order)} with ImageTag={image_tag}"):
        run_cdk(["deploy", "--app", str(target), *cdk_deploy_options(stacks, image_tag, image_tag), *stacks.in_order],
                emulator, what=f"cdk deploy of stage {stage.name!r} into the emulator")
    return LocalStage(stage=stage, emulator=emulator, stacks=stacks, assembly=target)


def cdk_deploy_options(stacks: StageStacks, image_tag: str, staged_image_tag: str) -> list[str]:
    # direct: moto creates no Outputs/Exports when it executes a change set. Explicit values and no
    # previous parameters: moto answers HTTP 500 to UsePreviousValue on a parameter that took its default.
    return [
        "--method=direct", "--require-approval", "never", "--no-previous-parameters", "--progress", "events",
        "--parameters", f"{stacks.service}:ImageTag={image_tag}",
        "--parameters", f"{stacks.service}:StagedImageTag={staged_image_tag}",
    ]


def observe(deployed: LocalStage) -> dict[str, str]:
    """What a version switch changes, as the emulator records it: labelled values for a before/after table."""
    clients = deployed.clients
    service = deployed.stacks.service
    outputs = deployed.outputs(service)
    parameters = deployed.parameters(service)
    seen = {f"{service} parameter {key}": parameters.get(key, "-") for key in ("ImageTag", "StagedImageTag")}
    ssm = clients.client("ssm")
    for key in ("ActiveImageTagParameterName", "StagedImageTagParameterName"):
        if key in outputs:
            seen[f"SSM parameter {outputs[key]}"] = ssm.get_parameter(Name=outputs[key])["Parameter"]["Value"]
    if "EcsServiceName" in outputs:
        ecs = clients.client("ecs")
        described = ecs.describe_services(cluster=outputs["ClusterName"], services=[outputs["EcsServiceName"]])["services"]
        if described:
            task_definition = described[0]["taskDefinition"]
            seen["ECS task definition"] = task_definition.rsplit("/", 1)[-1]
            containers = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]["containerDefinitions"]
            # The app and its migrate container run the same image: each image once.
            images = dict.fromkeys(c.get("image", "-").rsplit("/", 1)[-1] for c in containers)
            seen["ECS container image"] = ", ".join(images)
            seen["ECS desired count"] = str(described[0]["desiredCount"])
    if "AutoScalingGroupName" in outputs:
        groups = clients.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[outputs["AutoScalingGroupName"]])["AutoScalingGroups"]
        if groups:
            seen["Auto Scaling desired capacity"] = str(groups[0]["DesiredCapacity"])
            template = groups[0].get("LaunchTemplate") or {}
            seen["launch template version"] = str(template.get("Version", "-"))
        # moto has no CloudFormation model (nor a ListAssociations API) for State Manager associations.
        seen["SSM stage/activate associations"] = NOT_MODELLED
    return seen


NOT_MODELLED = "not modelled by the emulator"


def change_lines(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The before/after table; a row the emulator does not model says so instead of a before and after."""
    keys = list({**before, **after})
    width = max(len(key) for key in keys)
    lines = []
    for key in keys:
        old, new = before.get(key, "-"), after.get(key, "-")
        if old == new == NOT_MODELLED:
            lines.append(f"  {key:<{width}}  ({NOT_MODELLED}: the change cannot be shown)")
            continue
        lines.append(f"  {key:<{width}}  {old} -> {new}  ({'changed' if old != new else 'unchanged'})")
    return lines


def print_changes(before: dict[str, str], after: dict[str, str]) -> None:
    for line in change_lines(before, after):
        log(line)


def liftoff(deployed: LocalStage, runtime: EmulatedRuntime, *argv: str) -> None:
    """Run one verb of the release tool in-process on the emulated stage; a non-zero exit fails the deploy."""
    verb = argv[0]
    options = ["--config", str(CONFIG_FILE), "--stage", deployed.stage.name]
    if verb in ("stage", "activate", "rollback"):
        # moto finishes an update before it answers; real hosts take seconds per gate, polled each second.
        options += ["--poll-interval", "1" if isinstance(runtime, (HostsRuntime, TasksRuntime)) else "0"]
    if verb in ("activate", "rollback"):
        options += ["--yes"]
    if verb == "activate":
        # The walk rolls back right after; the bake window's watch is `make bench-rollout`'s bad-release scenario.
        options += ["--no-watch"]
    shown = " ".join(["liftoff", *argv, "--stage", deployed.stage.name])
    with step(f"{shown} (the release tool, in-process)"):
        code = release_cli.main([*argv, *options], stdin=io.StringIO(""), stdout=sys.stdout, stderr=sys.stderr, aws=runtime)
        if code != 0:
            raise DeployError(f"`{shown}` exited {code} (its message is above); the local deploy stops here")


WALK_LOAD_RATE = 20.0  # requests per second through the load balancer stand-in during the walk
WALK_LOAD_BOUND_SECONDS = 600.0


def release_walk(deployed: LocalStage, *, first: str, target: str, runtime: EmulatedRuntime | None = None,
                 hosts: StageHosts | None = None, tasks: StageTasks | None = None) -> None:
    """stage -> activate -> rollback with the release tool, then its ledger; on real hosts or tasks, what each one
    serves, with steady load through the load balancer stand-in during each step."""
    runtime = runtime or deployed.runtime()
    loads: list[tuple[str, object]] = []
    balancer = hosts.balancer if hosts is not None else tasks.balancer if tasks is not None else None

    def show() -> None:
        if hosts is not None:
            print_hosts(hosts)
        if tasks is not None:
            print_tasks(tasks)

    def step_under_load(*argv: str) -> None:
        if balancer is None:
            liftoff(deployed, runtime, *argv)
            return
        with LoadRun(f"{balancer.url}/version", rate=WALK_LOAD_RATE, duration=WALK_LOAD_BOUND_SECONDS,
                     timeout=PATIENT_CLIENT_SECONDS) as run:
            try:
                liftoff(deployed, runtime, *argv)
            finally:
                run.stop()
        loads.append((" ".join(argv), run.summary()))

    if hosts is not None:
        log(f"release walk {first} -> {target} -> {first} with liftoff on {len(hosts.hosts)} real host(s); "
            "each gate runs on the hosts one at a time (the State Manager stand-in, local/hosts.py)")
    elif tasks is not None:
        strategy = deployed.stage.deployment_strategy
        log(f"release walk {first} -> {target} -> {first} with liftoff on real ECS tasks ({strategy} deployments, the ECS stand-in, "
            "local/ecs_service.py)" + (f"; each activation is verified once ECS's {deployed.stage.bake_seconds} s bake has ended "
                                       "and the previous tasks are gone, as on AWS, where CloudFormation waits for it"
                                       if strategy != "rolling" else ""))
    else:
        log(f"release walk {first} -> {target} -> {first} with liftoff; {STAND_IN_NOTE}")
    liftoff(deployed, runtime, "versions")
    before = observe(deployed)
    step_under_load("stage", target)
    step_under_load("activate", target)
    log(f"what `liftoff stage` + `liftoff activate {target}` changed (before -> after):")
    print_changes(before, observe(deployed))
    show()
    step_under_load("rollback")
    show()
    liftoff(deployed, runtime, "history")
    liftoff(deployed, runtime, "status")
    account_for_calls(deployed)
    if loads:
        log(f"what clients saw through the load balancer stand-in ({WALK_LOAD_RATE:.0f} requests/s, a new connection each, "
            f"GET /version, failed: refused, reset, 5xx or no answer within {PATIENT_CLIENT_SECONDS:.0f} s; "
            "`make bench-rollout` measures more):")
        for what, summary in loads:
            log(f"  liftoff {what}: sent {summary.sent}, failed {summary.failed}, longest gap {summary.longest_gap_s:.2f} s, "
                f"versions {', '.join(f'{v} x{n}' for v, n in summary.versions.items()) or 'none'}")


IAM_CALLS_FILE = "iam-calls.json"


def account_for_calls(deployed: LocalStage) -> None:
    """Say what each principal called as the emulator recorded it, held to its own policies (local/moto_iam.py): the
    operator's `liftoff` (liftoff-<stage>-operator), and on real tasks their task and execution roles. A refused
    `liftoff` call already stopped the walk (exit 4); a refused call of anyone else fails it here."""
    operator = deployed.operator.client("sts").get_caller_identity()["Arn"]
    calls = moto_iam.recorded_calls(deployed.emulator.endpoint)
    # Kept for the verdict (local/iam_verdict.py judges them against the synthesized policy with a real evaluator).
    (deployed.assembly / IAM_CALLS_FILE).write_text(json.dumps([c for c in calls if c["principal"] == operator], indent=1))
    line, refused = moto_iam.summary(calls, operator)
    log(f"IAM enforced by the emulator (local/moto_iam.py): liftoff ran as {line}; the calls are in "
        f"{deployed.assembly.name}/{IAM_CALLS_FILE}")
    # Each task assumes its roles in its own session: one line per role.
    by_role = [{**c, "principal": _role_of(c["principal"])} for c in calls if c["principal"] != operator]
    for role in sorted({c["principal"] for c in by_role}):
        others, their_refused = moto_iam.summary(by_role, role)
        refused += their_refused
        log(f"  and {others}")
    if refused:
        raise DeployError("calls their principal's policy refused: " + "; ".join(
            f"{c['principal']}: {c['action']} on {c['resources'][0]}" for c in refused[:10]))


def _role_of(principal: str) -> str:
    """An assumed role's session ARN without the session (arn:aws:sts::A:assumed-role/ROLE), anything else as it is."""
    return principal.rsplit("/", 1)[0] if ":assumed-role/" in principal else principal


def print_hosts(hosts: StageHosts) -> None:
    active = hosts.active_tags()
    for box in hosts.hosts:
        log(f"  host {box.instance_id} ({box.address}): active {active[box.instance_id] or '-'}, "
            f"answers /version with {hosts.serving_version(box) or 'nothing'}")


def print_tasks(tasks: StageTasks) -> None:
    service = tasks.outputs()["EcsServiceName"]
    for task in tasks.ecs.tasks(service) if tasks.ecs else []:
        if task["lastStatus"] == "RUNNING":
            image = next((c["image"] for c in task["containers"] if c["name"] == "app"), "-")
            log(f"  task {task['taskArn'].rsplit('/', 1)[-1][:12]} ({task['address']}, {task['revision'].rsplit('/', 1)[-1]}): "
                f"runs {image.rsplit('/', 1)[-1]}, in {task['targetGroup'].rsplit('/', 2)[-2]}")


def build_images(daemon: docker.Daemon, releases: list[str],
                 extra_images: Callable[[docker.Daemon, str], dict[str, str]] | None = None) -> tuple[dict[str, str], str]:
    """The service image from service/Dockerfile as each release, and the box image (hosts, registry, database)."""
    base = images.python_base(daemon, os.environ.get("LIFTOFF_PYTHON_BASE", "auto"), say=lambda line: log(f"  {line}"))
    built = images.build_service_image(daemon, base)
    release_images = {version: images.release_image(daemon, built, version) for version in releases}
    if extra_images is not None:
        release_images.update(extra_images(daemon, built))
    return release_images, images.box_image(daemon)


def connect_docker(state_dir: Path) -> docker.Daemon | None:
    """The machine's Docker daemon, or one started for this run (stopped at its end); None, said in one line, without."""
    try:
        daemon = docker.connect_or_start(state_dir)
    except docker.DockerError as error:
        log(f"no Docker here ({error}); the walk stays control-plane only")
        return None
    if daemon.ours:
        log(f"  started dockerd (pid {daemon.pid}); it is stopped at the end")
    return daemon


def prepare_world(daemon: docker.Daemon, releases: list[str], state_dir: Path, *, boxes_for: str,
                  extra_images: Callable[[docker.Daemon, str], dict[str, str]] | None = None) -> tuple[dict[str, str], str]:
    """The release images and the box image; and no world a killed run left behind (recorded by us, so ours to remove)."""
    with step(f"building the service image from service/Dockerfile, and the box image ({boxes_for})"):
        release_images, box_image = build_images(daemon, releases, extra_images)
    stale = boxes.BoxWorld.recorded(state_dir)
    if stale is not None:
        log(f"  removing the world {stale.name} a killed run left behind")
        boxes.stop_world(daemon, stale, state_dir)
    return release_images, box_image


@contextmanager
def real_tasks(deployed: LocalStage, releases: list[str], *, keep: bool = False, state_dir: Path = STATE_DIR,
               extra_images: Callable[[docker.Daemon, str], dict[str, str]] | None = None) -> Iterator[StageTasks | None]:
    """An ecs stage's service as real tasks on this machine's Docker (yields None, saying why, where Docker is missing);
    everything is removed at the end, except with `keep` after a walk that ended well: then the world (registry,
    database, endpoints) stays for `make local-up`'s supervisor, which runs the load balancer and the tasks again on it."""
    daemon = connect_docker(state_dir)
    if daemon is None:
        yield None
        return
    tasks = None
    walked = False
    try:
        release_images, box_image = prepare_world(daemon, releases, state_dir, boxes_for="the registry, the database",
                                                  extra_images=extra_images)
        tasks = StageTasks(daemon=daemon, session=deployed.clients, emulator_port=deployed.emulator.port,
                           service_stack=deployed.stacks.service, registry_stack=deployed.stacks.registry, state_dir=state_dir,
                           name=f"liftoff-{deployed.stage.name}-{os.getpid()}", box_image=box_image,
                           account=aws.EMULATED_ACCOUNT, region=aws.FAKE_ENVIRONMENT["AWS_REGION"], say=lambda line: log(line))
        with step(f"starting the world {tasks.name}: AWS endpoints (TLS, to the emulator), the ECR and RDS stand-ins"):
            tasks.start()
        with step(f"pushing release images {', '.join(releases)} into the ECR stand-in (a real registry) and the emulated ECR"):
            for version, digest in tasks.push(release_images).items():
                log(f"  {version}: {digest}")
        with step("starting the load balancer stand-in (HAProxy on both target groups, weights from the production listener rule)"):
            log(f"  {tasks.start_load_balancer().url} -> the tasks registered in the emulated target groups")
        with step("starting the ECS stand-in: the service's tasks from its task definition, until the first deployment succeeds"):
            tasks.start_tasks()
            tasks.wait_steady()
        print_tasks(tasks)
        yield tasks
        walked = True
    except docker.DockerError as error:
        raise DeployError(f"the ecs tasks could not run here: {error}") from None
    finally:
        kept = keep and walked  # a failed `up` leaves nothing behind either
        if tasks is not None and kept:
            # The ECS stand-in, its agent and the load balancer are threads of this process: the supervisor runs its own.
            with step("stopping the walk's tasks (SIGTERM, then SIGKILL after each stop timeout) and the stand-ins; "
                      f"the world {tasks.name} stays"):
                tasks.stop_running()
        elif tasks is not None:
            with step("stopping the tasks (SIGTERM, then SIGKILL after each stop timeout), the stand-ins and their network"):
                tasks.stop()
        if not kept:
            docker.stop(daemon)


@contextmanager
def real_hosts(deployed: LocalStage, releases: list[str], *, keep: bool = False, host_count: int | None = None,
               extra_images: Callable[[docker.Daemon, str], dict[str, str]] | None = None, state_dir: Path = STATE_DIR,
               ) -> Iterator[tuple[StageHosts, StateManagerStandIn] | None]:
    """An ec2 stage's hosts as boxes on this machine's Docker (yields None, saying why, where Docker is missing).

    `host_count` sets the Auto Scaling group's capacity in the emulator before the hosts boot (as a
    `desired_count` change would); `extra_images(daemon, built_image)` adds release images to push."""
    daemon = connect_docker(state_dir)
    if daemon is None:
        yield None
        return
    hosts = state_manager = None
    walked = False
    try:
        release_images, box_image = prepare_world(daemon, releases, state_dir, boxes_for="the hosts, the registry, the database",
                                                  extra_images=extra_images)
        hosts = StageHosts(daemon=daemon, session=deployed.clients, emulator_port=deployed.emulator.port,
                           service_stack=deployed.stacks.service, registry_stack=deployed.stacks.registry,
                           state_dir=state_dir, name=f"liftoff-{deployed.stage.name}-{os.getpid()}", box_image=box_image,
                           say=lambda line: log(line))
        with step(f"starting the hosts' world {hosts.name}: AWS endpoints (TLS, to the emulator), the ECR and RDS stand-ins"):
            hosts.start()
        with step(f"pushing release images {', '.join(releases)} into the ECR stand-in (a real registry) and the emulated ECR"):
            for version, digest in hosts.push(release_images).items():
                log(f"  {version}: {digest}")
        if host_count is not None:
            hosts.set_capacity(host_count)
        with step("booting one host box per instance of the Auto Scaling group from its launch template's user data"):
            for instance_id, seconds in hosts.boot().items():
                log(f"  host {instance_id} signalled SUCCESS {seconds:.1f} s after boot")
        with step("starting the load balancer stand-in (HAProxy, health checks and draining from the synthesized target group)"):
            balancer = hosts.start_load_balancer()
            log(f"  {balancer.url} -> the targets registered in the emulated target group")
            # As on AWS, where the stack's creation ends with the hosts in service: every target healthy first.
            hosts.wait_in_service()
        print_hosts(hosts)
        # The walk changes the stack through HostsRuntime, which wakes the follower.
        state_manager = StateManagerStandIn(hosts, say=lambda line: log(line), interval=WOKEN_FOLLOW_INTERVAL_SECONDS)
        with step("the stage and activate associations' first run on every host (as their creation does on AWS)"):
            state_manager.start()
        yield hosts, state_manager
        walked = True
    except (docker.DockerError, KeyError) as error:
        raise DeployError(f"the ec2 hosts could not run here: {error}") from None
    finally:
        if state_manager is not None:
            state_manager.stop()
        if hosts is not None:
            # Its controller is a thread of this process: the load balancer never outlives it, even for `up`.
            hosts.stop_load_balancer()
        kept = keep and walked  # a failed `up` leaves nothing behind either
        if hosts is not None and not kept:
            with step("removing the hosts, the stand-ins and their network"):
                hosts.stop()
        if not kept:
            docker.stop(daemon)


def run(stage: StageConfig, emulator: Emulator, *, source: Path | None = None, target: Path = ADAPTED_DIR,
        keep_world: bool = False, state_dir: Path = STATE_DIR) -> LocalStage:
    """The whole demo in a running emulator: synth, deploy, push images, the release walk. With `keep_world` (`up`) the
    hosts' or the tasks' world stays after the walk, for the supervisor."""
    releases, target_version = release_tags()
    first = releases[0] if releases[0] != target_version else releases[-1]
    if first == target_version:
        raise DeployError(f"{API_DIR.relative_to(REPO)} and {VERSION_FILE.relative_to(REPO)} name only {first}; "
                          "the release walk needs a second kept release to stage, activate and roll back")
    if source is None:
        with step("cdk synth (the real cloud assembly, cdk.out/)"):
            source = synthesize()
    deployed = deploy_stage(stage, emulator, source=source, target=target, image_tag=first)
    for name in deployed.stacks.in_order:
        log(f"  {name}: {deployed.status(name)}")
    if stage.compute == "ec2":
        with real_hosts(deployed, releases, keep=keep_world, state_dir=state_dir) as running:
            if running is not None:
                hosts, state_manager = running
                runtime = HostsRuntime(hosts=hosts, state_manager=state_manager, service_stack=deployed.stacks.service,
                                       registry_stack=deployed.stacks.registry,
                                       region=aws.FAKE_ENVIRONMENT["AWS_REGION"], session=deployed.operator,
                                       stand_in_session=deployed.clients)
                release_walk(deployed, first=first, target=target_version, runtime=runtime, hosts=hosts)
                state_manager.settle()
                deployed.real_hosts = True
                deployed.hosts = [(box.instance_id, box.container, box.address) for box in hosts.hosts]
                deployed.box_image = hosts.box_image
        if deployed.real_hosts:
            # Read once the State Manager stand-in has stopped: the association a rollback changed may run last.
            deployed.associations = {gate: dict(value) for gate, value in state_manager.status.items()}
            return deployed
    if stage.compute == "ecs":
        with real_tasks(deployed, releases, keep=keep_world, state_dir=state_dir) as tasks:
            if tasks is not None:
                runtime = TasksRuntime(tasks=tasks, service_stack=deployed.stacks.service, registry_stack=deployed.stacks.registry,
                                       region=aws.FAKE_ENVIRONMENT["AWS_REGION"], session=deployed.operator,
                                       stand_in_session=deployed.clients)
                release_walk(deployed, first=first, target=target_version, runtime=runtime, tasks=tasks)
                deployed.real_tasks = True
                deployed.box_image = tasks.box_image  # the tasks' pause image, for the supervisor's stand-in
        if deployed.real_tasks:
            return deployed
    with step(f"pushing release images {', '.join(releases)} (the releases {API_DIR.relative_to(REPO)} keeps) into the emulated ECR, "
              "starting each image's scan"):
        aws.push_images(deployed.clients, deployed.repository_name, releases)
    release_walk(deployed, first=first, target=target_version)
    return deployed


def update_stage(stage: StageConfig, emulator: Emulator, *, source: Path | None, target: Path) -> LocalStage:
    """`make local-up` again on a running stage: the stacks updated in place from the current cdk.json (a changed
    `desired_count`, say), each version parameter kept as it is; the supervisor's Auto Scaling group or ECS stand-in
    follows the new size."""
    stacks = StageStacks.of(stage)
    session = emulator_session(emulator)
    try:
        parameters = aws.stack_parameters(session, stacks.service)
    except Exception as error:  # noqa: BLE001 (botocore's ClientError or a connection error: either way, say it)
        raise DeployError(f"the running emulator has no stack {stacks.service} to update ({error}); "
                          "`make local-down`, then `make local-up`") from None
    if source is None:
        with step("cdk synth (the real cloud assembly, cdk.out/)"):
            source = synthesize()
    with step(f"adapting a copy of {source.name} for the emulator into {target.name}/"):
        adapt(source, target, stage, emulator)
    active, staged = parameters["ImageTag"], parameters.get("StagedImageTag") or parameters["ImageTag"]
    with step(f"cdk deploy {' '.join(stacks.in_order)} (an update in place: ImageTag={active}, StagedImageTag={staged} kept)"):
        run_cdk(["deploy", "--app", str(target), *cdk_deploy_options(stacks, active, staged), *stacks.in_order],
                emulator, what=f"cdk deploy of stage {stage.name!r} into the running emulator")
    deployed = LocalStage(stage=stage, emulator=emulator, stacks=stacks, assembly=target)
    for name in stacks.in_order:
        log(f"  {name}: {deployed.status(name)}")
    return deployed


def stop_kept_world(state_dir: Path = STATE_DIR) -> list[str]:
    """What `local down` removes besides the emulator: the hosts' or the tasks' world and the Docker daemon `up` started."""
    stopped = []
    world = boxes.BoxWorld.recorded(state_dir)
    if world is not None:
        daemon = docker.Daemon(host=os.environ.get("DOCKER_HOST") or docker.DEFAULT_HOST)  # the daemon `up` used
        boxes.stop_world(daemon, world, state_dir)
        if world.boxes:
            stopped.append(f"the hosts' world {world.name} ({len(world.boxes)} host(s), registry, database, network, "
                           f"proxy pid {world.proxy_pid})")
        else:  # an ecs world: its tasks were stopped by the supervisor (a killed one's are removed with the world)
            stopped.append(f"the tasks' world {world.name} (registry, database, network, proxy pid {world.proxy_pid})")
    daemon_pid = docker.recorded_daemon(state_dir)
    if daemon_pid is not None:
        docker.stop(docker.Daemon(host=docker.DEFAULT_HOST, pid=daemon_pid))
        stopped.append(f"dockerd (pid {daemon_pid})")
    return stopped
