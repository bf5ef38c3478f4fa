"""Dynamic scaling and fail over, per compute mode, with scaling on (max_count + scale_on) and off.

Pins what makes releases and scaling not fight: with scaling on, neither the Auto Scaling group's
DesiredCapacity nor the ECS service's DesiredCount is in the template, so a `cdk deploy` (a floor
change included) never resets the count the autoscaler chose. docs/scaling.md explains each setting.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.ec2_service import BOOT_SIGNAL_TIMEOUT, HEALTH_CHECK_GRACE_SECONDS, HOST_WARMUP_SECONDS
from components.ecs_service import SCALE_IN_COOLDOWN_SECONDS, SCALE_OUT_COOLDOWN_SECONDS
from tests.helpers.synth import cdk_context


def of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def only(template: dict, resource_type: str) -> tuple[str, dict]:
    found = of_type(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def scaling_context(*, staging: dict, production: dict) -> dict:
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["staging"].update(staging)
    context["stages"]["production"].update(production)
    if context["stages"]["staging"]["deployment_strategy"] == "rolling":
        del context["stages"]["staging"]["bake_seconds"]  # rolling has no bake: config refuses the key
    return context


# staging (ecs) on requests, production (ec2) on CPU; and the other way round.
REQUESTS_ECS_CPU_EC2 = dict(staging={"desired_count": 2, "max_count": 6, "scale_on": {"requests_per_target": 200},
                                     "deployment_strategy": "rolling"},
                            production={"desired_count": 2, "max_count": 5, "scale_on": {"cpu_percent": 60}})
CPU_ECS_REQUESTS_EC2 = dict(staging={"desired_count": 1, "max_count": 4, "scale_on": {"cpu_percent": 55}},
                            production={"desired_count": 1, "max_count": 3, "scale_on": {"requests_per_target": 300}})


@pytest.fixture(scope="module")
def scaling(synth_variant):
    return synth_variant(scaling_context(**REQUESTS_ECS_CPU_EC2))


@pytest.fixture(scope="module")
def scaling_swapped(synth_variant):
    return synth_variant(scaling_context(**CPU_ECS_REQUESTS_EC2))


# --- scaling off (the shipped stages) --------------------------------------------------------------

def test_scaling_off_keeps_the_count_in_the_template_and_no_policy(shipped):
    _, group = only(shipped.templates["production-service"], "AWS::AutoScaling::AutoScalingGroup")
    assert (group["Properties"]["MinSize"], group["Properties"]["DesiredCapacity"], group["Properties"]["MaxSize"]) == ("2", "2", "3")
    assert "DefaultInstanceWarmup" not in group["Properties"]
    _, service = only(shipped.templates["staging-service"], "AWS::ECS::Service")
    assert service["Properties"]["DesiredCount"] == 1
    for stack in ("staging-service", "production-service"):
        template = shipped.templates[stack]
        for kind in ("AWS::AutoScaling::ScalingPolicy", "AWS::ApplicationAutoScaling::ScalableTarget",
                     "AWS::ApplicationAutoScaling::ScalingPolicy"):
            assert not of_type(template, kind), (stack, kind)


# --- ecs: Application Auto Scaling target tracking ---------------------------------------------------

def test_ecs_scaling_leaves_desired_count_to_the_autoscaler(scaling):
    template = scaling.templates["staging-service"]
    service_id, service = only(template, "AWS::ECS::Service")
    # Absent, CloudFormation keeps the running count on update (a new service starts with one task).
    assert "DesiredCount" not in service["Properties"]
    _, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    properties = target["Properties"]
    assert (properties["MinCapacity"], properties["MaxCapacity"]) == (2, 6)
    assert properties["ScalableDimension"] == "ecs:service:DesiredCount" and properties["ServiceNamespace"] == "ecs"
    assert {"Fn::GetAtt": [service_id, "Name"]} in properties["ResourceId"]["Fn::Join"][1]


def test_ecs_tracks_requests_per_target_with_cooldowns_that_do_not_flap(scaling):
    template = scaling.templates["staging-service"]
    target_id, _ = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    _, policy = only(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    properties = policy["Properties"]
    assert properties["PolicyType"] == "TargetTrackingScaling"
    assert properties["ScalingTargetId"] == {"Ref": target_id}
    tracking = properties["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 200
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    target_group, _ = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    label = json.dumps(tracking["PredefinedMetricSpecification"]["ResourceLabel"])
    assert target_group in label
    # Out fast, in slowly: a removed task is not needed again the next minute.
    assert (tracking["ScaleOutCooldown"], tracking["ScaleInCooldown"]) == (SCALE_OUT_COOLDOWN_SECONDS, SCALE_IN_COOLDOWN_SECONDS)
    assert SCALE_IN_COOLDOWN_SECONDS >= 5 * SCALE_OUT_COOLDOWN_SECONDS
    assert "DisableScaleIn" not in tracking or tracking["DisableScaleIn"] is False


def test_ecs_tracks_cpu(scaling_swapped):
    template = scaling_swapped.templates["staging-service"]
    _, target = only(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 4)
    _, policy = only(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}
    assert tracking["TargetValue"] == 55
    assert (tracking["ScaleOutCooldown"], tracking["ScaleInCooldown"]) == (SCALE_OUT_COOLDOWN_SECONDS, SCALE_IN_COOLDOWN_SECONDS)


# --- ec2: target tracking on the Auto Scaling group --------------------------------------------------

def test_ec2_scaling_leaves_desired_capacity_to_the_autoscaler(scaling):
    _, group = only(scaling.templates["production-service"], "AWS::AutoScaling::AutoScalingGroup")
    properties = group["Properties"]
    # Absent, CloudFormation leaves the group's desired capacity alone on update.
    assert "DesiredCapacity" not in properties
    assert (properties["MinSize"], properties["MaxSize"]) == ("2", "5")
    assert properties["DefaultInstanceWarmup"] == HOST_WARMUP_SECONDS
    # Created at the floor: CloudFormation waits for the floor's hosts to signal.
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == 2
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MinInstancesInService"] == 2
    # A launch-template roll and the autoscaler do not act at once: its alarms are held during the roll.
    assert "AlarmNotification" in rolling["SuspendProcesses"]


def test_ec2_tracks_cpu(scaling):
    template = scaling.templates["production-service"]
    group_id, _ = only(template, "AWS::AutoScaling::AutoScalingGroup")
    _, policy = only(template, "AWS::AutoScaling::ScalingPolicy")
    properties = policy["Properties"]
    assert properties["AutoScalingGroupName"] == {"Ref": group_id}
    assert properties["PolicyType"] == "TargetTrackingScaling"
    assert properties["TargetTrackingConfiguration"] == {
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 60}


def test_ec2_tracks_requests_per_target(scaling_swapped):
    template = scaling_swapped.templates["production-service"]
    _, group = only(template, "AWS::AutoScaling::AutoScalingGroup")
    assert (group["Properties"]["MinSize"], group["Properties"]["MaxSize"]) == ("1", "3")
    _, policy = only(template, "AWS::AutoScaling::ScalingPolicy")
    tracking = policy["Properties"]["TargetTrackingConfiguration"]
    assert tracking["TargetValue"] == 300
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    target_group, _ = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert target_group in json.dumps(tracking["PredefinedMetricSpecification"]["ResourceLabel"])


def test_ec2_scale_in_drains_through_the_target_group_not_a_lifecycle_hook(scaling):
    # The group deregisters a leaving host from its target group and waits out the deregistration
    # delay (drain_seconds) before it terminates it; nothing else on the host outlives it.
    template = scaling.templates["production-service"]
    _, group = only(template, "AWS::AutoScaling::AutoScalingGroup")
    target_group_id, target_group = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["Properties"]["TargetGroupARNs"] == [{"Ref": target_group_id}]
    attributes = {a["Key"]: a["Value"] for a in target_group["Properties"]["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == str(cdk_context()["liftoff"]["stages"]["production"]["drain_seconds"])
    assert not of_type(template, "AWS::AutoScaling::LifecycleHook")
    assert "LifecycleHookSpecificationList" not in group["Properties"]


def test_new_hosts_boot_the_active_version_and_pull_the_staged_one(scaling):
    template = scaling.templates["production-service"]
    group_id, _ = only(template, "AWS::AutoScaling::AutoScalingGroup")
    # liftoff-boot reads the active tag from the parameter CloudFormation keeps equal to ImageTag.
    parameters = of_type(template, "AWS::SSM::Parameter")
    active = next(k for k, v in parameters.items() if v["Properties"]["Value"] == {"Ref": "ImageTag"})
    _, launch_template = only(template, "AWS::EC2::LaunchTemplate")
    user_data = json.dumps(launch_template["Properties"]["LaunchTemplateData"]["UserData"])
    assert "ACTIVE_TAG_PARAMETER=" in user_data and json.dumps({"Ref": active}) in user_data
    assert "/opt/liftoff/bin/liftoff-boot" in user_data
    # Both gates target the group by its tag: State Manager runs an association on every instance that
    # joins the group later, so a new host also pulls the staged version (and runs the activate gate,
    # a no-op on a host already serving the active tag).
    for _, association in of_type(template, "AWS::SSM::Association").items():
        assert association["Properties"]["Targets"] == [{"Key": "tag:aws:autoscaling:groupName", "Values": [{"Ref": group_id}]}]


# --- fail over ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["shipped", "scaling"])
def test_a_host_failing_the_load_balancers_checks_is_replaced(request, variant):
    template = request.getfixturevalue(variant).templates["production-service"]
    _, group = only(template, "AWS::AutoScaling::AutoScalingGroup")
    assert group["Properties"]["HealthCheckType"] == "ELB"
    assert group["Properties"]["HealthCheckGracePeriod"] == HEALTH_CHECK_GRACE_SECONDS
    # The grace covers a boot; a host still failing when CloudFormation would give up on it is broken.
    assert HEALTH_CHECK_GRACE_SECONDS < BOOT_SIGNAL_TIMEOUT.to_seconds()


@pytest.mark.parametrize("variant", ["shipped", "scaling"])
def test_a_task_failing_the_load_balancers_checks_is_replaced_on_the_active_version(request, variant):
    template = request.getfixturevalue(variant).templates["staging-service"]
    _, service = only(template, "AWS::ECS::Service")
    task_definition_id, task_definition = only(template, "AWS::ECS::TaskDefinition")
    properties = service["Properties"]
    # ECS replaces a task the target group finds unhealthy (after the grace), from the service's task
    # definition: the one whose image is the active ImageTag.
    assert properties["HealthCheckGracePeriodSeconds"] == 15
    assert properties["LoadBalancers"][0]["ContainerName"] == "app"
    assert properties["TaskDefinition"] == {"Ref": task_definition_id}
    image = json.dumps(task_definition["Properties"]["ContainerDefinitions"][1]["Image"])
    assert '{"Ref": "ImageTag"}' in image


# --- a deploy that changes only the floor ------------------------------------------------------------

def test_a_floor_change_with_scaling_on_changes_only_minimums(scaling, synth_variant):
    raised = copy.deepcopy(REQUESTS_ECS_CPU_EC2)
    raised["staging"]["desired_count"] = 3
    raised["production"]["desired_count"] = 3
    after = synth_variant(scaling_context(**raised))
    from tests.stacks.test_service_stack_ec2 import differences

    before_ec2, after_ec2 = scaling.templates["production-service"], after.templates["production-service"]
    group, _ = only(before_ec2, "AWS::AutoScaling::AutoScalingGroup")
    changed = differences(before_ec2, after_ec2) - {("Resources", "CDKMetadata", "Metadata", "aws:cdk:path")}
    # No DesiredCapacity appears: the running count stays where the autoscaler put it (MinSize rising
    # above it would lift it to the new floor, never lower it), and neither gate re-runs.
    assert changed == {
        ("Resources", group, "Properties", "MinSize"),
        ("Resources", group, "CreationPolicy", "ResourceSignal", "Count"),
        ("Resources", group, "UpdatePolicy", "AutoScalingRollingUpdate", "MinInstancesInService"),
    }
    assert "DesiredCapacity" not in after_ec2["Resources"][group]["Properties"]

    before_ecs, after_ecs = scaling.templates["staging-service"], after.templates["staging-service"]
    target, _ = only(before_ecs, "AWS::ApplicationAutoScaling::ScalableTarget")
    changed = differences(before_ecs, after_ecs) - {("Resources", "CDKMetadata", "Metadata", "aws:cdk:path")}
    assert changed == {("Resources", target, "Properties", "MinCapacity")}


def test_scaling_variants_pass_cdk_nag_and_cfn_lint(scaling, scaling_swapped):
    for synthesis in (scaling, scaling_swapped):
        report = json.loads((synthesis.outdir / "validation-report.json").read_text())["pluginReports"][0]
        assert report["conclusion"] == "success" and report["violations"] == []
    templates = [str(synthesis.outdir / f"{stack}.template.json")
                 for synthesis in (scaling, scaling_swapped) for stack in ("staging-service", "production-service")]
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *templates],
                            capture_output=True, text=True)
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr
