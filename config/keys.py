"""One key at a time: each stage key's type and allowed values, the nested objects
(alarm_thresholds, rollback_window, scale_on), and a stage's settings parsed before the rules across
keys (config.rules) run."""
from __future__ import annotations

import re
from dataclasses import fields
from typing import Any, Mapping

from config.errors import ConfigError, fail, show
from config.model import (
    CANARY_KEYS,
    COMPUTE_MODES,
    CPU_ARCHITECTURES,
    EC2_ACTIVATIONS,
    ECS_DEPLOYMENT_STRATEGIES,
    MODE_ONLY_KEYS,
    SCALE_ON_TARGETS,
    AlarmThresholds,
    RollbackWindow,
    ScaleOn,
    StageConfig,
)
from config.rules import check_stage


STAGE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,20}$"
ACCOUNT_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$"
INSTANCE_CLASS_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
AMI_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"
HOSTNAME_PATTERN = r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
HOSTED_ZONE_ID_PATTERN = r"^Z[A-Z0-9]{1,31}$"
EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"

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

_ROLLBACK_WINDOW_RANGES = {"releases": (0, 50), "days": (0, 365)}

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
    # The canary is the smaller share: past half, the new version would carry the host before it is judged.
    "canary_percent": (0, 50),
    # Hosts activate one at a time, so the whole fleet's activation grows by this per host.
    "canary_seconds": (5, 600),
    "canary_min_requests": (1, 100000),
    "canary_max_error_percent": (0, 100),
    "canary_max_added_latency_ms": (1, 60000),
}
_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
PATTERNS = {
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
PATTERNS.update({
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


def check_value(stage: str, key: str, value: Any) -> None:
    if value is None and key in _OPTIONAL:
        return
    if key in _INT_RANGES:
        low, high = _INT_RANGES[key]
        if type(value) is not int or not low <= value <= high:
            raise fail(stage, key, value, f"a whole number from {low} to {high}")
    elif key in _BOOLS:
        if type(value) is not bool:
            raise fail(stage, key, value, "true or false")
    elif key in _CHOICES:
        if value not in _CHOICES[key] or type(value) is bool:
            raise fail(stage, key, value, "one of " + ", ".join(str(choice) for choice in _CHOICES[key]))
    elif key in PATTERNS:
        pattern, allowed = PATTERNS[key]
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise fail(stage, key, value, allowed)
    elif key == "traffic_shift_percent":
        # The range depends on the strategy (checked with the whole stage); here: a number in tenths.
        if type(value) not in (int, float) or not 0 < value <= 100 or abs(value * 10 - round(value * 10)) > 1e-9:
            raise fail(stage, key, value, "a percentage from 0.1 to 100 in steps of 0.1")
    elif key == "share_registry_with":
        if not isinstance(value, str):
            raise fail(stage, key, value, "the name of another stage")
    elif key == "alarm_emails":
        if not isinstance(value, list) or len(value) > 10 or len(set(map(str, value))) != len(value):
            raise fail(stage, key, value, "a list of up to 10 distinct email addresses")
        for address in value:
            if not isinstance(address, str) or not re.fullmatch(EMAIL_PATTERN, address):
                raise fail(stage, key, value, f"email addresses like ops@example.com ({show(address)} is not one)")


def parse_thresholds(stage: str, raw: Any) -> AlarmThresholds:
    allowed = tuple(f.name for f in fields(AlarmThresholds))
    if not isinstance(raw, Mapping):
        raise fail(stage, "alarm_thresholds", raw, "an object with any of " + ", ".join(allowed))
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"stage {stage!r}: unknown key 'alarm_thresholds.{unknown[0]}'; allowed keys: {', '.join(allowed)}")
    for key, value in raw.items():
        low, high = _THRESHOLD_RANGES[key]
        if type(value) is not int or not low <= value <= high:
            raise fail(stage, f"alarm_thresholds.{key}", value, f"a whole number from {low} to {high}")
    return AlarmThresholds(**raw)


def parse_rollback_window(stage: str, raw: Any) -> RollbackWindow:
    allowed = 'an object with exactly one key: {"releases": N} (the last N versions replaced, 0-50) or {"days": D} (0-365)'
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in _ROLLBACK_WINDOW_RANGES:
        raise fail(stage, "rollback_window", raw, allowed)
    (key, value), = raw.items()
    low, high = _ROLLBACK_WINDOW_RANGES[key]
    if type(value) is not int or not low <= value <= high:
        raise fail(stage, f"rollback_window.{key}", value, f"a whole number from {low} to {high}")
    return RollbackWindow(releases=value, days=None) if key == "releases" else RollbackWindow(releases=None, days=value)

def parse_scale_on(stage: str, raw: Any) -> ScaleOn:
    allowed = " or ".join(f'{{"{metric}": {low}-{high}}}' for metric, (low, high) in SCALE_ON_TARGETS.items())
    if not isinstance(raw, Mapping) or len(raw) != 1 or next(iter(raw)) not in SCALE_ON_TARGETS:
        raise fail(stage, "scale_on", raw, f"an object with exactly one target: {allowed}")
    ((metric, value),) = raw.items()
    low, high = SCALE_ON_TARGETS[metric]
    if type(value) is not int or not low <= value <= high:
        raise fail(stage, f"scale_on.{metric}", value, f"a whole number from {low} to {high}")
    return ScaleOn(metric=metric, target=value)


def _refuse_canary_without_slots(name: str, raw: Mapping) -> None:
    # Like bake_seconds with rolling: the defaults apply to every stage, a key written where it does nothing is refused.
    written = [key for key in CANARY_KEYS if key in raw]
    if not written:
        return
    key, value = written[0], raw[written[0]]
    if raw["compute"] != "ec2":
        raise fail(name, key, value,
                   f"no {key} with compute {raw['compute']!r} (the canary runs on an ec2 host's second slot; ECS shifts "
                   "traffic with its own deployment_strategy: canary or linear, with traffic_shift_percent); remove it")
    if raw.get("activation", "slots") != "slots":
        raise fail(name, key, value,
                   f"no {key} with activation {raw['activation']!r} (one container is restarted in place: there is no "
                   "second slot to give a share of the requests to); remove it, or set activation to slots")


def parse_stage(name: str, raw: Any) -> StageConfig:
    if not re.fullmatch(STAGE_NAME_PATTERN, name):
        raise ConfigError(
            f"stage name {name!r} is not allowed; expected lowercase letters, digits and dashes, "
            "starting with a letter, 2-21 characters"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"stage {name!r}: expected an object of settings, got {show(raw)}")
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
            settings[key] = parse_thresholds(name, value)
        elif key == "rollback_window":
            settings[key] = parse_rollback_window(name, value)
        elif key == "scale_on":
            settings[key] = parse_scale_on(name, value)
        else:
            check_value(name, key, value)
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
        raise fail(name, "bake_seconds", raw["bake_seconds"],
                   "no bake_seconds with deployment_strategy 'rolling' (a rolling deployment keeps no previous version "
                   "to bake: the key has no effect); remove it, or set deployment_strategy to blue_green, canary or linear")
    _refuse_canary_without_slots(name, raw)
    stage = StageConfig(name=name, **settings)
    check_stage(stage)
    return stage
