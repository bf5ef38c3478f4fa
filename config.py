"""Stage configuration: parsed once from cdk.json context into frozen, typed objects.

This module is the only place that knows the shape of the `liftoff` context; it imports nothing
from the CDK so the release tool can read the same stages without a synth.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

CONTEXT_KEY = "liftoff"

# Release tags are immutable by policy: a semantic version or a git commit sha. `latest` and other
# moving names are refused everywhere (template parameter, release tool, host scripts) so that any
# running version can be named, found in the registry and started again.
RELEASE_TAG_PATTERN = r"^(v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?|[0-9a-f]{7,40})$"
RELEASE_TAG_DESCRIPTION = "a release tag: a semantic version like 1.4.2 or v1.4.2-rc.1, or a 7-40 character git sha"

COMPUTE_MODES = ("ecs", "ec2")
CPU_ARCHITECTURES = ("arm64", "x86_64")
FARGATE_CPU_MEMORY = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    # 8 and 16 vCPU: Linux platform 1.4.0 or later (CDK's LATEST), as the ECS API reference documents.
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}
STAGE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,20}$"
ACCOUNT_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$"
INSTANCE_CLASS_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
AMI_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"
HOSTNAME_PATTERN = r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
HOSTED_ZONE_ID_PATTERN = r"^Z[A-Z0-9]{1,31}$"
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"
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


class ConfigError(ValueError):
    """A stage configuration that cannot be deployed; the message names stage, key, value and rule."""


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


_THRESHOLD_RANGES = {
    "http_5xx_percent": (1, 100),
    "release_5xx_percent": (1, 100),
    "release_unhealthy_targets": (1, 50),
    "release_alarm_minutes": (1, 5),
    "latency_p99_ms": (10, 60000),
    "db_cpu_percent": (1, 100),
    "db_free_storage_gib": (1, 65536),
    "db_connections": (1, 5000),
}


@dataclass(frozen=True)
class RollbackWindow:
    """How far back `liftoff rollback` must stay possible on the schema (cdk.json `rollback_window`)."""

    releases: int | None = 2
    days: int | None = None


_ROLLBACK_WINDOW_RANGES = {"releases": (0, 50), "days": (0, 365)}


@dataclass(frozen=True)
class ScaleOn:
    """What target tracking holds steady (cdk.json `scale_on`: one of SCALE_ON_TARGETS and its value)."""

    metric: str
    target: int


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


GITHUB_REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
# Names GitHub allows for branches, tags and environments, with `*` for a wildcard (IAM StringLike).
# The characters IAM or the `sub` claim would read specially (`:`, `?`, spaces) are refused.
GITHUB_REF_PATTERN = r"^[A-Za-z0-9._/*-]{1,100}$"
GITHUB_SUB_FORMATS = ("classic", "immutable")


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


# Allowed values per key: (type, check, what is allowed). Types are exact: JSON true is not a count.
MAX_DESIRED_COUNT = 50
_INT_RANGES = {
    "desired_count": (0, MAX_DESIRED_COUNT),
    "task_cpu": (256, 16384),
    "task_memory_mib": (512, 122880),
    "db_allocated_storage_gib": (20, 65536),
    "db_max_allocated_storage_gib": (20, 65536),
    "db_backup_retention_days": (1, 35),
    "container_port": (1024, 65535),
    "drain_seconds": (0, 3600),
    # The host unit allows systemd 120 s to stop the container; stay below it with room for docker.
    "stop_timeout_seconds": (2, 110),
    "container_memory_mib": (128, 65536),
    # ECS blue/green bake time is at most 1440 minutes; a warm window of an hour is plenty for a flip.
    "bake_seconds": (0, 3600),
    # ECS waits between steps in whole minutes, at most 1440.
    "traffic_shift_step_seconds": (0, 86400),
    "max_count": (1, MAX_DESIRED_COUNT),
}
_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
_PATTERNS = {
    "account": (ACCOUNT_PATTERN, "a 12-digit AWS account id"),
    "region": (REGION_PATTERN, "an AWS region name like eu-west-1"),
    "certificate_arn": (CERTIFICATE_ARN_PATTERN, "an ACM certificate ARN"),
    "db_instance_class": (INSTANCE_CLASS_PATTERN, "an instance class without the db. prefix, like t4g.micro"),
    "instance_type": (INSTANCE_CLASS_PATTERN, "an EC2 instance type like t4g.small"),
    "ami_id": (AMI_ID_PATTERN, "an AMI id like ami-0123456789abcdef0"),
    "health_check_path": (r"^/[A-Za-z0-9/_.-]*$", "an absolute URL path like /healthz"),
}
_CHOICES = {
    "compute": COMPUTE_MODES,
    "cpu_architecture": CPU_ARCHITECTURES,
    "log_retention_days": _LOG_RETENTION_DAYS,
    "activation": EC2_ACTIVATIONS,
    "deployment_strategy": ECS_DEPLOYMENT_STRATEGIES,
}
_PATTERNS.update({
    "domain_name": (HOSTNAME_PATTERN, "a lowercase DNS name like app.example.com (no trailing dot)"),
    "hosted_zone_name": (HOSTNAME_PATTERN, "the hosted zone's lowercase DNS name like example.com (no trailing dot)"),
    "hosted_zone_id": (HOSTED_ZONE_ID_PATTERN, "a Route 53 hosted zone id like Z0123456789ABCDEFGHIJ"),
})
_BOOLS = ("db_multi_az", "deletion_protection", "alb_access_logs", "container_insights", "enhanced_monitoring")
_OPTIONAL = (
    "account", "region", "certificate_arn", "ami_id", "share_registry_with", "traffic_shift_percent",
    "domain_name", "hosted_zone_id", "hosted_zone_name", "max_count",
)
_REQUIRED = ("compute", "desired_count")
_KEYS = tuple(f.name for f in fields(StageConfig) if f.name != "name")


def _fail(stage: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"stage {stage!r}: {key} = {_show(value)} is not allowed; expected {allowed}")


def _check_value(stage: str, key: str, value: Any) -> None:
    if value is None and key in _OPTIONAL:
        return
    if key in _INT_RANGES:
        low, high = _INT_RANGES[key]
        if type(value) is not int or not low <= value <= high:
            raise _fail(stage, key, value, f"a whole number from {low} to {high}")
    elif key in _BOOLS:
        if type(value) is not bool:
            raise _fail(stage, key, value, "true or false")
    elif key in _CHOICES:
        if value not in _CHOICES[key] or type(value) is bool:
            raise _fail(stage, key, value, "one of " + ", ".join(str(choice) for choice in _CHOICES[key]))
    elif key in _PATTERNS:
        pattern, allowed = _PATTERNS[key]
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise _fail(stage, key, value, allowed)
    elif key == "traffic_shift_percent":
        # The range depends on the strategy (checked with the whole stage); here: a number in tenths.
        if type(value) not in (int, float) or not 0 < value <= 100 or abs(value * 10 - round(value * 10)) > 1e-9:
            raise _fail(stage, key, value, "a percentage from 0.1 to 100 in steps of 0.1")
    elif key == "share_registry_with":
        if not isinstance(value, str):
            raise _fail(stage, key, value, "the name of another stage")
    elif key == "alarm_emails":
        if not isinstance(value, list) or len(value) > 10 or len(set(map(str, value))) != len(value):
            raise _fail(stage, key, value, "a list of up to 10 distinct email addresses")
        for address in value:
            if not isinstance(address, str) or not re.fullmatch(EMAIL_PATTERN, address):
                raise _fail(stage, key, value, f"email addresses like ops@example.com ({_show(address)} is not one)")


def _parse_thresholds(stage: str, raw: Any) -> AlarmThresholds:
    allowed = tuple(f.name for f in fields(AlarmThresholds))
    if not isinstance(raw, Mapping):
        raise _fail(stage, "alarm_thresholds", raw, "an object with any of " + ", ".join(allowed))
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key 'alarm_thresholds.{unknown[0]}'; allowed keys: {', '.join(allowed)}")
    for key, value in raw.items():
        low, high = _THRESHOLD_RANGES[key]
        if type(value) is not int or not low <= value <= high:
            raise _fail(stage, f"alarm_thresholds.{key}", value, f"a whole number from {low} to {high}")
    return AlarmThresholds(**raw)


def _parse_rollback_window(stage: str, raw: Any) -> RollbackWindow:
    allowed = 'an object with exactly one key: {"releases": N} (the last N versions replaced, 0-50) or {"days": D} (0-365)'
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in _ROLLBACK_WINDOW_RANGES:
        raise _fail(stage, "rollback_window", raw, allowed)
    (key, value), = raw.items()
    low, high = _ROLLBACK_WINDOW_RANGES[key]
    if type(value) is not int or not low <= value <= high:
        raise _fail(stage, f"rollback_window.{key}", value, f"a whole number from {low} to {high}")
    return RollbackWindow(releases=value, days=None) if key == "releases" else RollbackWindow(releases=None, days=value)

def _parse_scale_on(stage: str, raw: Any) -> ScaleOn:
    allowed = " or ".join(f'{{"{metric}": {low}-{high}}}' for metric, (low, high) in SCALE_ON_TARGETS.items())
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in SCALE_ON_TARGETS:
        raise _fail(stage, "scale_on", raw, f"an object with exactly one target: {allowed}")
    ((metric, value),) = raw.items()
    low, high = SCALE_ON_TARGETS[metric]
    if type(value) is not int or not low <= value <= high:
        raise _fail(stage, f"scale_on.{metric}", value, f"a whole number from {low} to {high}")
    return ScaleOn(metric=metric, target=value)


def _check_scaling(stage: StageConfig) -> None:
    if (stage.max_count is None) != (stage.scale_on is None):
        missing = "scale_on" if stage.scale_on is None else "max_count"
        raise ConfigError(
            f"stage {stage.name!r}: dynamic scaling needs both max_count and scale_on; {missing} is missing "
            f"(add it, or remove {'max_count' if missing == 'scale_on' else 'scale_on'} to scale only by desired_count)"
        )
    if stage.max_count is None:
        return
    if stage.desired_count < 1:
        raise _fail(stage.name, "desired_count", stage.desired_count,
                    "at least 1 when max_count is set (a fleet of none sends no metric, so it never scales out)")
    if stage.compute == "ecs" and stage.deployment_strategy != "rolling" and stage.scale_on.metric == "requests_per_target":
        raise _fail(stage.name, "scale_on", {stage.scale_on.metric: stage.scale_on.target},
                    f'{{"cpu_percent": N}} with deployment_strategy {stage.deployment_strategy!r}: the request count per '
                    "target names one target group, and that strategy moves traffic between two (or use rolling)")
    if stage.max_count <= stage.desired_count:
        raise _fail(stage.name, "max_count", stage.max_count,
                    f"more than desired_count ({stage.desired_count}), the floor; a ceiling equal to the floor "
                    "scales nothing (remove max_count and scale_on to scale only by desired_count)")


def _as_the_app_sees_it(value: Any) -> Any:
    """The context as app.py receives it at synth. The CDK CLI reads cdk.json with JavaScript, which
    has one number type, so `2.0` arrives as 2; and the context reaches Python through jsii, which
    drops every key whose value is null. `python -m config`, the release tool and the tests read
    cdk.json with Python; normalising here makes every reader judge a value the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _as_the_app_sees_it(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_as_the_app_sees_it(item) for item in value]
    return value


def _parse_stage(name: str, raw: Any) -> StageConfig:
    if not re.fullmatch(STAGE_NAME_PATTERN, name):
        raise ConfigError(
            f"stage name {name!r} is not allowed; expected lowercase letters, digits and dashes, "
            "starting with a letter, 2-21 characters"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"stage {name!r}: expected an object of settings, got {_show(raw)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"stage {name!r}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_KEYS))}"
        )
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise ConfigError(f"stage {name!r}: missing required key {missing[0]!r}")
    settings = dict(raw)
    for key, value in raw.items():
        if key == "alarm_thresholds":
            settings[key] = _parse_thresholds(name, value)
        elif key == "rollback_window":
            settings[key] = _parse_rollback_window(name, value)
        elif key == "scale_on":
            settings[key] = _parse_scale_on(name, value)
        else:
            _check_value(name, key, value)
    if "alarm_emails" in settings:
        settings["alarm_emails"] = tuple(settings["alarm_emails"])
    compute = raw["compute"]
    for key in sorted(set(raw) & set(MODE_ONLY_KEYS)):
        if MODE_ONLY_KEYS[key] != compute:
            raise ConfigError(
                f"stage {name!r}: {key} has no effect with compute {compute!r}; only compute "
                f"{MODE_ONLY_KEYS[key]!r} uses it (remove the key, or set compute to {MODE_ONLY_KEYS[key]!r})"
            )
    if compute == "ecs" and "bake_seconds" in raw and raw.get("deployment_strategy", "rolling") == "rolling":
        raise _fail(name, "bake_seconds", raw["bake_seconds"],
                    "no bake_seconds with deployment_strategy 'rolling' (a rolling deployment keeps no previous version "
                    "to bake: the key has no effect); remove it, or set deployment_strategy to blue_green, canary or linear")
    stage = StageConfig(name=name, **settings)
    _check_stage(stage)
    return stage


@lru_cache(maxsize=None)
def _package_data(distribution: str, package: str, *parts: str) -> Any:
    # Read a data file a package ships without importing the package (cfn-lint's import alone costs a
    # second on every read of the config).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{distribution} is not installed; it ships the AWS data the config is checked against "
                          "(make setup, or pip install -r requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def _cfn_lint_data(extension: str, file: str) -> Any:
    # cfn-lint ships AWS's per-region instance lists and its rules' data (refreshed with each release).
    return _package_data("cfn-lint", "cfnlint", "data", "schemas", "extensions", extension, file)


def ec2_instance_types(region: str | None) -> frozenset[str]:
    """EC2 instance types offered in `region` (every region's when None), as cfn-lint ships them."""
    data = {name: value["enum"] for name, value in _cfn_lint_data("aws_ec2_instance", "instancetype_enum.json").items()
            if isinstance(value, Mapping) and value.get("enum")}
    if region is None:
        return frozenset(t for types in data.values() for t in types)
    return frozenset(data.get(region, ()))


@lru_cache(maxsize=None)
def _ec2_instance_facts() -> dict[str, tuple[int, tuple[str, ...]]]:
    # moto ships AWS's own DescribeInstanceTypes answers, refreshed from the API with each release:
    # memory and CPU architectures per type. Neither botocore (the EC2 API model only) nor cfn-lint
    # (names per region) has memory.
    return {name: (info["MemoryInfo"]["SizeInMiB"], tuple(info["ProcessorInfo"]["SupportedArchitectures"]))
            for name, info in _package_data("moto", "moto", "ec2", "resources", "instance_types.json.gz").items()}


