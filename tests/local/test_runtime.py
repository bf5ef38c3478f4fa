"""The emulator's stand-in runtime (local/runtime.py) reports the stack's own record, and only that."""
from __future__ import annotations

import io

from local.runtime import EmulatedRuntime
from release.cli import main
from tests.helpers.synth import CDK_JSON


def _runtime(emulated, **kwargs) -> EmulatedRuntime:
    return EmulatedRuntime(service_stack=emulated.stack_names["service"], registry_stack=emulated.stack_names["registry"],
                           region=emulated.region, **kwargs)


def _liftoff(runtime, *argv, stage):
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, "--stage", stage, "--config", str(CDK_JSON)], stdin=io.StringIO(""), stdout=out, stderr=err, aws=runtime)
    return code, out.getvalue(), err.getvalue()


def test_ecs_tasks_and_targets_follow_the_active_tag_the_stack_recorded(emulated_staging):
    runtime = _runtime(emulated_staging)
    outputs = emulated_staging.service_outputs
    uri = emulated_staging.outputs[emulated_staging.stack_names["registry"]]["RepositoryUri"]
    running = runtime.ecs_running(outputs["ClusterName"], outputs["EcsServiceName"])
    assert {task["image"] for task in running["tasks"]} == {f"{uri}:1.0.0"}
    emulated_staging.update_service(image_tag="1.1.0", staged_image_tag="1.1.0")
    running = runtime.ecs_running(outputs["ClusterName"], outputs["EcsServiceName"])
    # As many tasks as moto's service wants, each RUNNING the new tag; one healthy target each.
    assert running["desired_count"] == emulated_staging.stage.desired_count == len(running["tasks"])
    assert running["task_definition_image"] == f"{uri}:1.1.0"
    assert all(task == {**task, "status": "RUNNING", "image": f"{uri}:1.1.0"} for task in running["tasks"])
    assert [t["state"] for t in runtime.target_health(outputs["TargetGroupArn"])] == ["healthy"] * running["desired_count"]
    unhealthy = _runtime(emulated_staging, healthy=False).target_health(outputs["TargetGroupArn"])
    assert {t["state"] for t in unhealthy} == {"unhealthy"}


def test_an_ec2_stage_reports_its_hosts_through_the_stand_in(deploy_emulated_stage):
    """`liftoff status` on the ec2 stage: the adapter keeps ActivateAssociationId (as a placeholder)."""
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0",))
    production = deploy_emulated_stage("production", image_tag="1.0.0")
    runtime = _runtime(production)
    code, out, err = _liftoff(runtime, "status", stage="production")
    assert code == 0, err
    instances = production.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[production.service_outputs["AutoScalingGroupName"]])["AutoScalingGroups"][0]["Instances"]
    assert len(instances) == production.stage.desired_count
    for instance in instances:
        assert f"host {instance['InstanceId']} InService Healthy (activate association: 1.0.0 Success)" in out
    assert f"targets  {len(instances)} healthy" in out
    # The association's tag is the stack's record: it follows an update of ImageTag.
    production.update_service(image_tag="1.1.0", staged_image_tag="1.1.0")
    ec2 = runtime.ec2_running(production.service_outputs["AutoScalingGroupName"], production.service_outputs["ActivateAssociationId"])
    assert (ec2["association_parameter"], ec2["association_status"], ec2["desired_count"]) == ("1.1.0", "Success", len(instances))
