"""release/adapters/schema_aws.py, the real adapter, on the staging stage deployed in moto: what moto honours is
asserted; what it cannot show (the config blob download) is xfail(strict=True), listed in docs/local-emulator.md.
The ECS one-off that really runs and reports its output: tests/local/test_ecs_stage.py (the emulator's RunTask
answered by the ECS stand-in)."""
from __future__ import annotations

import pytest
from botocore.stub import ANY, Stubber

from local import aws as local_aws
from release.pure.schema import SchemaState
from release.adapters.aws import Aws
from release.adapters.schema_aws import SEND_COMMAND_MAX_INSTANCES

FIRST_COMMAND, SECOND_COMMAND = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"
LABELS = {"io.liftoff.release": "1.2.0", "io.liftoff.schema.head": "0003_x", "io.liftoff.schema.requires": "0002_y",
          "io.liftoff.schema.contracts": "0003_x:1.0.0"}


def test_the_schema_state_round_trips_through_the_ledger_table(emulated_staging):
    adapter = Aws(region=emulated_staging.region)
    table = emulated_staging.ledger_table
    assert adapter.read_schema_state(table) is None
    state = SchemaState(applied=("0001_a", "0002_b", "0003_x"), contracts={"0003_x": "1.0.0"}, recorded_at="2026-11-28T00:00:00Z",
                        version="1.2.0", release_id="abc")
    adapter.write_schema_state(table, state)
    assert adapter.read_schema_state(table) == state
    # The item is not a ledger entry: history does not see it.
    assert emulated_staging.client("dynamodb").query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "RELEASE"}})["Count"] == 0


def fargate_service(ecs) -> dict:
    """A Fargate service made with boto3 (moto's CloudFormation model of a task definition drops its compatibilities,
    network mode and roles, and the service's launch type). The stack's is `awsvpc`; moto 5.2.5's run_task fails on
    that (its ENI model lacks private_dns_name), so the copy is checked on a `bridge` one here and the full run on
    the ECS stand-in (tests/local/test_ecs_stage.py)."""
    ecs.create_cluster(clusterName="c")
    logging = {"logDriver": "awslogs", "options": {"awslogs-group": "g", "awslogs-stream-prefix": "migrate", "awslogs-region": "us-east-1"}}
    definition = ecs.register_task_definition(
        family="svc", networkMode="bridge", cpu="256", memory="512",  # moto makes every Fargate definition awsvpc
        executionRoleArn="arn:aws:iam::123456789012:role/exec", taskRoleArn="arn:aws:iam::123456789012:role/task",
        containerDefinitions=[
            {"name": "migrate", "image": "repo:1.1.0", "command": ["migrate"], "essential": False, "logConfiguration": logging},
            {"name": "app", "image": "repo:1.1.0", "essential": True, "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}],
             "portMappings": [{"containerPort": 8080}]},
        ])["taskDefinition"]
    ecs.create_service(cluster="c", serviceName="s", taskDefinition=definition["taskDefinitionArn"], desiredCount=1, launchType="FARGATE")
    return {"ClusterName": "c", "EcsServiceName": "s"}


def test_the_ecs_one_off_runs_a_copy_of_the_service_task_definition_with_the_version_and_cleans_up(emulated_aws):
    adapter = Aws(region="us-east-1")
    ecs = adapter.client("ecs")
    outputs = fargate_service(ecs)
    said = []
    one = adapter.run_one_off(outputs, compute="ecs", image="repo:1.2.0", tag="1.2.0", arguments=["--allow-contract", "0003_x"],
                              timeout=0, poll=0, sleep=lambda _: None, monotonic=lambda: 0.0, say=said.append)
    assert one.exit_code is None  # moto never stops the task; a zero timeout gives up at once
    (task,) = ecs.describe_tasks(cluster="c", tasks=[one.where.split(" ", 1)[1]])["tasks"]
    assert task["startedBy"] == "liftoff-migrate" and task["launchType"] == "FARGATE"
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    assert definition["family"] == "svc-migrate" and definition["status"] == "INACTIVE"  # deregistered once the run ended
    assert (definition["cpu"], definition["executionRoleArn"]) == ("256", "arn:aws:iam::123456789012:role/exec")
    (container,) = definition["containerDefinitions"]  # the migrate container alone, no dependency left
    assert (container["name"], container["image"], container["command"]) == ("migrate", "repo:1.2.0", ["migrate", "--allow-contract", "0003_x"])
    assert container["essential"] is True and not container.get("dependsOn")
    assert "one-off task" in said[0]