def ec2_instance_memory_mib(instance_type: str) -> int | None:
    """Memory of an EC2 instance type as AWS describes it, or None for a type the data does not list."""
    facts = _ec2_instance_facts().get(instance_type)
    return facts[0] if facts else None


def ec2_instance_architectures(instance_type: str) -> tuple[str, ...]:
    """CPU architectures of an EC2 instance type as AWS names them (arm64, x86_64, i386, x86_64_mac,
    arm64_mac); () for a type the data does not list."""
    facts = _ec2_instance_facts().get(instance_type)
    return facts[1] if facts else ()


# The engine components/database.py deploys (a test holds the two equal): cfn-lint checks the instance
# class against this very version (E3062), so config does too.
POSTGRES_ENGINE_VERSION = "17.6"


def rds_postgres_instance_classes(region: str | None, engine_version: str = POSTGRES_ENGINE_VERSION) -> frozenset[str]:
    """RDS for PostgreSQL instance classes (without the db. prefix) that `engine_version` runs on in
    `region` (in any region when None): cfn-lint's two rules on them, E3025 (per region) and E3062
    (per engine version), from the data cfn-lint itself reads."""
    regional: dict[str, set[str]] = {}
    for name, schema in _cfn_lint_data("aws_rds_dbinstance", "dbinstanceclass_enum.json").items():
        for rule in schema.get("allOf", ()):
            condition = rule["if"]["properties"]
            if condition.get("Engine", {}).get("const") == "postgres" and condition.get("LicenseModel") is False:
                regional.setdefault(name, set()).update(rule["then"]["properties"]["DBInstanceClass"]["enum"])
    classes = set().union(*regional.values()) if region is None else regional.get(region, set())
    # E3062: every rule whose condition matches the engine and version applies (allOf).
    for rule in _cfn_lint_data("aws_rds_dbinstance", "db_instance_class.json")["allOf"]:
        condition = rule["if"]["properties"]
        pattern = condition.get("EngineVersion", {}).get("pattern")
        if condition.get("Engine", {}).get("const") == "postgres" and pattern and re.search(pattern, engine_version):
            classes = classes & set(rule["then"]["properties"]["DBInstanceClass"]["enum"])
    return frozenset(c.removeprefix("db.") for c in classes)


def known_regions() -> tuple[str, ...]:
    data = _cfn_lint_data("aws_ec2_instance", "instancetype_enum.json")
    return tuple(sorted(name for name, value in data.items() if isinstance(value, Mapping) and value.get("enum")))


def db_connections_limit(instance_class: str) -> int:
    """RDS for PostgreSQL's default max_connections, LEAST(memory / 9531392, 5000), from the class's
    nominal memory: a db. class has the memory of the EC2 type of the same name. RDS reserves some
    memory first, so the real limit is a little lower; the default alarm threshold (70 %) leaves room
    for that."""
    mib = ec2_instance_memory_mib(instance_class)
    if mib is None:
        raise ConfigError(
            f"cannot estimate the connection limit of db_instance_class {instance_class!r} (AWS's instance data "
            "lists no EC2 type of that name to take its memory from); set alarm_thresholds.db_connections explicitly"
        )
    return min(int(mib * 1024**2 / 9531392), 5000)


def containers_per_activation(stage: StageConfig) -> int:
    return 2 if stage.activation == "slots" else 1


