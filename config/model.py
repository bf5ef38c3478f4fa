"""What a configured stage is: the frozen, typed objects the app, the stacks and the release tool
read, and the choices their keys take."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from config.aws_facts import db_connections_limit
from config.errors import ConfigError


CONTEXT_KEY = "liftoff"

# Release tags are immutable by policy: a semantic version or a git commit sha. `latest` and other
# moving names are refused everywhere (template parameter, release tool, host scripts) so that any
# running version can be named, found in the registry and started again.
RELEASE_TAG_PATTERN = r"^(v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?|[0-9a-f]{7,40})$"
RELEASE_TAG_DESCRIPTION = "a release tag: a semantic version like 1.4.2 or v1.4.2-rc.1, or a 7-40 character git sha"

COMPUTE_MODES = ("ecs", "ec2")
CPU_ARCHITECTURES = ("arm64", "x86_64")

# Keys that only one compute mode reads; set on a stage of the other mode, they would silently do nothing.
MODE_ONLY_KEYS = {
    "task_cpu": "ecs",
    "task_memory_mib": "ecs",
    "container_insights": "ecs",
    "instance_type": "ec2",
    "ami_id": "ec2",
    "activation": "ec2",
    "container_memory_mib": "ec2",
    "deployment_strategy": "ecs",
    "traffic_shift_percent": "ecs",
    "traffic_shift_step_seconds": "ecs",
}
# How an EC2 host switches versions: `slots` starts the new version beside the old one behind the
# host's own proxy and flips traffic once it is healthy (no failed request, and the old version stays
# warm for `bake_seconds`); `restart` replaces the container in place (needs memory for one copy only,
# fails requests for the restart on a single host).
EC2_ACTIVATIONS = ("slots", "restart")
# ECS's own deployment controller strategies (aws-cdk-lib's `deployment_strategy`).
ECS_DEPLOYMENT_STRATEGIES = ("rolling", "blue_green", "canary", "linear")
# canary/linear: the share moved per step and the wait between steps, when a stage names none. ECS's own
# defaults (linear 10 % every 6 minutes) take an hour; these finish in minutes yet give the release alarms
# (a few one-minute periods) a step long enough to fire. Canary's 5 % is ECS Express Mode's first shift.
TRAFFIC_SHIFT_DEFAULTS = {"canary": (5.0, 300), "linear": (20.0, 120)}
# ECS's accepted step percentages (multiples of 0.1).
TRAFFIC_SHIFT_PERCENT_RANGES = {"canary": (0.1, 100.0), "linear": (3.0, 100.0)}
# What an EC2 host keeps for itself beside the containers: the OS, Docker, the SSM and proxy daemons.
HOST_RESERVED_MIB = 512
# Dynamic scaling targets (cdk.json `scale_on`, one of them) and their allowed values. requests_per_target is
# the ALB's RequestCountPerTarget, a count per target per minute; cpu_percent the average over the fleet.
# Under 10 % CPU a fleet never scales in; over 90 % it has no headroom left while new capacity boots.
SCALE_ON_TARGETS = {"requests_per_target": (10, 100000), "cpu_percent": (10, 90)}


@dataclass(frozen=True)
class AlarmThresholds:
    """When an alarm pages someone (cdk.json `alarm_thresholds`); every key has a default."""

    # Share of requests answered 5xx by the targets or the load balancer, over 5 minutes.
    http_5xx_percent: int = 5
    # Release alarms (ECS deployment alarms with rollback, the EC2 activation watch): checked every minute,
    # firing after `release_alarm_minutes` consecutive bad minutes. 1 % 5xx is ECS Express Mode's bar.
    release_5xx_percent: int = 1
    release_unhealthy_targets: int = 1
    release_alarm_minutes: int = 2
    # Target response time, 99th percentile, over 5 minutes.
    latency_p99_ms: int = 1000
    db_cpu_percent: int = 80
    # Storage autoscaling acts at 10 % free; this fires when it could not (at the maximum, or cooling down).
    db_free_storage_gib: int = 2
    # Open connections; None: 70 % of the instance class's default max_connections (see db_connections_limit).
    db_connections: int | None = None


@dataclass(frozen=True)
class RollbackWindow:
    """How far back `liftoff rollback` must stay possible on the schema (cdk.json `rollback_window`)."""

    releases: int | None = 2
    days: int | None = None


@dataclass(frozen=True)
class ScaleOn:
    """What target tracking holds steady (cdk.json `scale_on`: one of SCALE_ON_TARGETS and its value)."""

    metric: str
    target: int


@dataclass(frozen=True)
class Canary:
    """The canary an ec2 host runs on each activation (activation slots): before the flip, the new slot takes
    `percent` of the host proxy's requests for up to `seconds`, and the host judges it against the old slot
    from HAProxy's own counters (cdk.json `canary_*`; host.env `CANARY_*`). percent 0: no canary."""

    percent: int
    seconds: int
    # The judge says nothing before the new slot has answered this many requests.
    min_requests: int
    # Bad when the new slot's share of 5xx and connection errors exceeds this, and the old slot's by as much.
    max_error_percent: int
    # Bad when the new slot's average response time exceeds the old slot's by more than this.
    max_added_latency_ms: int


