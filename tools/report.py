"""Rollout-speed and cost report, read from synthesized templates (`make report`).

Both figures are models of what AWS will do, computed from the templates that would be deployed:
- the rollout floor per wave: the waits AWS itself imposes while replacing one task or host
  (health-check interval x healthy threshold + deregistration delay + container stop timeout);
- the time to switch a fleet of `FLEET_MODEL_HOSTS` ec2 hosts (activation: slots), one host at a time, in
  waves, and a warm rollback in one wave, from per-host figures `make bench-rollout` measured;
- the always-on monthly list price of a stage, before traffic-dependent charges (LCUs, data
  transfer, log volume), at its floor (desired_count) and, for a stage that scales by traffic, at its
  ceiling (max_count): what a month at each edge costs.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from release.pure import decisions as d

HOURS_PER_MONTH = 730

# us-east-1 list prices (USD), from AWS's public price pages as summarised 2025-2026; verify before quoting.
PRICES = {
    "alb_hour": 0.0225,
    "public_ipv4_hour": 0.005,
    "nat_gateway_hour": 0.045,
    "secret_month": 0.40,
    # CloudWatch: a standard-resolution alarm is billed per metric it reads (a metric-math alarm per
    # metric in its expression); a dashboard per month (the account's first three are free; not assumed).
    "alarm_metric_month": 0.10,
    "dashboard_month": 3.00,
    "rds_gp3_gb_month": 0.115,
    "ebs_gp3_gb_month": 0.08,
    "fargate_vcpu_hour": {"ARM64": 0.03238, "X86_64": 0.04048},
    "fargate_gb_hour": {"ARM64": 0.00356, "X86_64": 0.004445},
    "rds_instance_hour": {"db.t4g.micro": 0.016, "db.t4g.small": 0.032, "db.t4g.medium": 0.065, "db.t3.micro": 0.018},
    "ec2_instance_hour": {"t4g.nano": 0.0042, "t4g.micro": 0.0084, "t4g.small": 0.0168, "t4g.medium": 0.0336, "t3.small": 0.0208},
}
# An application load balancer in two AZs holds one public address per AZ.
ALB_PUBLIC_ADDRESSES = 2
# A target-tracking policy makes two CloudWatch alarms of its own (scale out, scale in), billed like ours.
TARGET_TRACKING_ALARMS = 2


# Measured with `make bench-rollout` (README, ec2 1 host, median of 3 runs): one host's activation before the
# canary existed (the image staged: start, readiness, flip; 2026-11-28) and a warm flip through Run Command
# (2026-12-03).
HOST_SWITCH_SECONDS = 6.5
WARM_FLIP_SECONDS = 0.6
FLEET_MODEL_HOSTS = 50


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class StageReport:
    stage: str
    compute: str
    desired_count: int  # the floor
    max_count: int  # the ceiling (= desired_count for a stage scaled by hand)
    wave_seconds: int
    wave_parts: dict[str, int]
    monthly_usd: float  # at the floor
    monthly_parts: dict[str, float]
    monthly_usd_at_ceiling: float
    monthly_parts_at_ceiling: dict[str, float]
    fleet_switch: dict[str, float]  # empty where hosts have no slots (ecs, activation: restart)


def _resources(template: dict, resource_type: str) -> list[dict]:
    return [r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == resource_type]


def _one(template: dict, resource_type: str) -> dict:
    found = _resources(template, resource_type)
    if len(found) != 1:
        raise ReportError(f"expected one {resource_type}, found {len(found)}")
    return found[0]


def _int(value) -> int:
    if isinstance(value, (int, str)) and str(value).isdigit():
        return int(value)
    raise ReportError(f"cannot model a value CloudFormation resolves at deploy time: {json.dumps(value)}")


def rollout_wave(service_template: dict, *, host_stop_timeout_seconds: int | None = None) -> dict[str, int]:
    groups = _resources(service_template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    # ECS blue/green, canary and linear alternate between two groups built alike; either one's waits count.
    if not groups or any(group != groups[0] for group in groups):
        raise ReportError(f"expected one AWS::ElasticLoadBalancingV2::TargetGroup (or two alike), found {len(groups)}")
    target_group = groups[0]
    attributes = {a["Key"]: a["Value"] for a in target_group.get("TargetGroupAttributes", [])}
    tasks = _resources(service_template, "AWS::ECS::TaskDefinition")
    if tasks:
        # The container behind the load balancer is the one whose stop the rollout waits for.
        containers = tasks[0]["ContainerDefinitions"]
        serving = next((c for c in containers if c.get("PortMappings")), containers[0])
        stop_timeout = _int(serving.get("StopTimeout", 30))
    elif host_stop_timeout_seconds is not None:
        stop_timeout = host_stop_timeout_seconds
    else:
        raise ReportError("no ECS task definition and no host stop timeout given")
    return {
        "health check (interval x healthy threshold)": _int(target_group.get("HealthCheckIntervalSeconds", 30))
        * _int(target_group.get("HealthyThresholdCount", 5)),
        "deregistration delay": _int(attributes.get("deregistration_delay.timeout_seconds", 300)),
        "container stop timeout": stop_timeout,
    }


def _price(table: str, key: str) -> float:
    try:
        return PRICES[table][key]
    except KeyError:
        raise ReportError(f"no list price for {key!r} in {table}; known: {', '.join(PRICES[table])}") from None


def capacity(service_template: dict) -> tuple[int, int]:
    """The floor and the ceiling of the stage's tasks or hosts. With target tracking the template holds no
    DesiredCount/DesiredCapacity (the autoscaler owns it): the scalable target's or group's minimum and maximum."""
    services = _resources(service_template, "AWS::ECS::Service")
    groups = _resources(service_template, "AWS::AutoScaling::AutoScalingGroup")
    if services:
        targets = _resources(service_template, "AWS::ApplicationAutoScaling::ScalableTarget")
        if targets:
            return _int(targets[0]["MinCapacity"]), _int(targets[0]["MaxCapacity"])
        return (_int(services[0]["DesiredCount"]),) * 2
    if groups:
        group = groups[0]
        if _resources(service_template, "AWS::AutoScaling::ScalingPolicy"):
            return _int(group["MinSize"]), _int(group["MaxSize"])
        # Without a policy MaxSize holds the spare host a launch-template roll uses, not a ceiling.
        return (_int(group["DesiredCapacity"]),) * 2
    raise ReportError("no ECS service and no Auto Scaling group in the service template")


def running_count(service_template: dict) -> int:
    """What runs always: the floor."""
    return capacity(service_template)[0]


def alarm_metric_count(alarm: dict) -> int:
    """The metrics an alarm is billed for: one, or each metric a math expression reads."""
    if "Metrics" in alarm:
        return sum(1 for query in alarm["Metrics"] if "MetricStat" in query)
    return 1


def monthly_cost(data_template: dict, service_template: dict, *, count: int | None = None) -> dict[str, float]:
    """The monthly list price with `count` tasks or hosts running all month (default: the floor)."""
    desired_count = running_count(service_template) if count is None else count
    month = HOURS_PER_MONTH
    ipv4 = PRICES["public_ipv4_hour"] * month
    parts: dict[str, float] = {}
    albs = len(_resources(service_template, "AWS::ElasticLoadBalancingV2::LoadBalancer"))
    parts["load balancer"] = albs * PRICES["alb_hour"] * month
    parts["load balancer public IPv4"] = albs * ALB_PUBLIC_ADDRESSES * ipv4
    nats = len(_resources(data_template, "AWS::EC2::NatGateway"))
    if nats:
        parts["NAT gateways (+ addresses)"] = nats * (PRICES["nat_gateway_hour"] * month + ipv4)
    tasks = _resources(service_template, "AWS::ECS::TaskDefinition")
    if tasks:
        task = tasks[0]
        arch = task.get("RuntimePlatform", {}).get("CpuArchitecture", "X86_64")
        vcpu, gib = _int(task["Cpu"]) / 1024, _int(task["Memory"]) / 1024
        per_task = (vcpu * _price("fargate_vcpu_hour", arch) + gib * _price("fargate_gb_hour", arch)) * month
        parts[f"Fargate {desired_count} x {vcpu:g} vCPU / {gib:g} GB {arch}"] = desired_count * per_task
    for launch_template in _resources(service_template, "AWS::EC2::LaunchTemplate"):
        instance_type = launch_template["LaunchTemplateData"]["InstanceType"]
        parts[f"EC2 {desired_count} x {instance_type}"] = desired_count * _price("ec2_instance_hour", instance_type) * month
        disk_gib = sum(_int(b["Ebs"]["VolumeSize"]) for b in launch_template["LaunchTemplateData"].get("BlockDeviceMappings", []))
        parts[f"EBS gp3 {desired_count} x {disk_gib} GB"] = desired_count * disk_gib * PRICES["ebs_gp3_gb_month"]
    parts["service public IPv4"] = desired_count * ipv4
    database = _one(data_template, "AWS::RDS::DBInstance")
    copies = 2 if database.get("MultiAZ") else 1
    instance_class = database["DBInstanceClass"]
    parts[f"RDS {instance_class}{' Multi-AZ' if copies == 2 else ''}"] = copies * _price("rds_instance_hour", instance_class) * month
    parts[f"RDS gp3 {database['AllocatedStorage']} GB"] = copies * _int(database["AllocatedStorage"]) * PRICES["rds_gp3_gb_month"]
    secrets = len(_resources(data_template, "AWS::SecretsManager::Secret"))
    parts["Secrets Manager"] = secrets * PRICES["secret_month"]
    alarms = _resources(service_template, "AWS::CloudWatch::Alarm")
    if alarms:
        metrics = sum(alarm_metric_count(alarm) for alarm in alarms)
        parts[f"CloudWatch {len(alarms)} alarms ({metrics} metrics)"] = metrics * PRICES["alarm_metric_month"]
    policies = (len(_resources(service_template, "AWS::AutoScaling::ScalingPolicy"))
                + len(_resources(service_template, "AWS::ApplicationAutoScaling::ScalingPolicy")))
    if policies:
        tracking = policies * TARGET_TRACKING_ALARMS
        parts[f"CloudWatch {tracking} target-tracking alarms (made by the autoscaler)"] = tracking * PRICES["alarm_metric_month"]
    dashboards = len(_resources(service_template, "AWS::CloudWatch::Dashboard"))
    if dashboards:
        parts["CloudWatch dashboard"] = dashboards * PRICES["dashboard_month"]
    return {name: round(value, 2) for name, value in parts.items()}


def fleet_switch(*, hosts: int, canary_seconds: int) -> dict[str, float]:
    """Seconds until every host serves the new version: a host's switch takes its start and its canary (a good
    release runs the whole canary), a warm rollback only a flip. In waves, the fleet's canary host switches alone,
    then State Manager keeps a quarter of the fleet switching at once (`ActivateConcurrency 25%`; the canary's
    host is a no-op by then)."""
    per_host = HOST_SWITCH_SECONDS + canary_seconds
    at_once = d.hosts_at_once(d.IN_WAVES, hosts)
    return {
        "switch, one host at a time (ActivateConcurrency 1: no fleet canary)": round(hosts * per_host, 1),
        "switch in waves (the canary host alone, then ActivateConcurrency 25%)":
            round((1 + math.ceil((hosts - 1) / at_once)) * per_host, 1),
        "warm rollback, one host at a time (before)": round(hosts * WARM_FLIP_SECONDS, 1),
        "warm rollback, one wave (Run Command to every host at once)": WARM_FLIP_SECONDS,
    }


def stage_report(stage, cdk_out: Path) -> StageReport:
    def load(stack_name: str) -> dict:
        path = cdk_out / f"{stack_name}.template.json"
        if not path.exists():
            raise ReportError(f"{path} not found; run `make synth` first")
        return json.loads(path.read_text())

    service, data = load(stage.service_stack_name), load(stage.data_stack_name)
    wave = rollout_wave(service, host_stop_timeout_seconds=stage.stop_timeout_seconds)
    floor, ceiling = capacity(service)
    cost = monthly_cost(data, service, count=floor)
    at_ceiling = monthly_cost(data, service, count=ceiling)
    return StageReport(
        stage=stage.name,
        compute=stage.compute,
        desired_count=floor,
        max_count=ceiling,
        wave_seconds=sum(wave.values()),
        wave_parts=wave,
        monthly_usd=round(sum(cost.values()), 2),
        monthly_parts=cost,
        monthly_usd_at_ceiling=round(sum(at_ceiling.values()), 2),
        monthly_parts_at_ceiling=at_ceiling,
        fleet_switch=fleet_switch(hosts=FLEET_MODEL_HOSTS, canary_seconds=stage.canary.seconds if stage.canary.percent else 0)
        if stage.canary is not None else {},
    )


def main(argv: list[str] | None = None) -> int:
    from config import ConfigError, load_config

    parser = argparse.ArgumentParser(prog="report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--cdk-json", type=Path, default=Path("cdk.json"))
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        reports = [stage_report(stage, args.cdk_out) for stage in load_config(args.cdk_json).stages]
    except (ConfigError, ReportError) as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([report.__dict__ for report in reports], indent=2))
        return 0
    for report in reports:
        scales = report.max_count > report.desired_count
        running = f"{report.desired_count}-{report.max_count} running, scales by traffic" if scales else f"{report.desired_count} running"
        print(f"{report.stage} ({report.compute}, {running})")
        print(f"  rollout floor per wave: {report.wave_seconds} s  (AWS defaults: 480 s)")
        for name, seconds in report.wave_parts.items():
            print(f"    {seconds:>4} s  {name}")
        edge = f" at the floor ({report.desired_count})" if scales else ""
        if report.fleet_switch:
            print(f"  {FLEET_MODEL_HOSTS} hosts until all serve the new version (modelled from a host's switch "
                  f"{HOST_SWITCH_SECONDS} s + the canary, a flip {WARM_FLIP_SECONDS} s, measured):")
            for name, seconds in report.fleet_switch.items():
                print(f"    {seconds:>6.1f} s  {name}")
        print(f"  always-on list price{edge}: {report.monthly_usd:.2f} $/month")
        for name, usd in report.monthly_parts.items():
            print(f"    {usd:>7.2f} $  {name}")
        if scales:
            print(f"  at the ceiling ({report.max_count}), all month: {report.monthly_usd_at_ceiling:.2f} $/month")
            # Only what grows with the count; the rest is as at the floor.
            for name, usd in report.monthly_parts_at_ceiling.items():
                if report.monthly_parts.get(name) != usd:
                    print(f"    {usd:>7.2f} $  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