def _check_instance_type(stage: StageConfig, where: str) -> None:
    if stage.instance_type not in ec2_instance_types(stage.region):
        raise _fail(stage.name, "instance_type", stage.instance_type, f"an EC2 instance type offered in {where}, like t4g.small")
    architectures = ec2_instance_architectures(stage.instance_type)
    if not architectures:
        raise _fail(stage.name, "instance_type", stage.instance_type,
                    "an instance type whose memory and architecture AWS's instance data lists (the DescribeInstanceTypes "
                    "answers moto ships lack this one, as they lack most previous-generation types), like t4g.small")
    if not {"arm64", "x86_64"} & set(architectures):
        raise _fail(stage.name, "instance_type", stage.instance_type,
                    "a Linux instance type (mac families run macOS on dedicated hosts only)")
    if stage.cpu_architecture not in architectures:
        raise _fail(
            stage.name, "instance_type", stage.instance_type,
            f"an instance type built for cpu_architecture {stage.cpu_architecture!r}"
            + (" (a Graviton type such as t4g.small)" if stage.cpu_architecture == "arm64" else " (such as t3.small)"),
        )
    _check_host_memory(stage)


def _check_host_memory(stage: StageConfig) -> None:
    memory = ec2_instance_memory_mib(stage.instance_type)
    copies = containers_per_activation(stage)
    needed = copies * stage.container_memory_mib + HOST_RESERVED_MIB
    if needed > memory:
        how = ("two containers side by side (activation: slots)" if copies == 2 else "the container")
        fits = (memory - HOST_RESERVED_MIB) // copies
        raise _fail(
            stage.name, "container_memory_mib", stage.container_memory_mib,
            f"at most {fits} MiB: instance_type {stage.instance_type} has {memory} MiB and must hold {how} "
            f"plus {HOST_RESERVED_MIB} MiB for the host"
            + ("; or set activation: restart (one container, requests fail during a single host's restart), "
               "or a larger instance_type" if copies == 2 else "; or a larger instance_type"),
        )


def _check_deployment_strategy(stage: StageConfig) -> None:
    strategy = stage.deployment_strategy
    if strategy != "rolling" and stage.bake_seconds % 60:
        raise _fail(stage.name, "bake_seconds", stage.bake_seconds,
                    f"a whole number of minutes in seconds (60, 120, ... 3600): ECS bakes deployment_strategy {strategy!r} in minutes")
    for key in ("traffic_shift_percent", "traffic_shift_step_seconds"):
        if getattr(stage, key) is not None and strategy not in TRAFFIC_SHIFT_DEFAULTS:
            raise ConfigError(
                f"stage {stage.name!r}: {key} has no effect with deployment_strategy {strategy!r}; only "
                f"{' and '.join(TRAFFIC_SHIFT_DEFAULTS)} shift traffic in steps (remove the key, or set deployment_strategy)"
            )
    if strategy not in TRAFFIC_SHIFT_DEFAULTS:
        return
    percent, step = stage.traffic_shift
    low, high = TRAFFIC_SHIFT_PERCENT_RANGES[strategy]
    if not low <= percent <= high:
        raise _fail(stage.name, "traffic_shift_percent", stage.traffic_shift_percent,
                    f"a percentage from {low:g} to {high:g} in steps of 0.1 for deployment_strategy {strategy!r}")
    if step % 60:
        raise _fail(stage.name, "traffic_shift_step_seconds", stage.traffic_shift_step_seconds,
                    "a whole number of minutes in seconds (0, 60, 120, ... 86400): ECS waits between steps in minutes")