# The stage keys behind Canary, in its field order.
CANARY_KEYS = ("canary_percent", "canary_seconds", "canary_min_requests", "canary_max_error_percent",
               "canary_max_added_latency_ms")


@dataclass(frozen=True)
class StageConfig:
    name: str
    compute: str
    desired_count: int
    account: str | None = None
    region: str | None = None
    cpu_architecture: str = "arm64"
    # ecs: Fargate task size
    task_cpu: int = 256
    task_memory_mib: int = 512
    # ec2: host size and image; an explicit AMI keeps hosts from being replaced by a new AMI release
    instance_type: str = "t4g.small"
    ami_id: str | None = None
    activation: str = "slots"
    # The container's memory limit on a host (`docker run --memory`); `slots` needs room for two.
    container_memory_mib: int = 512
    # ecs: how ECS replaces tasks on a release.
    deployment_strategy: str = "rolling"
    # ecs canary/linear: the share of traffic per step and the wait between steps (None: TRAFFIC_SHIFT_DEFAULTS).
    traffic_shift_percent: float | None = None
    traffic_shift_step_seconds: int | None = None
    # After an activation the previous version stays warm (ec2: its slot keeps running; ecs blue/green:
    # the old task set keeps its tasks) and the release's alarms are watched; a rollback inside the
    # window is a traffic flip.
    bake_seconds: int = 300
    # ec2 slots: the canary each host runs before it flips (Canary); config refuses these keys elsewhere.
    canary_percent: int = 10
    canary_seconds: int = 20
    canary_min_requests: int = 10
    canary_max_error_percent: int = 5
    canary_max_added_latency_ms: int = 250
    # Contract steps wait while a version inside this window (besides active, staged and warm) needs the
    # old shape: {"releases": N} (the last N versions replaced) or {"days": D} (replaced in the last D days).
    rollback_window: RollbackWindow = field(default_factory=RollbackWindow)
    # Dynamic scaling, off unless max_count is set: then desired_count is the floor, max_count the ceiling,
    # and target tracking on `scale_on` moves the fleet between them (docs/scaling.md).
    max_count: int | None = None
    scale_on: ScaleOn | None = None
    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gib: int = 20
    db_max_allocated_storage_gib: int = 100
    db_multi_az: bool = False
    db_backup_retention_days: int = 7
    deletion_protection: bool = False
    health_check_path: str = "/healthz"
    container_port: int = 8080
    drain_seconds: int = 5
    stop_timeout_seconds: int = 10
    log_retention_days: int = 30
    certificate_arn: str | None = None
    # HTTPS from a name: liftoff makes the certificate (DNS validation) and the alias record in this zone.
    domain_name: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    share_registry_with: str | None = None
    # Operations: who gets the alarm emails, and when the alarms fire.
    alarm_emails: tuple[str, ...] = ()
    alarm_thresholds: AlarmThresholds = field(default_factory=AlarmThresholds)
    # Stricter, paid options (docs/security.md lists each with its monthly cost); off by default.
    alb_access_logs: bool = False
    container_insights: bool = False
    enhanced_monitoring: bool = False

    @property
    def scales(self) -> bool:
        return self.max_count is not None

    @property
    def ceiling(self) -> int:
        """The most tasks or hosts the stage runs: max_count when it scales, else desired_count."""
        return self.max_count if self.max_count is not None else self.desired_count

    @property
    def registry_stage(self) -> str:
        """The stage whose registry stack holds this stage's images."""
        return self.share_registry_with or self.name

    @property
    def registry_stack_name(self) -> str:
        return f"{self.registry_stage}-registry"

    @property
    def data_stack_name(self) -> str:
        return f"{self.name}-data"

    @property
    def service_stack_name(self) -> str:
        return f"{self.name}-service"

    @property
    def serves_https(self) -> bool:
        return self.domain_name is not None or self.certificate_arn is not None

    @property
    def traffic_shift(self) -> tuple[float, int] | None:
        """canary/linear: (percent per step, seconds between steps); None for the other strategies."""
        if self.compute != "ecs" or self.deployment_strategy not in TRAFFIC_SHIFT_DEFAULTS:
            return None
        percent, step = TRAFFIC_SHIFT_DEFAULTS[self.deployment_strategy]
        return (
            float(self.traffic_shift_percent if self.traffic_shift_percent is not None else percent),
            self.traffic_shift_step_seconds if self.traffic_shift_step_seconds is not None else step,
        )

    @property
    def bakes(self) -> bool:
        """The previous version stays warm after an activation: ec2 slots, ecs blue_green/canary/linear."""
        return self.activation == "slots" if self.compute == "ec2" else self.deployment_strategy != "rolling"

    @property
    def canary(self) -> Canary | None:
        """ec2 slots: the hosts' canary (percent 0 included: the hosts are told none runs); None where a
        host has no second slot to give a share of requests to (restart) or ECS deploys (ecs)."""
        if self.compute != "ec2" or self.activation != "slots":
            return None
        return Canary(
            percent=self.canary_percent,
            seconds=self.canary_seconds,
            min_requests=self.canary_min_requests,
            max_error_percent=self.canary_max_error_percent,
            max_added_latency_ms=self.canary_max_added_latency_ms,
        )

    @property
    def db_connections_alarm_threshold(self) -> int:
        if self.alarm_thresholds.db_connections is not None:
            return self.alarm_thresholds.db_connections
        return int(db_connections_limit(self.db_instance_class) * 0.7)

    def warnings(self) -> tuple[str, ...]:
        """What deploys but deserves a person's attention; printed once by synth and by `make deploy TARGET=aws`."""
        if self.deletion_protection and not self.serves_https:
            return (
                f"stage {self.name!r} is protected (deletion_protection: true) but serves plain HTTP: set "
                "domain_name with hosted_zone_id and hosted_zone_name (liftoff makes the certificate), or "
                "certificate_arn, in cdk.json",
            )
        return ()


