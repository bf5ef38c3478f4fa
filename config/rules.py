"""Rules across a stage's keys, and against what AWS offers: Fargate sizes, region, database class,
instance type and host memory, scaling, deployment strategy, certificate, DNS names and alarms."""
from __future__ import annotations

from config.aws_facts import (
    FARGATE_CPU_MEMORY,
    POSTGRES_ENGINE_VERSION,
    db_connections_limit,
    ec2_instance_architectures,
    ec2_instance_memory_mib,
    ec2_instance_types,
    known_regions,
    rds_postgres_instance_classes,
)
from config.errors import ConfigError, fail
from config.model import HOST_RESERVED_MIB, TRAFFIC_SHIFT_DEFAULTS, TRAFFIC_SHIFT_PERCENT_RANGES, StageConfig


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
        raise fail(stage.name, "desired_count", stage.desired_count,
                   "at least 1 when max_count is set (a fleet of none sends no metric, so it never scales out)")
    if stage.compute == "ecs" and stage.deployment_strategy != "rolling" and stage.scale_on.metric == "requests_per_target":
        raise fail(stage.name, "scale_on", {stage.scale_on.metric: stage.scale_on.target},
                   f'{{"cpu_percent": N}} with deployment_strategy {stage.deployment_strategy!r}: the request count per '
                   "target names one target group, and that strategy moves traffic between two (or use rolling)")
    if stage.max_count <= stage.desired_count:
        raise fail(stage.name, "max_count", stage.max_count,
                   f"more than desired_count ({stage.desired_count}), the floor; a ceiling equal to the floor "
                   "scales nothing (remove max_count and scale_on to scale only by desired_count)")


def containers_per_activation(stage: StageConfig) -> int:
    return 2 if stage.activation == "slots" else 1


def _check_instance_type(stage: StageConfig, where: str) -> None:
    if stage.instance_type not in ec2_instance_types(stage.region):
        raise fail(stage.name, "instance_type", stage.instance_type, f"an EC2 instance type offered in {where}, like t4g.small")
    architectures = ec2_instance_architectures(stage.instance_type)
    if not architectures:
        raise fail(stage.name, "instance_type", stage.instance_type,
                   "an instance type whose memory and architecture AWS's instance data lists (the DescribeInstanceTypes "
                   "answers moto ships lack this one, as they lack most previous-generation types), like t4g.small")
    if not {"arm64", "x86_64"} & set(architectures):
        raise fail(stage.name, "instance_type", stage.instance_type,
                   "a Linux instance type (mac families run macOS on dedicated hosts only)")
    if stage.cpu_architecture not in architectures:
        raise fail(
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
        raise fail(
            stage.name, "container_memory_mib", stage.container_memory_mib,
            f"at most {fits} MiB: instance_type {stage.instance_type} has {memory} MiB and must hold {how} "
            f"plus {HOST_RESERVED_MIB} MiB for the host"
            + ("; or set activation: restart (one container, requests fail during a single host's restart), "
               "or a larger instance_type" if copies == 2 else "; or a larger instance_type"),
        )


def _check_deployment_strategy(stage: StageConfig) -> None:
    strategy = stage.deployment_strategy
    if strategy != "rolling" and stage.bake_seconds % 60:
        raise fail(stage.name, "bake_seconds", stage.bake_seconds,
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
        raise fail(stage.name, "traffic_shift_percent", stage.traffic_shift_percent,
                   f"a percentage from {low:g} to {high:g} in steps of 0.1 for deployment_strategy {strategy!r}")
    if step % 60:
        raise fail(stage.name, "traffic_shift_step_seconds", stage.traffic_shift_step_seconds,
                   "a whole number of minutes in seconds (0, 60, 120, ... 86400): ECS waits between steps in minutes")


def check_stage(stage: StageConfig) -> None:
    _check_scaling(stage)
    if stage.db_max_allocated_storage_gib < stage.db_allocated_storage_gib:
        raise fail(
            stage.name, "db_max_allocated_storage_gib", stage.db_max_allocated_storage_gib,
            f"at least db_allocated_storage_gib ({stage.db_allocated_storage_gib})",
        )
    if stage.compute == "ecs":
        allowed_memory = FARGATE_CPU_MEMORY.get(stage.task_cpu)
        if allowed_memory is None:
            raise fail(stage.name, "task_cpu", stage.task_cpu, "one of " + ", ".join(map(str, FARGATE_CPU_MEMORY)))
        if stage.task_memory_mib not in allowed_memory:
            raise fail(
                stage.name, "task_memory_mib", stage.task_memory_mib,
                f"a Fargate memory size for {stage.task_cpu} CPU units: " + ", ".join(map(str, allowed_memory)),
            )
    if stage.region is not None and stage.region not in known_regions():
        raise fail(stage.name, "region", stage.region, "a region AWS offers (cfn-lint's list: " + ", ".join(known_regions()) + ")")
    where = f"region {stage.region}" if stage.region else "any region (the stage names no region)"
    if stage.db_instance_class not in rds_postgres_instance_classes(stage.region):
        raise fail(stage.name, "db_instance_class", stage.db_instance_class,
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
        raise fail(stage.name, "alb_access_logs", True,
                   "false on a stage without account and region (the log bucket's policy names the region's load balancer account)")
    if stage.certificate_arn is not None:
        # ACM certificates are regional: a load balancer takes one from its own region only.
        certificate_region = stage.certificate_arn.split(":")[3]
        if stage.region is not None and certificate_region != stage.region:
            raise fail(stage.name, "certificate_arn", stage.certificate_arn,
                       f"a certificate in the stage's region {stage.region}; this one is in {certificate_region} "
                       f"(ACM certificates are regional: request or import one in {stage.region})")
        if certificate_region not in known_regions():
            raise fail(stage.name, "certificate_arn", stage.certificate_arn,
                       f"a certificate in a region AWS offers ({certificate_region} is not one; cfn-lint's list: {', '.join(known_regions())})")
    zone = (stage.hosted_zone_id, stage.hosted_zone_name)
    if stage.domain_name is None and zone != (None, None):
        key = "hosted_zone_id" if stage.hosted_zone_id is not None else "hosted_zone_name"
        raise fail(stage.name, key, getattr(stage, key), "no hosted zone without domain_name (the zone holds that name's records)")
    if stage.domain_name is not None:
        for key in ("hosted_zone_id", "hosted_zone_name"):
            if getattr(stage, key) is None:
                raise ConfigError(
                    f"stage {stage.name!r}: domain_name {stage.domain_name!r} needs {key} too "
                    "(the Route 53 zone where liftoff validates the certificate and adds the alias record)"
                )
        if stage.domain_name != stage.hosted_zone_name and not stage.domain_name.endswith("." + stage.hosted_zone_name):
            raise fail(stage.name, "domain_name", stage.domain_name,
                       f"the zone's name or a name under it (hosted_zone_name is {stage.hosted_zone_name!r})")
    if stage.alarm_thresholds.db_free_storage_gib >= stage.db_allocated_storage_gib:
        raise fail(stage.name, "alarm_thresholds.db_free_storage_gib", stage.alarm_thresholds.db_free_storage_gib,
                   f"less than db_allocated_storage_gib ({stage.db_allocated_storage_gib})")
    if stage.alarm_thresholds.db_connections is None:
        try:
            db_connections_limit(stage.db_instance_class)
        except ConfigError as error:
            raise ConfigError(f"stage {stage.name!r}: {error}") from None
