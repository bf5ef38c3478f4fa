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


def test_host_reports_are_the_real_ones_first_and_a_labelled_stand_in_for_the_rest(deploy_emulated_stage):
    """moto keeps SSM parameters, so a host that disagrees can be written there; every other in-service host
    gets a stand-in made from the stack's record, labelled so nobody takes it for a host's word."""
    import json

    from local.runtime import REPORT_STAND_IN
    from release.pure import fleet

    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0",))
    production = deploy_emulated_stage("production", image_tag="1.0.0")
    runtime = _runtime(production)
    group = production.service_outputs["AutoScalingGroupName"]
    hosts = [i["InstanceId"] for i in production.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[group])["AutoScalingGroups"][0]["Instances"]]
    path = f"/liftoff/{production.stack_names['service']}/hosts/"
    reports = runtime.host_reports(path)
    assert sorted(reports) == sorted(hosts)
    assert all(r["stand_in"] == REPORT_STAND_IN and r["active"] == "1.0.0" and r["ready"] for r in reports.values())
    behind = {"instance": hosts[0], "reported_at": "2026-12-02T10:00:00Z", "active": "0.9.0", "active_slot": "b", "ready": True,
              "staged": "1.0.0", "staged_present": True, "warm": "", "warm_until": "", "last_gate": {}}
    production.client("ssm").put_parameter(Name=path + hosts[0], Value=json.dumps(behind), Type="String")
    reports = runtime.host_reports(path)
    assert reports[hosts[0]] == behind  # the host's own word, not overwritten by the stand-in
    verdict = fleet.judge("activate", "1.0.0", fleet.truths(hosts, reports), desired_count=len(hosts))
    assert not verdict.verified and verdict.disagreeing == (hosts[0],)
    # Real boxes report for themselves: no stand-in is made up for them.
    class ReadsRealBoxes(EmulatedRuntime):  # as local.hosts.HostsRuntime and local.control.SupervisedRuntime do
        def ec2_running(self, auto_scaling_group, activate_association_id):
            return super().ec2_running(auto_scaling_group, activate_association_id)

    real = ReadsRealBoxes(service_stack=production.stack_names["service"], registry_stack=production.stack_names["registry"],
                          region=production.region)
    assert real.host_reports(path) == {hosts[0]: behind}
    # A re-drive is only recorded: nothing runs in the emulator.
    runtime.start_association_once("assoc-1")
    assert runtime.associations_started == ["assoc-1"]


def test_the_factories_refuse_a_real_endpoint_and_the_export_line_names_one():
    import pytest

    from config import load_config
    from local import runtime as local_runtime
    from release.adapters.runtime import RuntimeRefused
    from tests.helpers.synth import CDK_JSON

    stage = load_config(CDK_JSON).stage("staging")
    with pytest.raises(RuntimeRefused, match="AWS_ENDPOINT_URL is https://cloudformation.eu-west-1.amazonaws.com, not a loopback"):
        local_runtime.emulator(stage=stage, region="eu-west-1", environ={"AWS_ENDPOINT_URL": "https://cloudformation.eu-west-1.amazonaws.com"})
    made = local_runtime.emulator_unhealthy(stage=stage, region="us-east-1", environ={"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"})
    assert (made.healthy, made.service_stack) == (False, stage.service_stack_name)
    exports = local_runtime.shell_exports("http://localhost:1", control_url="http://127.0.0.1:2")
    assert "LIFTOFF_RUNTIME=local.runtime:emulator_hosts" in exports and "LIFTOFF_LOCAL_CONTROL=http://127.0.0.1:2" in exports
    tasks = local_runtime.shell_exports("http://localhost:1", control_url="http://127.0.0.1:2", compute="ecs")
    assert "LIFTOFF_RUNTIME=local.runtime:emulator_tasks" in tasks and "LIFTOFF_LOCAL_CONTROL=http://127.0.0.1:2" in tasks
    assert "LIFTOFF_RUNTIME=local.runtime:emulator " in local_runtime.shell_exports("http://localhost:1", compute="ecs") + " "


def test_the_kept_world_runtimes_refuse_without_a_supervisor_that_answers_for_the_stage():
    """`local.runtime:emulator_hosts` asks the supervisor what runs, `local.runtime:emulator_tasks` its image blobs:
    without one (or one keeping another stage, or the factory of the other compute) liftoff refuses at once, naming
    why and what to do, instead of pretending anything switched."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest

    from config import load_config
    from local import runtime as local_runtime
    from local.control import SupervisedRuntime, SupervisedTasksRuntime
    from local.emulator import free_port
    from release.adapters.aws import Aws
    from release.adapters.runtime import RuntimeRefused
    from tests.helpers.synth import CDK_JSON

    stage = load_config(CDK_JSON).stage("production")
    endpoint = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    with pytest.raises(RuntimeRefused, match="needs LIFTOFF_LOCAL_CONTROL, .* it is unset"):
        local_runtime.emulator_hosts(stage=stage, region="us-east-1", environ=endpoint)
    with pytest.raises(RuntimeRefused, match="it is https://example.com"):
        local_runtime.emulator_hosts(stage=stage, region="us-east-1", environ={**endpoint, "LIFTOFF_LOCAL_CONTROL": "https://example.com"})
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeRefused, match=f"the local supervisor at {nobody} does not answer"):
        local_runtime.emulator_hosts(stage=stage, region="us-east-1", environ={**endpoint, "LIFTOFF_LOCAL_CONTROL": nobody})

    supervised = {"stage": "staging"}  # what the fake supervisor answers for, changed below

    class Supervisor(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(supervised).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Supervisor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        control = {**endpoint, "LIFTOFF_LOCAL_CONTROL": f"http://127.0.0.1:{server.server_port}"}
        with pytest.raises(RuntimeRefused, match="keeps stage staging, not production"):
            local_runtime.emulator_hosts(stage=stage, region="us-east-1", environ=control)
        staging = load_config(CDK_JSON).stage("staging")
        with pytest.raises(RuntimeRefused, match="emulator_hosts is for a kept ec2 stage; stage staging runs on ecs") as refused:
            local_runtime.emulator_hosts(stage=staging, region="us-east-1", environ=control)
        assert "LIFTOFF_RUNTIME=local.runtime:emulator_tasks" in refused.value.hint
        with pytest.raises(RuntimeRefused, match="emulator_tasks is for a kept ecs stage; stage production runs on ec2"):
            local_runtime.emulator_tasks(stage=stage, region="us-east-1", environ=control)
        made = local_runtime.emulator_tasks(stage=staging, region="us-east-1", environ=control)
        assert isinstance(made, SupervisedTasksRuntime) and made.control.url == control["LIFTOFF_LOCAL_CONTROL"]
        # What runs is read as on AWS (the emulator answers from the kept ECS stand-in), never made up from the stack.
        for read in ("ecs_running", "target_health", "ecs_deployments", "run_one_off"):
            assert getattr(SupervisedTasksRuntime, read) is getattr(Aws, read), read
        supervised["stage"] = "production"
        made = local_runtime.emulator_hosts(stage=stage, region="us-east-1", environ=control)
        assert isinstance(made, SupervisedRuntime) and made.control.url == control["LIFTOFF_LOCAL_CONTROL"]
    finally:
        server.shutdown()
        server.server_close()