@pytest.mark.xfail(strict=True, reason="moto has no ECR GetDownloadUrlForLayer (it keeps manifests, not blobs), so the real "
                                       "adapter cannot read an image's config labels; the emulator keeps them in S3 instead "
                                       "(local.runtime.EmulatedRuntime.download_layer)")
def test_the_real_adapter_reads_labels_from_the_config_blob(emulated_staging):
    local_aws.push_images(emulated_staging.session, emulated_staging.repository_name, ["1.2.0"], labels={"1.2.0": LABELS})
    assert Aws(region=emulated_staging.region).image_labels(emulated_staging.repository_name, "1.2.0") == LABELS


def test_the_emulated_runtime_reads_labels_the_emulator_kept(emulated_staging):
    from tests.release.helpers import EmulatedRuntime

    local_aws.push_images(emulated_staging.session, emulated_staging.repository_name, ["1.2.0"], labels={"1.2.0": LABELS})
    runtime = EmulatedRuntime(emulated_staging)
    assert runtime.image_labels(emulated_staging.repository_name, "1.2.0") == LABELS
    assert runtime.image_labels(emulated_staging.repository_name, "1.1.0") == {}  # pushed without labels


def test_run_command_goes_to_every_host_at_once_and_waits_for_each_invocation():
    aws = Aws(region="us-east-1")
    hosts = [f"i-{index:017x}" for index in range(SEND_COMMAND_MAX_INSTANCES + 1)]
    slept = []
    with Stubber(aws.client("ssm")) as stub:
        # SendCommand takes at most 50 instance ids: two calls, one command each.
        for batch, command in ((hosts[:-1], FIRST_COMMAND), (hosts[-1:], SECOND_COMMAND)):
            stub.add_response("send_command", {"Command": {"CommandId": command}},
                              {"InstanceIds": batch, "DocumentName": "doc", "Parameters": {"ImageTag": ["1.0.0"]},
                               "TimeoutSeconds": 60, "Comment": ANY})
        # First pass: all but the last finish (the last one not delivered yet); second pass: the last one fails.
        for host in hosts[:-1]:
            stub.add_response("get_command_invocation", {"Status": "Success", "ResponseCode": 0, "StandardOutputContent": "ok\n"},
                              {"CommandId": FIRST_COMMAND, "InstanceId": host})
        stub.add_client_error("get_command_invocation", "InvocationDoesNotExist", expected_params={"CommandId": SECOND_COMMAND, "InstanceId": hosts[-1]})
        stub.add_response("get_command_invocation", {"Status": "Failed", "ResponseCode": 1, "StandardErrorContent": "not ready\n"},
                          {"CommandId": SECOND_COMMAND, "InstanceId": hosts[-1]})
        results = aws.send_to_hosts(hosts, "doc", {"ImageTag": ["1.0.0"]}, timeout=60, poll=1, sleep=slept.append,
                                    monotonic=lambda: 0.0)
        stub.assert_no_pending_responses()
    assert list(results) == hosts and slept == [1]
    assert results[hosts[0]] == (0, "ok\n", f"host {hosts[0]} command {FIRST_COMMAND}")
    assert results[hosts[-1]] == (1, "not ready\n", f"host {hosts[-1]} command {SECOND_COMMAND}")


def test_run_command_that_does_not_finish_in_time_has_no_exit_code():
    aws = Aws(region="us-east-1")
    clock = iter([0.0, 5.0, 11.0])
    with Stubber(aws.client("ssm")) as stub:
        stub.add_response("send_command", {"Command": {"CommandId": FIRST_COMMAND}})
        for _ in range(2):
            stub.add_response("get_command_invocation", {"Status": "InProgress"}, {"CommandId": FIRST_COMMAND, "InstanceId": "i-0123456789abcdef0"})
        assert aws.send_and_wait("i-0123456789abcdef0", "doc", {}, timeout=10, poll=1, sleep=lambda _: None,
                                 monotonic=lambda: next(clock)) == (None, "", f"host i-0123456789abcdef0 command {FIRST_COMMAND}")