def _check_stage(stage: StageConfig) -> None:
    _check_scaling(stage)
    if stage.db_max_allocated_storage_gib < stage.db_allocated_storage_gib:
        raise _fail(
            stage.name, "db_max_allocated_storage_gib", stage.db_max_allocated_storage_gib,
            f"at least db_allocated_storage_gib ({stage.db_allocated_storage_gib})",
        )
    if stage.compute == "ecs":
        allowed_memory = FARGATE_CPU_MEMORY.get(stage.task_cpu)
        if allowed_memory is None:
            raise _fail(stage.name, "task_cpu", stage.task_cpu, "one of " + ", ".join(map(str, FARGATE_CPU_MEMORY)))
        if stage.task_memory_mib not in allowed_memory:
            raise _fail(
                stage.name, "task_memory_mib", stage.task_memory_mib,
                f"a Fargate memory size for {stage.task_cpu} CPU units: " + ", ".join(map(str, allowed_memory)),
            )
    if stage.region is not None and stage.region not in known_regions():
        raise _fail(stage.name, "region", stage.region, "a region AWS offers (cfn-lint's list: " + ", ".join(known_regions()) + ")")
    where = f"region {stage.region}" if stage.region else "any region (the stage names no region)"
    if stage.db_instance_class not in rds_postgres_instance_classes(stage.region):
        raise _fail(stage.name, "db_instance_class", stage.db_instance_class,
                    f"an instance class RDS for PostgreSQL {POSTGRES_ENGINE_VERSION} offers in {where}, like t4g.micro "
                    "(cfn-lint's data, rules E3025 and E3062)")
    if stage.compute == "ec2":
        _check_instance_type(stage, where)
    if stage.compute == "ecs":
        _check_deployment_strategy(stage)
    if (stage.account is None) != (stage.region is None):
        raise ConfigError(
            f"stage {stage.name!r}: account and region go together; set both for a pinned environment "
            "or neither for an environment-agnostic one"
        )
    if stage.alb_access_logs and stage.region is None:
        raise _fail(stage.name, "alb_access_logs", True,
                    "false on a stage without account and region (the log bucket's policy names the region's load balancer account)")
    if stage.certificate_arn is not None:
        # ACM certificates are regional: a load balancer takes one from its own region only.
        certificate_region = stage.certificate_arn.split(":")[3]
        if stage.region is not None and certificate_region != stage.region:
            raise _fail(stage.name, "certificate_arn", stage.certificate_arn,
                        f"a certificate in the stage's region {stage.region}; this one is in {certificate_region} "
                        f"(ACM certificates are regional: request or import one in {stage.region})")
        if certificate_region not in known_regions():
            raise _fail(stage.name, "certificate_arn", stage.certificate_arn,
                        f"a certificate in a region AWS offers ({certificate_region} is not one; cfn-lint's list: {', '.join(known_regions())})")
    zone = (stage.hosted_zone_id, stage.hosted_zone_name)
    if stage.domain_name is None and zone != (None, None):
        key = "hosted_zone_id" if stage.hosted_zone_id is not None else "hosted_zone_name"
        raise _fail(stage.name, key, getattr(stage, key), "no hosted zone without domain_name (the zone holds that name's records)")
    if stage.domain_name is not None:
        for key in ("hosted_zone_id", "hosted_zone_name"):
            if getattr(stage, key) is None:
                raise ConfigError(
                    f"stage {stage.name!r}: domain_name {stage.domain_name!r} needs {key} too "
                    "(the Route 53 zone where liftoff validates the certificate and adds the alias record)"
                )
        if stage.domain_name != stage.hosted_zone_name and not stage.domain_name.endswith("." + stage.hosted_zone_name):
            raise _fail(stage.name, "domain_name", stage.domain_name,
                        f"the zone's name or a name under it (hosted_zone_name is {stage.hosted_zone_name!r})")
    if stage.alarm_thresholds.db_free_storage_gib >= stage.db_allocated_storage_gib:
        raise _fail(stage.name, "alarm_thresholds.db_free_storage_gib", stage.alarm_thresholds.db_free_storage_gib,
                    f"less than db_allocated_storage_gib ({stage.db_allocated_storage_gib})")
    if stage.alarm_thresholds.db_connections is None:
        try:
            db_connections_limit(stage.db_instance_class)
        except ConfigError as error:
            raise ConfigError(f"stage {stage.name!r}: {error}") from None


def parse_config(context: Any) -> LiftoffConfig:
    """Validate the whole `liftoff` context before anything is built; raise ConfigError on the first problem."""
    if not isinstance(context, Mapping):
        raise ConfigError(f"cdk.json context {CONTEXT_KEY!r} must be an object with a 'stages' key")
    context = _as_the_app_sees_it(context)
    unknown = sorted(set(context) - {"stages", "github"})
    if unknown:
        raise ConfigError(f"context {CONTEXT_KEY!r}: unknown key {unknown[0]!r}; allowed keys: github, stages")
    raw_stages = context.get("stages")
    if not isinstance(raw_stages, Mapping) or not raw_stages:
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'stages' must be a non-empty object of stage name to settings")
    stages = tuple(_parse_stage(name, raw) for name, raw in raw_stages.items())
    by_name = {stage.name: stage for stage in stages}
    for stage in stages:
        if stage.share_registry_with is None:
            continue
        owner = by_name.get(stage.share_registry_with)
        if owner is None or owner.name == stage.name or owner.share_registry_with is not None:
            allowed = [s.name for s in stages if s.name != stage.name and s.share_registry_with is None]
            raise _fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                "another stage that owns its registry: " + (", ".join(allowed) or "none configured"),
            )
        if (owner.account, owner.region) != (stage.account, stage.region):
            raise _fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                f"a stage in the same account and region (stage {owner.name!r} is in "
                f"{owner.account or 'any'}/{owner.region or 'any'})",
            )
    github = _parse_github(context["github"], stages) if context.get("github") is not None else None
    return LiftoffConfig(stages=stages, github=github)


