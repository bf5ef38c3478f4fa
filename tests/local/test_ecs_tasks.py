"""The ECS stand-in's pure parts, without Docker: which task definitions it refuses (local/ecs_tasks.py
`check_task_definition`), the containers' start order, the ECR stand-in's image references, `secrets` resolved
from moto's Secrets Manager and SSM as the ECS agent resolves them, the `docker run` arguments of a container,
awslogs stream names and `docker logs` timestamps; and the rolling-deployment bounds and circuit-breaker
threshold of local/ecs_service.py."""
from __future__ import annotations

import copy
import json
import shlex

import boto3
import pytest

from local.ecs_tasks import (TaskCannotStart, TaskDefinitionRefused, _millis, _next_nanosecond, check_task_definition,
                             log_stream, registry_reference, resolve_secret, run_arguments, start_order)

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo/name:1.2.3"
LOCAL_IMAGE = "127.0.0.1:5000/repo:1"
DB_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:staging/db-AbCdEf"
LOGS = {"logDriver": "awslogs", "options": {"awslogs-group": "/liftoff/staging", "awslogs-stream-prefix": "service",
                                            "awslogs-region": "us-east-1"}}


def task_definition() -> dict:
    """A Fargate task definition as DescribeTaskDefinition returns it (moto's defaults included)."""
    common = {"image": ECR_IMAGE, "cpu": 0, "mountPoints": [], "volumesFrom": [], "logConfiguration": LOGS,
              "environment": [{"name": "DATABASE_HOST", "value": "db.internal"}],
              "secrets": [{"name": "DATABASE_PASSWORD", "valueFrom": f"{DB_SECRET}:password::"}]}
    return copy.deepcopy({
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/staging-service:3", "family": "staging-service",
        "revision": 3, "status": "ACTIVE", "networkMode": "awsvpc", "cpu": "256", "memory": "512", "volumes": [],
        "requiresCompatibilities": ["FARGATE"], "compatibilities": ["EC2", "FARGATE"], "placementConstraints": [],
        "executionRoleArn": "arn:aws:iam::123456789012:role/staging-execution",
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "containerDefinitions": [
            {"name": "migrate", "essential": False, "command": ["migrate"], **common},
            {"name": "app", "essential": True, "portMappings": [{"containerPort": 8080, "protocol": "tcp"}],
             "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}], "stopTimeout": 10, **common},
        ]})


def changed(target: str, key: str, value) -> dict:
    definition = task_definition()
    where = definition if target == "task" else next(c for c in definition["containerDefinitions"] if c["name"] == target)
    where[key] = value
    return definition


def test_a_fargate_task_definition_as_ecs_describes_it_is_accepted():
    definition = task_definition()
    assert check_task_definition(definition) is None
    assert definition == task_definition()  # read, not changed


@pytest.mark.parametrize("target, key, value, fragments", [
    ("app", "linuxParameters", {"initProcessEnabled": True}, ["container app", "linuxParameters", '"initProcessEnabled": true']),
    ("task", "proxyConfiguration", {"type": "APPMESH", "containerName": "envoy"}, ["proxyConfiguration", "APPMESH"]),
    ("task", "networkMode", "bridge", ["networkMode=bridge"]),
    ("app", "logConfiguration", {"logDriver": "fluentd", "options": {}}, ["container app", "logDriver=fluentd"]),
    ("app", "logConfiguration", {"logDriver": "awslogs", "options": {"awslogs-region": "us-east-1"}}, ["container app", "awslogs-group"]),
    ("app", "portMappings", [{"containerPort": 8080, "protocol": "udp"}], ["container app", "protocol udp"]),
    ("app", "portMappings", [{"containerPort": 8080, "hostPort": 80, "protocol": "tcp"}], ["container app", "hostPort 80", "containerPort 8080"]),
    ("app", "dependsOn", [{"containerName": "seed", "condition": "SUCCESS"}], ["container app", "dependsOn", "'seed'"]),
    ("app", "dependsOn", [{"containerName": "migrate", "condition": "READY"}], ["container app", "condition 'READY'"]),
    ("app", "mountPoints", [{"sourceVolume": "scratch", "containerPath": "/tmp"}], ["container app", "mountPoints", "'scratch'"]),
    ("task", "volumes", [{"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}], ["volume data", "efsVolumeConfiguration"]),
    ("app", "stopTimeout", 1, ["container app", "stopTimeout 1;"]),
    ("app", "stopTimeout", 121, ["container app", "stopTimeout 121;"]),
    ("app", "essential", False, ["staging-service", "no container is essential"]),
    ("task", "runtimePlatform", {"cpuArchitecture": "X86_64", "operatingSystemFamily": "WINDOWS_SERVER_2019_FULL"},
     ["operatingSystemFamily=WINDOWS_SERVER_2019_FULL"]),
    ("app", "volumesFrom", [{"sourceContainer": "migrate"}], ["container app", "volumesFrom"]),
    ("app", "environmentFiles", [{"type": "s3", "value": "arn:aws:s3:::bucket/app.env"}], ["container app", "environmentFiles"]),
], ids=["unknown container key", "unknown task key", "bridge network", "fluentd logs", "awslogs without a group", "udp",
        "host port", "dependency on no container", "READY condition", "unknown volume mounted", "EFS volume", "stop timeout 1",
        "stop timeout 121", "no essential container", "Windows", "volumesFrom", "environmentFiles"])
def test_what_the_stand_in_cannot_run_is_refused_by_name(target, key, value, fragments):
    with pytest.raises(TaskDefinitionRefused) as refused:
        check_task_definition(changed(target, key, value))
    for fragment in fragments:
        assert fragment in str(refused.value)
    assert "staging-service" in str(refused.value)


@pytest.mark.parametrize("unset", [0, [], {}, "", None, False], ids=repr)
def test_keys_left_at_a_not_set_value_are_accepted(unset):
    definition = changed("app", "linuxParameters", unset)
    definition["containerDefinitions"][1]["environmentFiles"] = unset
    definition["proxyConfiguration"] = definition["pidMode"] = unset
    check_task_definition(definition)


def test_containers_start_after_the_containers_they_depend_on():
    definition = task_definition()
    definition["containerDefinitions"].reverse()
    assert [c["name"] for c in start_order(definition)] == ["migrate", "app"]
    definition["containerDefinitions"].insert(0, {"name": "web", "dependsOn": [{"containerName": "app", "condition": "HEALTHY"}]})
    assert [c["name"] for c in start_order(definition)] == ["migrate", "app", "web"]


def test_a_dependency_cycle_is_refused_naming_a_container_on_it():
    definition = changed("migrate", "dependsOn", [{"containerName": "app", "condition": "START"}])
    with pytest.raises(TaskDefinitionRefused, match=r"staging-service: dependsOn has a cycle through (app|migrate)$"):
        start_order(definition)


def test_an_ecr_image_is_pulled_from_the_ecr_stand_in_and_any_other_is_not():
    assert registry_reference(ECR_IMAGE, "127.0.0.1:5000") == "127.0.0.1:5000/repo/name:1.2.3"
    with pytest.raises(TaskCannotStart) as unavailable:
        registry_reference("python:3.11", "127.0.0.1:5000")
    assert str(unavailable.value).startswith("CannotPullContainerError: python:3.11 ")


@pytest.fixture
def aws(emulated_aws):
    secretsmanager, ssm = boto3.client("secretsmanager", region_name="us-east-1"), boto3.client("ssm", region_name="us-east-1")
    arn = secretsmanager.create_secret(Name="staging/db", SecretString=json.dumps({"username": "app", "password": "first"}))["ARN"]
    ssm.put_parameter(Name="/app/x", Value="parameter value", Type="SecureString")

    def resolve(value_from: str) -> str:
        return resolve_secret(value_from, secretsmanager=secretsmanager, ssm=ssm)
    return resolve, arn, secretsmanager


def test_a_secret_resolves_whole_or_by_json_key(aws):
    resolve, arn, _ = aws
    assert json.loads(resolve(arn)) == {"username": "app", "password": "first"}
    assert resolve(f"{arn}:password::") == "first"
    with pytest.raises(TaskCannotStart) as unavailable:
        resolve(f"{arn}:host::")
    assert str(unavailable.value).startswith("ResourceInitializationError: ") and str(unavailable.value).endswith("json key host")


@pytest.mark.parametrize("document", ["hunter2", "42", '["password"]'])
def test_a_json_key_of_a_secret_that_is_no_json_object_is_unavailable(aws, document):
    resolve, _, secretsmanager = aws
    arn = secretsmanager.create_secret(Name="staging/token", SecretString=document)["ARN"]
    with pytest.raises(TaskCannotStart, match=r"^ResourceInitializationError: .*password"):
        resolve(f"{arn}:password::")


def test_a_secret_that_does_not_exist_stops_the_task_with_the_reason_ecs_gives(aws):
    resolve, _, _ = aws
    with pytest.raises(TaskCannotStart) as unavailable:
        resolve("arn:aws:secretsmanager:us-east-1:123456789012:secret:staging/absent-AbCdEf:password::")
    assert str(unavailable.value).startswith("ResourceInitializationError: ")
    assert "ResourceNotFoundException" in str(unavailable.value) and "staging/absent-AbCdEf" in str(unavailable.value)


def test_a_version_stage_or_id_picks_that_version(aws):
    resolve, arn, secretsmanager = aws
    version = secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps({"password": "second"}))["VersionId"]
    assert resolve(f"{arn}:password:AWSCURRENT:") == "second"
    assert resolve(f"{arn}:password:AWSPREVIOUS:") == "first"
    assert json.loads(resolve(f"{arn}::AWSCURRENT:")) == {"password": "second"}
    assert resolve(f"{arn}:password::{version}") == "second"


@pytest.mark.parametrize("value_from", ["arn:aws:ssm:us-east-1:123456789012:parameter/app/x", "/app/x"])
def test_an_ssm_parameter_resolves_by_arn_or_name(aws, value_from):
    assert aws[0](value_from) == "parameter value"


def test_a_missing_ssm_parameter_is_unavailable(aws):
    with pytest.raises(TaskCannotStart) as unavailable:
        aws[0]("arn:aws:ssm:us-east-1:123456789012:parameter/app/absent")
    assert str(unavailable.value).startswith("ResourceInitializationError: ")
    assert "/app/absent: ParameterNotFound" in str(unavailable.value)


def run(container_changes: dict | None = None, volumes: dict | None = None, container: str = "app") -> list[str]:
    definition = task_definition()
    settings = next(c for c in definition["containerDefinitions"] if c["name"] == container)
    settings.update(container_changes or {})
    return run_arguments(definition, settings, name="w-task-0123-app", namespace="pause-id", image=LOCAL_IMAGE,
                         environment={"DATABASE_HOST": "db.internal", "DATABASE_PASSWORD": "s3cret"},
                         labels={"liftoff.harness": "w"}, volumes=volumes or {})


def values(arguments: list[str], flag: str) -> list[str]:
    return [arguments[i + 1] for i, argument in enumerate(arguments) if argument == flag]


def test_the_app_container_runs_with_what_its_definition_says_and_nothing_more():
    assert run() == ["run", "--detach", "--name", "w-task-0123-app", "--network", "container:pause-id",
                     "--label", "liftoff.harness=w", "--env", "DATABASE_HOST=db.internal", "--env", "DATABASE_PASSWORD=s3cret",
                     "--stop-timeout", "10", "--memory", "512m", "--cpus", "0.25", "--no-healthcheck", LOCAL_IMAGE]


def test_a_containers_own_cpu_is_a_relative_share_and_the_tasks_cpu_the_cap():
    arguments = run({"cpu": 128})
    assert values(arguments, "--cpu-shares") == ["128"] and values(arguments, "--cpus") == ["0.25"]
    assert "--cpu-shares" not in run({"cpu": 0})  # moto's "not set"


def test_user_read_only_root_and_working_directory_become_flags():
    arguments = run({"user": "1000:1000", "readonlyRootFilesystem": True, "workingDirectory": "/srv"})
    assert values(arguments, "--user") == ["1000:1000"] and values(arguments, "--workdir") == ["/srv"]
    assert arguments.count("--read-only") == 1
    assert "--read-only" not in run({"readonlyRootFilesystem": False})


def test_stop_timeout_and_memory_come_from_the_container_else_the_defaults():
    assert values(run({"stopTimeout": None}), "--stop-timeout") == ["30"]
    arguments = run({"memory": 256, "memoryReservation": 128})
    assert values(arguments, "--memory") == ["256m"] and values(arguments, "--memory-reservation") == ["128m"]


def test_a_shell_health_check_is_the_shell_string_with_its_timings():
    arguments = run({"healthCheck": {"command": ["CMD-SHELL", "curl -f http://localhost:8080/healthz || exit 1"],
                                     "interval": 10, "timeout": 2, "retries": 4, "startPeriod": 15}})
    start = arguments.index("--health-cmd")
    assert arguments[start:arguments.index(LOCAL_IMAGE)] == [
        "--health-cmd", "curl -f http://localhost:8080/healthz || exit 1", "--health-interval", "10s", "--health-timeout", "2s",
        "--health-retries", "4", "--health-start-period", "15s"]
    assert "--no-healthcheck" not in arguments
    defaults = run({"healthCheck": {"command": ["CMD-SHELL", "true"]}})
    assert [values(defaults, f"--health-{key}") for key in ("interval", "timeout", "retries", "start-period")] == [
        ["30s"], ["5s"], ["3"], ["0s"]]


def test_an_exec_form_health_check_runs_its_arguments_under_the_shell_docker_gives_health_cmd():
    # `docker run --health-cmd X` always stores ["CMD-SHELL", X]: X is run by /bin/sh -c, so it must be the argv, quoted.
    command = ["curl", "-f", "http://localhost:8080/health check"]
    health_command = values(run({"healthCheck": {"command": ["CMD", *command]}}), "--health-cmd")
    assert len(health_command) == 1 and shlex.split(health_command[0]) == command


def test_the_image_comes_after_every_flag_then_the_entry_point_rest_then_the_command():
    migrate = run(container="migrate")
    assert migrate[-2:] == [LOCAL_IMAGE, "migrate"] and "--entrypoint" not in migrate
    arguments = run({"entryPoint": ["/bin/sh", "-c"], "command": ["exec gunicorn app:app"]})
    assert values(arguments, "--entrypoint") == ["/bin/sh"]
    assert arguments[arguments.index(LOCAL_IMAGE):] == [LOCAL_IMAGE, "-c", "exec gunicorn app:app"]


def test_ulimits_volumes_and_docker_labels_become_flags():
    arguments = run({"ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
                     "mountPoints": [{"sourceVolume": "scratch", "containerPath": "/tmp"},
                                     {"sourceVolume": "cache", "containerPath": "/cache", "readOnly": True}],
                     "dockerLabels": {"team": "web"}},
                    volumes={"scratch": "w-task-0123-scratch", "cache": "w-task-0123-cache"})
    assert values(arguments, "--ulimit") == ["nofile=1024:4096"]
    assert values(arguments, "--volume") == ["w-task-0123-scratch:/tmp", "w-task-0123-cache:/cache:ro"]
    assert values(arguments, "--label") == ["liftoff.harness=w", "team=web"]


def test_the_awslogs_stream_is_prefix_container_task_id():
    app = task_definition()["containerDefinitions"][1]
    assert log_stream(app, "0123abcd") == "service/app/0123abcd"
    assert log_stream({**app, "logConfiguration": None}, "0123abcd") is None
    assert log_stream({**app, "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}, "0123abcd") == "0123abcd"


def test_docker_log_timestamps_keep_their_nanoseconds():
    assert _next_nanosecond("2026-12-03T16:40:00.123456789Z") == "1796316000.123456790"
    assert _next_nanosecond("2026-12-03T16:40:00.999999999Z") == "1796316001.000000000"
    assert _millis("2026-12-03T16:40:00.123456789Z") == 1796316000123
