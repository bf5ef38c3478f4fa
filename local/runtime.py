"""The emulator's stand-in for what really runs: a `release.adapters.aws.Aws` that reports the version the stack recorded.

moto registers a stack update but runs nothing: no ECS task starts, no load balancer checks a target,
no SSM association executes (moto has no association API at all). So the release tool's real
adapter never sees a new version run and could never verify an activation. `EmulatedRuntime` is the
real adapter (CloudFormation, ECR, the ledger and the lock all go to the emulator for real) except
for the three reads of what runs, which it answers from what the stack itself recorded as active:
the `ActiveImageTagParameterName` SSM parameter, which CloudFormation updates from `ImageTag`.

- ecs: the service's desired count (as moto's `describe_services` reports it) tasks RUNNING the
  repository's image with that tag, and as many targets, healthy (or unhealthy with `healthy=False`);
- ec2: the Auto Scaling group's instances as moto reports them (or desired-capacity stand-ins if it
  reports none), one target each, and an activate association whose ImageTag parameter is the
  active tag with status Success;
- ec2 host reports (`host_reports`, read where the stack has a HostReportPath output): every real
  report under the path first (moto keeps SSM parameters: a test writes a host that disagrees there),
  and for each in-service host without one a stand-in made from the stack's record, labelled
  `stand_in` (REPORT_STAND_IN), shown as `[stand-in: ...]` wherever `liftoff` uses it. Real boxes
  (read by a subclass: local.hosts.HostsRuntime, local.control.SupervisedRuntime) get no stand-in;
  `start_association_once` is only recorded (`associations_started`): nothing runs here.

On AWS these answers come from ECS, the target group and State Manager; here they only repeat the
stack's own record, so an emulated activation always "runs" what it set. Every decision the tool
makes on top of them is its own.

The seam: `liftoff` run from any shell loads the factory `LIFTOFF_RUNTIME` names (`release.adapters.runtime`):
`local.runtime:emulator` (or `local.runtime:emulator_unhealthy`) builds this adapter, and refuses unless
AWS_ENDPOINT_URL is a loopback address; `shell_exports` is the line `make local-up` prints. The release tool
knows none of these names. `local.runtime:emulator_hosts` is for an ec2 stage whose hosts are real boxes
`make local-up` kept: it asks the supervisor that keeps them (local/supervisor.py, at LIFTOFF_LOCAL_CONTROL)
what runs, through local/control.py, and refuses when no supervisor answers. `local.runtime:emulator_tasks` is
for an ecs stage whose tasks `make local-up` keeps: the real adapter's ECS reads (the emulator answers them from
the kept ECS stand-in), and only image blobs from that supervisor; it refuses likewise. A runtime that really
runs the version replaces the three reads below and nothing else: the release flow, the ledger and the lock do
not change.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from typing import Mapping
from urllib.parse import urlparse

import boto3

from config import StageConfig
from local.aws import FAKE_ENVIRONMENT, EndpointSession
from release.adapters.aws import Aws
from release.adapters.runtime import RUNTIME_VARIABLE, RuntimeRefused

# Said wherever the stand-in's answers are shown, so nobody mistakes them for a real rollout.
STAND_IN_NOTE = ("tasks, hosts, target health and SSM associations are the emulator's stand-in "
                 "(local/runtime.py): they report the version the stack recorded as active; nothing runs")


# Labels every host report the stand-in makes up (release.pure.fleet shows it wherever a verdict uses it).
REPORT_STAND_IN = "made up by local/runtime.py from the stack's record: no host runs here"

CONTROL_VARIABLE = "LIFTOFF_LOCAL_CONTROL"  # the kept world's supervisor API (local/control.py)
# The factory for a stage whose world `make local-up` kept, by the stage's compute.
SUPERVISED_FACTORIES = {"ec2": "emulator_hosts", "ecs": "emulator_tasks"}


def shell_exports(endpoint: str, *, control_url: str = "", compute: str = "ec2") -> str:
    """The one line that points a fresh shell (the AWS CLI, boto3 and `liftoff`) at the emulator, and at the
    supervisor of its real hosts (`compute` ec2) or tasks (ecs) when `make local-up` kept them.

    botocore and the AWS CLI read the region from AWS_DEFAULT_REGION, not AWS_REGION: both are set."""
    if control_url and compute not in SUPERVISED_FACTORIES:
        raise ValueError(f"no kept world runs on compute {compute!r}; one of {', '.join(SUPERVISED_FACTORIES)}")
    factory = SUPERVISED_FACTORIES[compute] if control_url else "emulator"
    values = {"AWS_ENDPOINT_URL": endpoint, **FAKE_ENVIRONMENT, RUNTIME_VARIABLE: f"{__name__}:{factory}"}
    if control_url:
        values[CONTROL_VARIABLE] = control_url
    return "export " + " ".join(f"{key}={value}" for key, value in values.items())


# --- the factories LIFTOFF_RUNTIME names (release.adapters.runtime calls them) ------------------------------

def emulator(*, stage: StageConfig, region: str | None, environ: Mapping[str, str]) -> "EmulatedRuntime":
    """The stand-in, targets healthy."""
    return _emulated(stage, region, environ, "emulator", healthy=True)


def emulator_unhealthy(*, stage: StageConfig, region: str | None, environ: Mapping[str, str]) -> "EmulatedRuntime":
    """Every target unhealthy: an activation stays in its verification (to rehearse an exit 6, or to interrupt it)."""
    return _emulated(stage, region, environ, "emulator_unhealthy", healthy=False)


def emulator_hosts(*, stage: StageConfig, region: str | None, environ: Mapping[str, str]) -> "EmulatedRuntime":
    """An ec2 stage whose hosts are real boxes kept by `make local-up`: what runs is asked of their supervisor."""
    from local.control import SupervisedRuntime

    control = _supervisor(stage, region, environ, "emulator_hosts", compute="ec2")
    return SupervisedRuntime(control=control, service_stack=stage.service_stack_name,
                             registry_stack=stage.registry_stack_name, region=region)


def emulator_tasks(*, stage: StageConfig, region: str | None, environ: Mapping[str, str]) -> "EmulatedRuntime":
    """An ecs stage whose tasks `make local-up` keeps running: ECS and target health read as on AWS (the emulator answers
    from the kept ECS stand-in), image blobs asked of the supervisor."""
    from local.control import SupervisedTasksRuntime

    control = _supervisor(stage, region, environ, "emulator_tasks", compute="ecs")
    return SupervisedTasksRuntime(control=control, service_stack=stage.service_stack_name,
                                  registry_stack=stage.registry_stack_name, region=region)


def _supervisor(stage: StageConfig, region: str | None, environ: Mapping[str, str], name: str, *, compute: str):
    """The client of the supervisor that keeps `stage`'s world, once it answers for that stage (local/control.py)."""
    from local.control import ControlClient, ControlError

    _emulated(stage, region, environ, name)  # the same loopback check
    if stage.compute != compute:
        right = SUPERVISED_FACTORIES.get(stage.compute, "emulator")
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={__name__}:{name} is for a kept {compute} stage; stage {stage.name} runs on "
                             f"{stage.compute}",
                             f"use the export line `make local-up STAGE={stage.name}` printed ({RUNTIME_VARIABLE}={__name__}:{right})")
    url = environ.get(CONTROL_VARIABLE, "")
    if not loopback(url):
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={__name__}:{name} needs {CONTROL_VARIABLE}, the loopback address of "
                             f"the kept world's supervisor; it is {url or 'unset'}",
                             "use the whole export line `make local-up` printed")
    control = ControlClient(url)
    try:
        supervised = control.state()["stage"]
    except ControlError as error:
        raise RuntimeRefused(str(error), "`make local-up` starts it (and `make local-down` stops it)") from None
    if supervised != stage.name:
        raise RuntimeRefused(f"the local supervisor keeps stage {supervised}, not {stage.name}",
                             f"use --stage {supervised}, or `make local-up STAGE={stage.name}` after `make local-down`")
    return control