@dataclass(frozen=True)
class GithubStageAccess:
    """Which GitHub Actions jobs may take a stage's deploy role: by branch, tag or environment."""

    stage: str
    branches: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class GithubConfig:
    """The CD pipeline's trust: one GitHub repository, its OIDC `sub` formats and who deploys where."""

    repository: str  # owner/name
    access: tuple[GithubStageAccess, ...]
    # Where the deploy roles live for stages that pin no account/region of their own.
    account: str | None
    region: str | None
    # The immutable `sub` format (repositories created or renamed from 2026-07-15 on, or opted in)
    # names owner and repository by their numeric ids too: repo:owner@ID/name@ID:...
    owner_id: int | None = None
    repository_id: int | None = None
    sub_formats: tuple[str, ...] = ("classic",)
    # An account holds one provider per issuer URL; set false where one exists already.
    create_oidc_provider: bool = True

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    def stage_access(self, stage: str) -> GithubStageAccess | None:
        for access in self.access:
            if access.stage == stage:
                return access
        return None

    def target(self, stage: StageConfig) -> tuple[str, str]:
        """The account and region a stage's deploy role works in: the stage's own if pinned, else the section's."""
        return (stage.account or self.account, stage.region or self.region)

    def role_arn(self, stage: StageConfig) -> str:
        return f"arn:aws:iam::{self.target(stage)[0]}:role/{github_role_name(stage.name)}"


def github_role_name(stage: str) -> str:
    # A fixed name: the workflow must name the role before it holds any credentials to look it up.
    return f"liftoff-{stage}-github-deploy"


def operator_policy_name(stage: str) -> str:
    # A fixed name: an IAM Identity Center permission set names a customer managed policy by name.
    return f"liftoff-{stage}-operator"


@dataclass(frozen=True)
class LiftoffConfig:
    stages: tuple[StageConfig, ...]
    github: GithubConfig | None = None

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"unknown stage {name!r}; configured stages: {', '.join(self.stage_names)}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)


def check_release_tag(tag: str) -> str:
    if not isinstance(tag, str) or not re.fullmatch(RELEASE_TAG_PATTERN, tag):
        raise ConfigError(f"image tag {tag!r} is not allowed; expected {RELEASE_TAG_DESCRIPTION}")
    return tag
