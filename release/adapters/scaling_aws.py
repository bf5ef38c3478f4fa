"""The thin boto3 adapter for `liftoff status`'s scaling view: EC2 Auto Scaling, Application Auto Scaling and ECS
answers in, release/pure/scaling.py's `Fleet` out. Reads only."""
from __future__ import annotations

from typing import Mapping

from release.pure.scaling import ACTIVITIES_READ, ECS_DIMENSION, Fleet, ec2_fleet, ecs_fleet, tracking_policies


def read(aws, compute: str, outputs: Mapping[str, str]) -> Fleet:
    """Read the stage's fleet through `aws.client(...)` (release.adapters.aws.Aws or a stand-in runtime)."""
    if compute == "ec2":
        name = outputs["AutoScalingGroupName"]
        autoscaling = aws.client("autoscaling")
        groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups:
            return Fleet(compute="ec2", floor=0, ceiling=0, desired=0, running=0, policies=(), last_activity=None)
        policies = autoscaling.describe_policies(AutoScalingGroupName=name).get("ScalingPolicies", [])
        activities = (autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=ACTIVITIES_READ)
                      .get("Activities", []) if tracking_policies(policies) else [])
        return ec2_fleet(groups[0], policies, activities)
    cluster, service_name = outputs["ClusterName"], outputs["EcsServiceName"]
    services = aws.client("ecs").describe_services(cluster=cluster, services=[service_name])["services"]
    service = services[0] if services else {}
    resource = f"service/{cluster}/{service.get('serviceName', service_name)}"
    scaling = aws.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[resource],
                                                ScalableDimension=ECS_DIMENSION).get("ScalableTargets", [])
    if not targets:
        return ecs_fleet(service, None, (), ())
    scope = dict(ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=ECS_DIMENSION)
    policies = scaling.describe_scaling_policies(**scope).get("ScalingPolicies", [])
    activities = scaling.describe_scaling_activities(**scope, MaxResults=ACTIVITIES_READ).get("ScalingActivities", [])
    return ecs_fleet(service, targets[0], policies, activities)
