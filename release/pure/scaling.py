"""Dynamic scaling as `liftoff status` shows it: the floor, the ceiling, the current count, the last activity.

An ec2 stage's numbers come from EC2 Auto Scaling (the group's MinSize/MaxSize/DesiredCapacity, its
target-tracking policies and scaling activities); an ecs stage's from Application Auto Scaling (the
service's scalable target, policies and activities) and ECS (the service's desired and running counts).
Pure and tested directly; release/adapters/scaling_aws.py reads the answers through boto3.

Scaling is not a release: nothing here changes anything. The floor is `desired_count` in cdk.json,
the ceiling `max_count`; between them the autoscaler decides (docs/scaling.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

ACTIVITIES_READ = 10
ECS_DIMENSION = "ecs:service:DesiredCount"


@dataclass(frozen=True)
class Activity:
    at: str  # when it started, ISO 8601
    status: str  # Successful, InProgress, Failed, ...
    description: str
    cause: str


@dataclass(frozen=True)
class Fleet:
    compute: str
    floor: int
    ceiling: int
    desired: int  # what the group/service is asked to run now (the autoscaler's choice when it scales)
    running: int  # in service now
    policies: tuple[str, ...]  # target-tracking policies, "METRIC TARGET"
    last_activity: Activity | None

    @property
    def scales(self) -> bool:
        return bool(self.policies)


def _time(value: Any) -> str:
    return value.isoformat(timespec="seconds") if hasattr(value, "isoformat") else str(value or "")


def last_activity(activities: Iterable[Mapping]) -> Activity | None:
    """The newest scaling activity (both APIs answer newest first; sorted here anyway)."""
    ordered = sorted(activities, key=lambda a: _time(a.get("StartTime")), reverse=True)
    if not ordered:
        return None
    newest = ordered[0]
    return Activity(at=_time(newest.get("StartTime")), status=newest.get("StatusCode", ""),
                    description=newest.get("Description", ""), cause=newest.get("Cause", ""))


def policy_summary(policy: Mapping) -> str | None:
    """'METRIC TARGET' of a target-tracking policy (either API's shape), None for any other kind."""
    tracking = policy.get("TargetTrackingConfiguration") or policy.get("TargetTrackingScalingPolicyConfiguration")
    if policy.get("PolicyType") != "TargetTrackingScaling" or not tracking:
        return None
    metric = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType", "custom metric")
    target = tracking.get("TargetValue")
    return f"{metric} {target:g}" if isinstance(target, (int, float)) else metric


def tracking_policies(policies: Iterable[Mapping]) -> tuple[str, ...]:
    return tuple(summary for summary in map(policy_summary, policies) if summary)


def ec2_fleet(group: Mapping, policies: Iterable[Mapping], activities: Iterable[Mapping]) -> Fleet:
    """From DescribeAutoScalingGroups' group, DescribePolicies and DescribeScalingActivities."""
    tracked = tracking_policies(policies)
    desired = int(group.get("DesiredCapacity", 0))
    running = sum(1 for i in group.get("Instances", []) if i.get("LifecycleState") == "InService")
    # Without a policy the group's MaxSize is the spare a launch-template roll uses, not a ceiling.
    ceiling = int(group.get("MaxSize", desired)) if tracked else desired
    return Fleet(compute="ec2", floor=int(group.get("MinSize", desired)), ceiling=ceiling, desired=desired,
                 running=running, policies=tracked, last_activity=last_activity(activities))


def ecs_fleet(service: Mapping, target: Mapping | None, policies: Iterable[Mapping], activities: Iterable[Mapping]) -> Fleet:
    """From DescribeServices' service and, when the service is a scalable target, Application Auto Scaling's answers."""
    desired = int(service.get("desiredCount", 0))
    running = int(service.get("runningCount", 0))
    if target is None:
        return Fleet(compute="ecs", floor=desired, ceiling=desired, desired=desired, running=running, policies=(),
                     last_activity=None)
    return Fleet(compute="ecs", floor=int(target["MinCapacity"]), ceiling=int(target["MaxCapacity"]), desired=desired,
                 running=running, policies=tracking_policies(policies), last_activity=last_activity(activities))


def notes(fleet: Fleet, *, configured_floor: int, configured_ceiling: int, configured_scales: bool) -> list[str]:
    """What deserves a look, with what to do: cdk.json and the stack disagree, or the fleet is pinned at an edge."""
    unit = "hosts" if fleet.compute == "ec2" else "tasks"
    found = []
    if configured_scales and not fleet.scales:
        found.append(f"cdk.json sets max_count {configured_ceiling} but the stack has no scaling policy: deploy the "
                     "stage (`cdk deploy`) to turn scaling on")
    elif fleet.scales and not configured_scales:
        found.append("the stack scales but cdk.json sets no max_count: the next `cdk deploy` turns scaling off "
                     "and fixes the count at desired_count")
    elif (fleet.floor, fleet.ceiling) != (configured_floor, configured_ceiling):
        found.append(f"cdk.json says {configured_floor}-{configured_ceiling} {unit}, the stack {fleet.floor}-{fleet.ceiling}: "
                     "`cdk deploy` the stage to apply it")
    if fleet.scales and fleet.desired >= fleet.ceiling:
        found.append(f"at the ceiling ({fleet.ceiling} {unit}): the autoscaler can add no more; raise max_count in "
                     "cdk.json if the load is real")
    if fleet.running < fleet.desired:
        found.append(f"{fleet.running} of {fleet.desired} {unit} in service: the rest are starting or being replaced")
    return found


def lines(fleet: Fleet, found_notes: Iterable[str] = ()) -> list[str]:
    """`liftoff status`'s scaling lines."""
    unit = "hosts" if fleet.compute == "ec2" else "tasks"
    if fleet.scales:
        head = (f"  scaling  floor {fleet.floor}, ceiling {fleet.ceiling}, now {fleet.desired} {unit} "
                f"({fleet.running} in service); target tracking: {', '.join(fleet.policies)}")
    else:
        head = f"  scaling  by hand: {fleet.desired} {unit} ({fleet.running} in service); no autoscaling (max_count unset)"
    out = [head]
    if fleet.scales:
        activity = fleet.last_activity
        out.append(f"  last scaling activity {activity.at} {activity.status}: {activity.description}"
                   if activity else "  last scaling activity: none recorded")
    out.extend(f"  note: {note}" for note in found_notes)
    return out


def as_json(fleet: Fleet, found_notes: Iterable[str] = ()) -> dict:
    return {**asdict(fleet), "scales": fleet.scales, "notes": list(found_notes)}