def _emulated(stage: StageConfig, region: str | None, environ: Mapping[str, str], name: str, **kwargs) -> "EmulatedRuntime":
    endpoint = environ.get("AWS_ENDPOINT_URL", "")
    if not loopback(endpoint):
        raise RuntimeRefused(f"{RUNTIME_VARIABLE}={__name__}:{name} reports a stand-in for what runs, so it only works against "
                             f"the local emulator; AWS_ENDPOINT_URL is {endpoint or 'unset'}, not a loopback address",
                             f"use the export line `make local-up` printed, or unset {RUNTIME_VARIABLE} for a real account")
    return EmulatedRuntime(service_stack=stage.service_stack_name, registry_stack=stage.registry_stack_name, region=region, **kwargs)


def loopback(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RealTaskReads:
    """Mixed in before EmulatedRuntime where an ecs stage's tasks really run (the ECS stand-in, whose agent publishes
    them to the emulator: local/moto_live.py): the real adapter's reads of ECS and the target groups, and RunTask for
    `liftoff migrate`'s one-off task, instead of answers made up from the stack's record."""

    ecs_running = Aws.ecs_running
    target_health = Aws.target_health
    ecs_deployments = Aws.ecs_deployments
    run_one_off = Aws.run_one_off


class EmulatedRuntime(Aws):
    """The release tool's adapter on an emulated stage; see the module docstring for what it stands in for."""

    def __init__(self, *, service_stack: str, registry_stack: str, region: str | None = None,
                 session: boto3.session.Session | EndpointSession | None = None, healthy: bool = True,
                 stand_in_session: boto3.session.Session | EndpointSession | None = None):
        super().__init__(region=region, session=session)
        self.service_stack, self.registry_stack, self.healthy = service_stack, registry_stack, healthy
        self.associations_started: list[str] = []
        # What only the stand-in reads (the stack's own record, the emulator's blob store) is read as the harness,
        # so `liftoff` itself runs with its caller's permissions and nothing more (local/moto_iam.py).
        self._stand_in = Aws(region=region, session=stand_in_session) if stand_in_session is not None else self

    # --- what the stack recorded --------------------------------------------------------------

    def active_tag(self) -> str:
        name = self.output(self.service_stack, "ActiveImageTagParameterName")
        return self._stand_in.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]

    def active_image(self) -> str:
        return f"{self.output(self.registry_stack, 'RepositoryUri')}:{self.active_tag()}"

    # --- what runs (the stand-in) -------------------------------------------------------------

    def ecs_running(self, cluster: str, service: str) -> dict:
        desired = self._ecs_desired_count(cluster, service)
        image = self.active_image()
        return {"task_definition_image": image, "desired_count": desired, "stopped_tasks": [],
                "tasks": [{"task": f"emulated-task-{i}", "status": "RUNNING", "image": image} for i in range(desired)]}

    def ec2_running(self, auto_scaling_group: str, association_id: str) -> dict:
        desired, instances = self._emulated_hosts(auto_scaling_group)
        stack = self.stack(self.service_stack)
        staging = association_id == stack.outputs.get("StageAssociationId")
        tag = stack.parameters.get("StagedImageTag", "") if staging else self.active_tag()
        return {"instances": instances, "desired_count": desired, "association_parameter": tag,
                "association_status": "Success"}

    def host_reports(self, path: str) -> dict[str, dict]:
        """The hosts' reports: every real one under `path` (moto keeps SSM parameters, so a test, or a host box,
        can write what a host holds, e.g. one that disagrees); for an in-service host without one, a stand-in
        made from the stack's record (active = the recorded active tag, staged = StagedImageTag, ready as
        `healthy`), labelled `stand_in`. Real boxes get no stand-in: they report or not."""
        found = super().host_reports(path)
        stack = self.stack(self.service_stack)
        group = stack.outputs.get("AutoScalingGroupName")
        # Real hosts report for themselves: any subclass that reads what real boxes run (local.hosts.HostsRuntime,
        # local.control.SupervisedRuntime replace ec2_running). A host of theirs without a report is unknown.
        real_hosts = type(self).ec2_running is not EmulatedRuntime.ec2_running
        if real_hosts or not group:
            return found
        now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        active, staged = self.active_tag(), stack.parameters.get("StagedImageTag", "")
        for host in self._emulated_hosts(group)[1]:
            if host["state"] == "InService" and host["instance"] not in found:
                found[host["instance"]] = {
                    "instance": host["instance"], "reported_at": now, "active": active, "active_slot": "a", "ready": self.healthy,
                    "staged": staged, "staged_present": bool(staged), "warm": "", "warm_until": "", "last_gate": {},
                    "stand_in": REPORT_STAND_IN}
        return found

    def start_association_once(self, association_id: str) -> None:
        """moto has no association API and no host runs here: the request is kept (`associations_started`) and
        nothing happens, so a host whose report disagrees keeps disagreeing, as it would if its gate failed again."""
        self.associations_started.append(association_id)

    def target_health(self, target_group_arn: str) -> list[dict]:
        # ECS blue/green moves the tasks to the alternate group; no deployment runs here, so they stay in the first.
        if target_group_arn == self.stack(self.service_stack).outputs.get("AlternateTargetGroupArn"):
            return []
        state, reason = ("healthy", "") if self.healthy else ("unhealthy", "Target.ResponseCodeMismatch")
        return [{"target": target, "state": state, "reason": reason} for target in self._targets()]

    def ecs_deployments(self, cluster: str, service: str) -> list:
        # moto has no service deployments API (ListServiceDeployments, StopServiceDeployment): no ECS
        # deployment runs here, so none is ever in progress, and `liftoff rollback` takes the ordinary path.
        return []

    # --- what moto does not keep or run (the schema-aware verbs) ------------------------------

    def download_layer(self, repository: str, digest: str) -> bytes | None:
        """moto has no GetDownloadUrlForLayer: config blobs are kept in the emulator's S3 (local.aws.put_config_blob)."""
        from local.aws import LAYER_BUCKET

        try:
            return self._stand_in.client("s3").get_object(Bucket=LAYER_BUCKET, Key=f"{repository}/{digest}")["Body"].read()
        except self._stand_in.client("s3").exceptions.ClientError:
            return None  # an image pushed without labels declares no schema contract

    def run_one_off(self, outputs, **_kwargs):
        from release.adapters.schema_aws import OneOffError

        raise OneOffError("the emulator runs no one-off task or Run Command (moto records run_task/send_command and runs "
                          "nothing); `liftoff migrate` runs for real only where a runner stands in (docs/local-emulator.md)")

    # --- helpers ------------------------------------------------------------------------------

    def _ecs_desired_count(self, cluster: str, service: str) -> int:
        described = self._stand_in.client("ecs").describe_services(cluster=cluster, services=[service])["services"]
        return int(described[0].get("desiredCount", 0)) if described else 0

    def _emulated_hosts(self, name: str) -> tuple[int, list[dict]]:
        desired, instances = self.auto_scaling_group(name)
        if not instances:  # the emulator recorded the group but started no instance for it
            instances = [{"instance": f"emulated-host-{i}", "state": "InService", "health": "Healthy"} for i in range(desired)]
        return desired, instances

    def _targets(self) -> list[str]:
        # Fargate registers task IPs, the ec2 mode registers instances: one target per task or host.
        outputs = self.stack(self.service_stack).outputs
        if outputs.get("AutoScalingGroupName"):
            return [host["instance"] for host in self._emulated_hosts(outputs["AutoScalingGroupName"])[1]]
        if outputs.get("ClusterName") and outputs.get("EcsServiceName"):
            return [f"10.0.0.{i}" for i in range(self._ecs_desired_count(outputs["ClusterName"], outputs["EcsServiceName"]))]
        return []

