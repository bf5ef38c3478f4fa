"""`liftoff status`'s scaling view: pure functions directly, the boto3 adapter on moto.

moto models neither target-tracking resource in CloudFormation (AWS::AutoScaling::ScalingPolicy and
AWS::ApplicationAutoScaling::* are skipped), so the tests put the policy through the API, as the
stack would on AWS. What moto cannot show is marked xfail(strict=True) and listed in docs/local-emulator.md.
"""
from __future__ import annotations

import copy
import datetime
import io
import json

import boto3
import pytest

from config import parse_config
from release.pure import scaling
from release.adapters import scaling_aws
from release.adapters.aws import Aws
from release.cli import main
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import CDK_JSON, cdk_context
from tests.release.helpers import EmulatedRuntime

NOW = datetime.datetime(2026, 11, 28, 5, 0, tzinfo=datetime.timezone.utc)


def activity(minutes_ago: int, description: str, status: str = "Successful") -> dict:
    return {"ActivityId": description, "StartTime": NOW - datetime.timedelta(minutes=minutes_ago), "StatusCode": status,
            "Description": description, "Cause": f"cause of {description}"}


CPU_POLICY = {"PolicyType": "TargetTrackingScaling", "PolicyName": "cpu",
              "TargetTrackingConfiguration": {"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                                              "TargetValue": 60.0}}
REQUESTS_POLICY = {"PolicyType": "TargetTrackingScaling", "PolicyName": "requests",
                   "TargetTrackingScalingPolicyConfiguration": {
                       "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": "x"},
                       "TargetValue": 200.0, "ScaleInCooldown": 300, "ScaleOutCooldown": 60}}


def group(minimum: int, desired: int, maximum: int, in_service: int) -> dict:
    instances = [{"InstanceId": f"i-{n}", "LifecycleState": "InService"} for n in range(in_service)]
    instances.append({"InstanceId": "i-pending", "LifecycleState": "Pending"})
    return {"MinSize": minimum, "DesiredCapacity": desired, "MaxSize": maximum, "Instances": instances}


# --- pure functions ----------------------------------------------------------------------------------

def test_last_activity_is_the_newest_whatever_the_order():
    found = scaling.last_activity([activity(30, "older"), activity(2, "newest", "InProgress"), activity(10, "middle")])
    assert (found.description, found.status, found.cause) == ("newest", "InProgress", "cause of newest")
    assert found.at == "2026-11-28T04:58:00+00:00"
    assert scaling.last_activity([]) is None


def test_policy_summary_reads_both_apis_and_ignores_other_kinds():
    assert scaling.policy_summary(CPU_POLICY) == "ASGAverageCPUUtilization 60"
    assert scaling.policy_summary(REQUESTS_POLICY) == "ALBRequestCountPerTarget 200"
    assert scaling.policy_summary({"PolicyType": "SimpleScaling", "ScalingAdjustment": 1}) is None


def test_an_ec2_group_with_a_policy_scales_between_min_and_max():
    fleet = scaling.ec2_fleet(group(2, 4, 5, in_service=3), [CPU_POLICY], [activity(1, "Launching a new EC2 instance: i-3")])
    assert (fleet.floor, fleet.ceiling, fleet.desired, fleet.running, fleet.scales) == (2, 5, 4, 3, True)
    assert fleet.last_activity.description == "Launching a new EC2 instance: i-3"


def test_without_a_policy_the_groups_spare_is_not_a_ceiling():
    fleet = scaling.ec2_fleet(group(2, 2, 3, in_service=2), [], [])
    assert (fleet.floor, fleet.ceiling, fleet.scales) == (2, 2, False)


def test_an_ecs_service_reads_its_scalable_target_or_its_own_count():
    service = {"desiredCount": 3, "runningCount": 3}
    fleet = scaling.ecs_fleet(service, {"MinCapacity": 2, "MaxCapacity": 6}, [REQUESTS_POLICY], [activity(5, "Setting desired count to 3.")])
    assert (fleet.floor, fleet.ceiling, fleet.desired, fleet.running, fleet.scales) == (2, 6, 3, 3, True)
    by_hand = scaling.ecs_fleet({"desiredCount": 1, "runningCount": 1}, None, [], [])
    assert (by_hand.floor, by_hand.ceiling, by_hand.scales, by_hand.last_activity) == (1, 1, False, None)


@pytest.mark.parametrize(("fleet", "configured", "expected"), [
    # in step with cdk.json, not at an edge: nothing to say
    (dict(floor=2, ceiling=5, desired=3, running=3, policies=("p",)), (2, 5, True), []),
    (dict(floor=2, ceiling=2, desired=2, running=2, policies=()), (2, 2, False), []),
    # cdk.json turned scaling on, not deployed yet
    (dict(floor=2, ceiling=2, desired=2, running=2, policies=()), (2, 5, True), ["cdk.json sets max_count 5 but the stack has no scaling policy"]),
    # cdk.json turned it off
    (dict(floor=2, ceiling=5, desired=3, running=3, policies=("p",)), (2, 2, False), ["the stack scales but cdk.json sets no max_count"]),
    # a floor or ceiling edit not deployed
    (dict(floor=2, ceiling=5, desired=3, running=3, policies=("p",)), (3, 5, True), ["cdk.json says 3-5 hosts, the stack 2-5"]),
    # pinned at the ceiling; and hosts still starting
    (dict(floor=2, ceiling=5, desired=5, running=4, policies=("p",)), (2, 5, True),
     ["at the ceiling (5 hosts): the autoscaler can add no more; raise max_count", "4 of 5 hosts in service"]),
])
def test_notes_say_what_deserves_a_look(fleet, configured, expected):
    floor, ceiling, scales = configured
    found = scaling.notes(scaling.Fleet(compute="ec2", last_activity=None, **fleet),
                          configured_floor=floor, configured_ceiling=ceiling, configured_scales=scales)
    assert len(found) == len(expected)
    for note, start in zip(found, expected):
        assert start in note


def test_lines_show_floor_ceiling_count_and_last_activity():
    fleet = scaling.ec2_fleet(group(2, 4, 5, in_service=3), [CPU_POLICY], [activity(1, "Launching a new EC2 instance: i-3")])
    text = "\n".join(scaling.lines(fleet, ["4 of 5 hosts in service"]))
    assert "scaling  floor 2, ceiling 5, now 4 hosts (3 in service); target tracking: ASGAverageCPUUtilization 60" in text
    assert "last scaling activity 2026-11-28T04:59:00+00:00 Successful: Launching a new EC2 instance: i-3" in text
    assert "note: 4 of 5 hosts in service" in text
    by_hand = "\n".join(scaling.lines(scaling.ec2_fleet(group(2, 2, 3, in_service=2), [], [])))
    assert "scaling  by hand: 2 hosts (2 in service); no autoscaling (max_count unset)" in by_hand
    assert "last scaling activity" not in by_hand


# --- the adapter on moto -----------------------------------------------------------------------------

SCALING = {"production": {"max_count": 5, "scale_on": {"cpu_percent": 60}},
           # null counts as absent: the shipped staging's bake_seconds goes, as config refuses it with rolling.
           "staging": {"max_count": 4, "scale_on": {"requests_per_target": 200}, "deployment_strategy": "rolling", "bake_seconds": None}}


@pytest.fixture(scope="module")
def scaling_assembly(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    for name, settings in SCALING.items():
        context["stages"][name].update(settings)
    return synth_variant(context).outdir, parse_config(context)


@pytest.fixture
def scaling_production(emulated_aws, scaling_assembly):
    assembly, config = scaling_assembly
    deploy_stage(assembly, config.stage("staging"), image_tag="1.0.0", push_tags=("1.0.0",))
    return deploy_stage(assembly, config.stage("production"), image_tag="1.0.0")


def track_cpu(group_name: str) -> None:
    # What CloudFormation's AWS::AutoScaling::ScalingPolicy does on AWS (moto skips the resource).
    boto3.client("autoscaling").put_scaling_policy(
        AutoScalingGroupName=group_name, PolicyName="ScaleOnCpu", PolicyType="TargetTrackingScaling",
        TargetTrackingConfiguration={"PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
                                     "TargetValue": 60.0})


def test_the_adapter_reads_an_ec2_groups_floor_ceiling_and_count(scaling_production):
    outputs = scaling_production.service_outputs
    fleet = scaling_aws.read(Aws(region=scaling_production.region), "ec2", outputs)
    # As created: no DesiredCapacity in the template, so the group starts at its floor.
    assert (fleet.floor, fleet.desired, fleet.scales) == (2, 2, False)
    track_cpu(outputs["AutoScalingGroupName"])
    boto3.client("autoscaling").set_desired_capacity(AutoScalingGroupName=outputs["AutoScalingGroupName"], DesiredCapacity=4)
    fleet = scaling_aws.read(Aws(region=scaling_production.region), "ec2", outputs)
    assert (fleet.floor, fleet.ceiling, fleet.desired, fleet.policies) == (2, 5, 4, ("ASGAverageCPUUtilization 60",))


def test_status_shows_the_scaling_lines(scaling_production, scaling_config_file):
    outputs = scaling_production.service_outputs
    track_cpu(outputs["AutoScalingGroupName"])
    boto3.client("autoscaling").set_desired_capacity(AutoScalingGroupName=outputs["AutoScalingGroupName"], DesiredCapacity=5)
    code, out, err = status(scaling_production, scaling_config_file, "--json")
    assert code == 0, err
    view = json.loads(out)["scaling"]
    assert (view["floor"], view["ceiling"], view["desired"], view["scales"]) == (2, 5, 5, True)
    assert any(note.startswith("at the ceiling (5 hosts)") for note in view["notes"])
    code, out, err = status(scaling_production, scaling_config_file)
    assert code == 0, err
    assert "scaling  floor 2, ceiling 5, now 5 hosts" in out and "target tracking: ASGAverageCPUUtilization 60" in out
    assert "last scaling activity" in out


def test_status_of_a_stage_scaled_by_hand(released_staging):
    run = released_staging.run("status")
    assert run.code == 0
    assert "scaling  by hand: 1 tasks" in run.out
    assert released_staging.run("status", "--json").json["scaling"]["scales"] is False


@pytest.mark.xfail(strict=True, reason="moto's EC2 Auto Scaling DescribeScalingActivities always answers an empty list: "
                   "the last scaling activity is shown from the pure function's tests only")
def test_a_capacity_change_is_the_last_scaling_activity(scaling_production):
    outputs = scaling_production.service_outputs
    track_cpu(outputs["AutoScalingGroupName"])
    boto3.client("autoscaling").set_desired_capacity(AutoScalingGroupName=outputs["AutoScalingGroupName"], DesiredCapacity=4)
    fleet = scaling_aws.read(Aws(region=scaling_production.region), "ec2", outputs)
    assert fleet.last_activity is not None


@pytest.mark.xfail(strict=True, reason="moto's Application Auto Scaling has no DescribeScalingActivities: an ecs "
                   "service's scaling view is shown from the pure functions' tests only")
def test_the_adapter_reads_an_ecs_services_scalable_target(emulated_aws, scaling_assembly):
    assembly, config = scaling_assembly
    staging = deploy_stage(assembly, config.stage("staging"), image_tag="1.0.0", push_tags=("1.0.0",))
    outputs = staging.service_outputs
    resource = f"service/{outputs['ClusterName']}/{outputs['EcsServiceName']}"
    client = boto3.client("application-autoscaling")
    client.register_scalable_target(ServiceNamespace="ecs", ResourceId=resource, ScalableDimension=scaling.ECS_DIMENSION,
                                    MinCapacity=1, MaxCapacity=4)
    client.put_scaling_policy(PolicyName="ScaleOnRequests", ServiceNamespace="ecs", ResourceId=resource,
                              ScalableDimension=scaling.ECS_DIMENSION, PolicyType="TargetTrackingScaling",
                              TargetTrackingScalingPolicyConfiguration={
                                  "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"},
                                  "TargetValue": 60.0})
    fleet = scaling_aws.read(Aws(region=staging.region), "ecs", outputs)
    assert (fleet.floor, fleet.ceiling, fleet.scales) == (1, 4, True)


@pytest.fixture
def scaling_config_file(tmp_path):
    document = json.loads(CDK_JSON.read_text())
    document["context"]["liftoff"]["stages"]["production"].update(SCALING["production"])
    document["context"]["liftoff"]["stages"]["staging"].update(SCALING["staging"])
    path = tmp_path / "cdk.json"
    path.write_text(json.dumps(document))
    return path


def status(emulated, config_file, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["status", *argv, "--stage", emulated.stage.name, "--config", str(config_file)],
                stdin=io.StringIO(""), stdout=out, stderr=err, aws=EmulatedRuntime(emulated))
    return code, out.getvalue(), err.getvalue()


def test_a_floor_deploy_keeps_the_count_the_autoscaler_chose(scaling_production, synth_variant):
    """cdk.json's desired_count 2 -> 3 while the autoscaler has the group at 4: the update leaves 4."""
    outputs = scaling_production.service_outputs
    autoscaling = boto3.client("autoscaling")
    autoscaling.set_desired_capacity(AutoScalingGroupName=outputs["AutoScalingGroupName"], DesiredCapacity=4)
    context = copy.deepcopy(cdk_context()["liftoff"])
    for name, settings in SCALING.items():
        context["stages"][name].update(settings)
    context["stages"]["production"]["desired_count"] = 3
    from local.adapter import adapt_template

    # The service stack holds no secret of its own (it imports the data stack's ARN).
    raised, _ = adapt_template("production-service", synth_variant(context).templates["production-service"], secret_arns={})
    parameters = scaling_production.service_parameters()
    after = scaling_production.update_service(image_tag=parameters["ImageTag"], staged_image_tag=parameters["StagedImageTag"], template=raised)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[after["AutoScalingGroupName"]])["AutoScalingGroups"]
    assert (group["MinSize"], group["DesiredCapacity"], group["MaxSize"]) == (3, 4, 5)