_GITHUB_KEYS = ("repository", "account", "region", "owner_id", "repository_id", "sub_formats", "create_oidc_provider", "stages")
_GITHUB_ACCESS_KEYS = ("branches", "tags", "environments")


def _github_fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"github: {key} = {_show(value)} is not allowed; expected {allowed}")


def _parse_github(raw: Any, stages: tuple[StageConfig, ...]) -> GithubConfig | None:
    """The opt-in CD section, validated whole; `repository: null` (as shipped) means no GitHub OIDC stack is built."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'github' must be an object (or null to leave the CD stack out), got {_show(raw)}")
    unknown = sorted(set(raw) - set(_GITHUB_KEYS))
    if unknown:
        raise ConfigError(f"github: unknown key {unknown[0]!r}; allowed keys: {', '.join(_GITHUB_KEYS)}")
    if "stages" not in raw:
        raise ConfigError("github: missing required key 'stages'")
    # The CDK CLI drops context keys whose value is null before the app sees them, so the shipped
    # `"repository": null` arrives as no key at all: both mean off.
    repository = raw.get("repository")
    if repository is not None and (not isinstance(repository, str) or not re.fullmatch(GITHUB_REPOSITORY_PATTERN, repository)):
        raise _github_fail("repository", repository, "OWNER/NAME of the GitHub repository whose workflows deploy, like my-org/my-service, or null (off)")
    for key, (pattern, allowed) in (("account", _PATTERNS["account"]), ("region", _PATTERNS["region"])):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(pattern, value)):
            raise _github_fail(key, value, allowed)
    if raw.get("region") is not None and raw["region"] not in known_regions():
        raise _github_fail("region", raw["region"], "a region AWS offers (cfn-lint's list: " + ", ".join(known_regions()) + ")")
    ids = {}
    for key in ("owner_id", "repository_id"):
        value = raw.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            raise _github_fail(key, value, "GitHub's numeric id (a positive whole number; `gh api repos/OWNER/NAME` shows both), or null")
        ids[key] = value
    sub_formats = raw.get("sub_formats", ["classic"])
    if (not isinstance(sub_formats, list) or not sub_formats or len(set(sub_formats)) != len(sub_formats)
            or any(value not in GITHUB_SUB_FORMATS for value in sub_formats)):
        raise _github_fail("sub_formats", sub_formats, "a non-empty list of distinct values from: " + ", ".join(GITHUB_SUB_FORMATS))
    if "immutable" in sub_formats and None in ids.values():
        missing = "owner_id" if ids["owner_id"] is None else "repository_id"
        raise _github_fail(missing, None, "GitHub's numeric id: the immutable sub format (repo:OWNER@ID/NAME@ID:...) names both ids")
    create_provider = raw.get("create_oidc_provider", True)
    if type(create_provider) is not bool:
        raise _github_fail("create_oidc_provider", create_provider, "true or false")
    raw_access = raw["stages"]
    if not isinstance(raw_access, Mapping) or not raw_access:
        raise _github_fail("stages", raw_access, "a non-empty object of stage name to {branches, tags, environments}")
    names = [stage.name for stage in stages]
    access = []
    for stage_name, rules in raw_access.items():
        if stage_name not in names:
            raise _github_fail("stages", stage_name, "a configured stage: " + ", ".join(names))
        if not isinstance(rules, Mapping):
            raise _github_fail(f"stages.{stage_name}", rules, "an object with branches, tags and/or environments")
        unknown = sorted(set(rules) - set(_GITHUB_ACCESS_KEYS))
        if unknown:
            raise ConfigError(f"github: stages.{stage_name}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_GITHUB_ACCESS_KEYS)}")
        values = {}
        for key in _GITHUB_ACCESS_KEYS:
            listed = rules.get(key, [])
            if not isinstance(listed, list) or any(not isinstance(v, str) or not re.fullmatch(GITHUB_REF_PATTERN, v) for v in listed):
                raise _github_fail(f"stages.{stage_name}.{key}", listed,
                                   "a list of names (letters, digits, . _ / - and * as a wildcard), like [\"main\"] or [\"v*\"]")
            if "*" in listed:
                raise _github_fail(f"stages.{stage_name}.{key}", listed, "names that do not match everything: a lone * would trust every job")
            values[key] = tuple(listed)
        if not any(values.values()):
            raise _github_fail(f"stages.{stage_name}", rules, "at least one branch, tag or environment allowed to deploy")
        access.append(GithubStageAccess(stage=stage_name, **values))
    if repository is None:
        return None
    by_name = {stage.name: stage for stage in stages}
    for rule in access:
        stage = by_name[rule.stage]
        for key, pinned in (("account", stage.account), ("region", stage.region)):
            if pinned is None and raw.get(key) is None:
                raise _github_fail(key, None, f"the AWS {key} of stage {stage.name!r}'s deploy role "
                                   f"({_PATTERNS[key][1]}), since the stage pins no {key} of its own")
    return GithubConfig(repository=repository, access=tuple(access), account=raw.get("account"), region=raw.get("region"), owner_id=ids["owner_id"], repository_id=ids["repository_id"],
                        sub_formats=tuple(sub_formats), create_oidc_provider=create_provider)


def load_config(cdk_json: Path) -> LiftoffConfig:
    """Read the stages straight from cdk.json, for tools that run without a synth."""
    return parse_config(_read_context(cdk_json))


def parse_cli_context(context: Any, cdk_json: Path) -> LiftoffConfig:
    """app.py's reader: the context as the CDK CLI hands it to the app, judged as load_config judges
    cdk.json. The CLI reads cdk.json with JavaScript, where a number beyond a double (1e400) becomes
    Infinity, and passes the context on as JSON, where Infinity becomes null, which jsii drops: the
    app would see no key at all (a default, or "missing required key"). Such numbers are put back
    from cdk.json, so synth refuses them with the very message `python -m config` gives."""
    try:
        written = _read_context(cdk_json)
    except ConfigError:
        return parse_config(context)  # not the CLI's cdk.json (an app built in-process): nothing was lost
    return parse_config(_put_back_lost_numbers(context, written))


class _BeyondDouble:
    """A number in cdk.json that a double cannot hold, kept as written: every check refuses it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _read_number(text: str) -> Any:
    # Python reads 1e400 as inf and a 400-digit integer exactly; JavaScript makes both Infinity, and
    # rounds integers beyond 2**53. Read them as the CLI does, but keep what cannot be a number at all.
    as_double = float(text)
    if math.isinf(as_double):
        return _BeyondDouble(text)
    if re.fullmatch(r"-?[0-9]+", text):
        exact = int(text)
        return exact if abs(exact) <= 2**53 else int(as_double)
    return as_double


def _read_context(cdk_json: Path) -> Any:
    try:
        document = json.loads(cdk_json.read_text(), parse_constant=_refuse_constant, parse_int=_read_number, parse_float=_read_number)
        return document["context"][CONTEXT_KEY]
    except FileNotFoundError:
        raise ConfigError(f"{cdk_json} not found; run from the liftoff checkout") from None
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{cdk_json}: no readable context.{CONTEXT_KEY} ({error})") from None


def _put_back_lost_numbers(received: Any, written: Any) -> Any:
    if isinstance(written, _BeyondDouble):
        return written if received is None else received  # a value given on the command line (-c) wins
    if isinstance(written, Mapping) and isinstance(received, Mapping):
        merged = dict(received)
        for key, value in written.items():
            restored = _put_back_lost_numbers(received.get(key), value)
            if restored is not None:
                merged[key] = restored
        return merged
    if isinstance(written, list) and isinstance(received, list) and len(written) == len(received):
        return [_put_back_lost_numbers(r, w) for r, w in zip(received, written)]
    return received


def _show(value: Any) -> str:
    """A value as cdk.json writes it, numbers beyond a double included."""
    text = json.dumps(value, default=lambda number: f"\x00{number.text}\x00")
    return re.sub(r'"\\u0000(.*?)\\u0000"', r"\1", text)


def _refuse_constant(name: str):
    # JavaScript's JSON (the CDK CLI's reader) refuses NaN and Infinity; so does this one.
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def check_release_tag(tag: str) -> str:
    if not isinstance(tag, str) or not re.fullmatch(RELEASE_TAG_PATTERN, tag):
        raise ConfigError(f"image tag {tag!r} is not allowed; expected {RELEASE_TAG_DESCRIPTION}")
    return tag


def main(argv: list[str] | None = None) -> int:
    """`python -m config [STAGE]`: validate cdk.json (and a stage name) without a synth; print the stage's stacks."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(Path("cdk.json"))
        stages = [config.stage(args[0])] if args else list(config.stages)
    except ConfigError as error:
        print(f"liftoff config: {error}", file=sys.stderr)
        return 2
    for stage in stages:
        running = f"{stage.desired_count}-{stage.max_count} running" if stage.scales else f"{stage.desired_count} running"
        print(f"{stage.name}: {stage.compute}, {running}; stacks "
              f"{stage.registry_stack_name} {stage.data_stack_name} {stage.service_stack_name}")
        for warning in stage.warnings():
            print(f"liftoff config: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
