"""The ECS stand-in's task runner (local/ecs_tasks.py). Without Docker: which task definitions it refuses
(`check_task_definition`, an execution role missing where ECS requires one included), the containers' start order,
the ECR stand-in's image references, `secrets` resolved from moto's Secrets Manager and SSM as the ECS agent resolves
them (signed as the execution role), the task role's variable in every container's environment, the `docker run`
arguments of a container, awslogs stream names and `docker logs` timestamps. With Docker: real tasks whose containers
read the task role's credentials at 169.254.170.2, or find no variable when the task has no role."""
from __future__ import annotations

import copy
import dataclasses
import json
import shlex
import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

import boto3
import pytest

from local.docker import Daemon
from local.ecs_tasks import (NAMESPACE, Task, TaskCannotStart, TaskDefinitionRefused, TaskRunner, World, _millis,
                             _next_nanosecond, check_task_definition, log_stream, registry_reference, resolve_secret,
                             run_arguments, start_order)
from local.task_credentials import RELATIVE_URI_VARIABLE, relative_uri
from tests.helpers import local_registry
from tests.helpers.box_world import wait_until

pytestmark = pytest.mark.cost(minutes=0.3)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

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


def without_execution_role(*, secrets: bool = True, logs: bool = True, compatibilities=("FARGATE",)) -> dict:
    definition = changed("task", "executionRoleArn", None)
    definition["requiresCompatibilities"] = list(compatibilities)
    for container in definition["containerDefinitions"]:
        container["secrets"] = container["secrets"] if secrets else []
        container["logConfiguration"] = container["logConfiguration"] if logs else None
    return definition


@pytest.mark.parametrize("definition, message", [
    (without_execution_role(), "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."),
    (without_execution_role(compatibilities=["EC2"]),
     "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."),
    (without_execution_role(secrets=False), "Fargate requires task definition to have execution role ARN to support log driver awslogs."),
    (without_execution_role(secrets=False, logs=False), "Fargate requires task definition to have execution role ARN to support ECR images."),
], ids=["secrets", "secrets on EC2", "awslogs on Fargate", "an ECR image on Fargate"])
def test_a_task_definition_that_needs_an_execution_role_and_names_none_is_refused_as_ecs_refuses_it(definition, message):
    with pytest.raises(TaskDefinitionRefused) as refused:
        check_task_definition(definition)
    assert str(refused.value) == f"task definition staging-service: ClientException: {message}"


def test_on_ec2_the_instance_role_does_the_agents_work_so_no_execution_role_is_needed_without_secrets():
    check_task_definition(without_execution_role(secrets=False, compatibilities=["EC2"]))


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


# --- the roles: what the agent signs with, what the containers get ---------------------------------

TASK_ROLE = "arn:aws:iam::123456789012:role/staging-task"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/staging-execution"


class RecordingSession:
    """The runner's session on the in-process moto, noting which access key each client signs with."""

    def __init__(self):
        self.signed_with: list[tuple[str, str | None]] = []

    def client(self, service: str, **kwargs):
        self.signed_with.append((service, kwargs.get("aws_access_key_id")))
        return boto3.client(service, region_name="us-east-1", **kwargs)


def caller(role) -> str:
    return boto3.client("sts", region_name="us-east-1", **role.client_arguments()).get_caller_identity()["Arn"]


@pytest.fixture
def runner_without_docker(emulated_aws):
    session = RecordingSession()
    world = World(daemon=Daemon(host="unix:///nonexistent.sock"), name="w", network="n", registry_host="127.0.0.1:1",
                  pause_image="pause")
    return TaskRunner(world, session=session, account="123456789012", region="us-east-1", cluster="c", say=lambda _: None), session


def new_task() -> Task:
    task_id = uuid.uuid4().hex
    return Task(arn=f"arn:aws:ecs:us-east-1:123456789012:task/c/{task_id}", task_id=task_id, definition_arn="td", group="g",
                started_by="")


def test_each_role_is_assumed_in_the_emulators_sts_as_a_session_named_after_the_task(runner_without_docker):
    runner, _ = runner_without_docker
    task = new_task()
    runner._assume_roles(task, changed("task", "taskRoleArn", TASK_ROLE))
    assert caller(task.task_role) == f"arn:aws:sts::123456789012:assumed-role/staging-task/{task.task_id}"
    assert caller(task.execution_role) == f"arn:aws:sts::123456789012:assumed-role/staging-execution/{task.task_id}"
    assert task.task_role.access_key_id.startswith("ASIA") and task.task_role.expiration > datetime.now(timezone.utc)
    assert str(uuid.UUID(task.credentials_id)) == task.credentials_id  # ECS's credentials ids are UUIDs


def test_every_container_gets_the_task_roles_uri_and_secrets_are_read_as_the_execution_role(runner_without_docker):
    runner, session = runner_without_docker
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="staging/db", SecretString=json.dumps({"password": "first"}))["ARN"]
    definition = changed("task", "taskRoleArn", TASK_ROLE)
    for container in definition["containerDefinitions"]:
        container["secrets"] = [{"name": "DATABASE_PASSWORD", "valueFrom": f"{secret}:password::"}]
    task = new_task()
    runner._assume_roles(task, definition)
    environments = {container["name"]: runner._environment(task, container) for container in start_order(definition)}
    uri = relative_uri(task.credentials_id)
    assert environments == {name: {"DATABASE_HOST": "db.internal", "DATABASE_PASSWORD": "first", RELATIVE_URI_VARIABLE: uri}
                            for name in ("migrate", "app")}
    # The agent's reads are the execution role's; the task role's keys are for the containers alone.
    assert {key for service, key in session.signed_with if service in ("secretsmanager", "ssm")} == {task.execution_role.access_key_id}


def test_a_task_without_a_task_role_has_no_credentials_uri_in_any_container(runner_without_docker):
    runner, _ = runner_without_docker
    definition = without_execution_role(secrets=False)  # no secret to read: only the task role is in question
    task = new_task()
    runner._assume_roles(task, definition)
    assert task.task_role is None and task.credentials_id == ""
    for container in start_order(definition):
        assert runner._environment(task, container) == {"DATABASE_HOST": "db.internal"}


def test_without_an_execution_role_the_agent_signs_with_the_runners_own_credentials(runner_without_docker):
    runner, session = runner_without_docker
    task = new_task()
    runner._assume_roles(task, without_execution_role(secrets=False, logs=False, compatibilities=["EC2"]))
    assert task.execution_role is None
    runner._agent_client(task, "logs")
    assert session.signed_with[-1] == ("logs", None)


class InspectingDaemon:
    """Answers `Daemon.containers(ID...)` from `states` (an unknown id is left out, as the daemon's 404), recording
    each batch."""

    def __init__(self, states: dict[str, dict]):
        self.states, self.calls = states, []

    def containers(self, *identifiers, timeout=30):
        self.calls.append(identifiers)
        return {identifier: {"Id": identifier, "State": self.states[identifier]} for identifier in identifiers
                if identifier in self.states}


def running_task(containers: dict[str, tuple[str, bool]]) -> Task:
    task = new_task()
    task.last_status = "RUNNING"
    task.containers = {NAMESPACE: {"id": "pause", "essential": False, "status": "RUNNING"},
                       **{name: {"id": identifier, "essential": essential, "status": "RUNNING"}
                          for name, (identifier, essential) in containers.items()}}
    return task


def test_one_batch_reads_the_containers_of_every_watched_task():
    healthy = {"Status": "running", "Health": {"Status": "healthy"}}
    daemon = InspectingDaemon({"app-1": healthy, "app-2": healthy})
    world = World(daemon=daemon, name="w", network="n", registry_host="127.0.0.1:1", pause_image="pause")
    runner = TaskRunner(world, session=None, account="123456789012", region="us-east-1", cluster="c", say=lambda _: None)
    first, second = running_task({"app": ("app-1", True), "migrate": ("migrate-1", False)}), running_task({"app": ("app-2", True)})
    starting = new_task()
    runner.observe_all([first, second, starting])
    # The pause container (the task's network) and a task still starting are not read.
    assert daemon.calls == [("app-1", "migrate-1", "app-2")]
    assert first.health_status == second.health_status == "HEALTHY"
    # A container docker no longer knows has stopped, as if killed.
    assert (first.containers["migrate"]["status"], first.containers["migrate"]["exit_code"]) == ("STOPPED", 137)
    assert first.desired_status == "RUNNING"  # not essential: the task goes on


# --- real tasks (Docker) ---------------------------------------------------------------------------

REPOSITORY = "task-credentials"
LOG_GROUP = "/liftoff/task-credentials"
# What each container of the Docker tests runs: it reads the task role's credentials as an SDK does, prints one line,
# and (the essential one, given `stay`) keeps running until the task stops.
READ_CREDENTIALS = """
import json, os, sys, time, urllib.error, urllib.request

def get(path):
    try:
        with urllib.request.urlopen("http://169.254.170.2" + path, timeout=5) as response:
            return [response.status, json.load(response)]
    except urllib.error.HTTPError as error:
        return [error.code, json.load(error)]

uri = os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
found = {"uri": uri}
if uri:
    found.update(credentials=get(uri), other_id=get("/v2/credentials/not-this-task"))
print(json.dumps(found), flush=True)
if sys.argv[1:] == ["stay"]:
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def task_world(docker_daemon, box_image, python_base_image, tmp_path_factory):
    """A network, an ECR stand-in (a loopback registry) holding a python3 image, and the box image as the pause image."""
    name = f"tasks-{uuid.uuid4().hex[:6]}"
    registry = local_registry.start(tmp_path_factory.mktemp("ecr"))
    image = f"{registry.host}/{REPOSITORY}:1"
    network = None
    try:
        docker_daemon.run("tag", python_base_image, image)
        docker_daemon.run("push", "--quiet", image, timeout=600)
        network = docker_daemon.run("network", "create", "--label", f"liftoff.harness={name}", f"{name}-net").stdout.strip()
        yield World(daemon=docker_daemon, name=name, network=network, registry_host=registry.host, pause_image=box_image)
    finally:
        left = docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={name}", check=False).stdout.split()
        if left:
            docker_daemon.run("rm", "--force", "--volumes", *left, check=False)
        if network:
            docker_daemon.run("network", "rm", network, check=False)
        docker_daemon.run("rmi", image, check=False)
        local_registry.stop(registry)


def reading_task_definition(*, task_role: str | None) -> dict:
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": LOG_GROUP, "awslogs-stream-prefix": "tasks",
                                                "awslogs-region": "us-east-1"}}
    common = {"image": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}:1", "entryPoint": ["python3", "-c", READ_CREDENTIALS],
              "logConfiguration": logs}
    definition = {
        "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/credentials:1", "family": "credentials",
        "revision": 1, "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
        "executionRoleArn": EXECUTION_ROLE,
        "containerDefinitions": [
            {"name": "migrate", "essential": False, **common},
            {"name": "app", "essential": True, "command": ["stay"], "stopTimeout": 2,
             "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}], **common},
        ]}
    if task_role:
        definition["taskRoleArn"] = task_role
    return definition


def run_reading_task(world: World, definition: dict, *, while_running: Callable[[TaskRunner, Task], None] = lambda *_: None,
                     ) -> tuple[Task, dict[str, dict], dict[str, dict]]:
    """Run the task until its app container has printed, then `while_running`; stop it. Each container's line (from its
    awslogs stream in the emulator) and its `docker inspect`, taken while it ran."""
    session = boto3.Session(region_name="us-east-1")
    session.client("logs").create_log_group(logGroupName=LOG_GROUP)
    runner = TaskRunner(world, session=session, account="123456789012", region="us-east-1", cluster="c", say=lambda _: None)
    task = runner.start(definition, group="family:credentials")
    inspected = {}
    try:
        wait_until(lambda: task.last_status in ("RUNNING", "STOPPED"), 120, "the task did not start")
        assert task.last_status == "RUNNING", task.stopped_reason
        app = task.containers["app"]["id"]
        wait_until(lambda: world.daemon.run("logs", app, check=False).stdout.strip(), 30, "the app container printed nothing")
        for name in (NAMESPACE, "migrate", "app"):
            inspected[name] = json.loads(world.daemon.run("inspect", task.containers[name]["id"]).stdout)[0]
        while_running(runner, task)
    finally:
        runner.stop(task, "the test is over")
    left = world.daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.ecs.task={task.task_id}").stdout.split()
    assert left == [], f"containers left behind: {left}"
    logs = session.client("logs")
    printed = {name: json.loads(logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=f"tasks/{name}/{task.task_id}")
                                ["events"][0]["message"]) for name in ("migrate", "app")}
    return task, printed, inspected


def environment_of(inspected: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in inspected["Config"]["Env"] or [])


def test_every_container_of_a_task_reads_the_task_roles_credentials_at_169_254_170_2(task_world, emulated_aws):
    renewal = {}

    def renew_before_expiry(runner: TaskRunner, task: Task) -> None:
        served = task.task_role
        task.task_role = dataclasses.replace(served, expiration=datetime.now(timezone.utc) + timedelta(minutes=20))
        runner.observe(task)
        read_again = task_world.daemon.run("exec", task.containers["app"]["id"], "python3", "-c", READ_CREDENTIALS).stdout
        renewal.update(served=served.access_key_id, renewed=task.task_role.access_key_id,
                       read=json.loads(read_again)["credentials"][1]["AccessKeyId"])

    task, printed, inspected = run_reading_task(task_world, reading_task_definition(task_role=TASK_ROLE),
                                                while_running=renew_before_expiry)
    uri = relative_uri(task.credentials_id)
    for name in ("migrate", "app"):  # the dependency container too
        assert printed[name]["uri"] == uri and environment_of(inspected[name])[RELATIVE_URI_VARIABLE] == uri
        status, credentials = printed[name]["credentials"]
        assert status == 200 and set(credentials) == {"RoleArn", "AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        assert credentials["RoleArn"] == TASK_ROLE and credentials["AccessKeyId"].startswith("ASIA")
        assert datetime.strptime(credentials["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) > datetime.now(timezone.utc)
        assert printed[name]["other_id"] == [400, {"code": "InvalidIdInRequest", "message": "CredentialsV2Request: Credentials not found",
                                                   "HTTPErrorCode": 400}]
        assert not any(key.startswith("AWS_") and key != RELATIVE_URI_VARIABLE for key in environment_of(inspected[name]))
    credentials = printed["app"]["credentials"][1]
    # Real credentials of the emulator: its STS maps them to the task role's session for this task.
    identity = boto3.client("sts", region_name="us-east-1", aws_access_key_id=credentials["AccessKeyId"],
                            aws_secret_access_key=credentials["SecretAccessKey"],
                            aws_session_token=credentials["Token"]).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:sts::123456789012:assumed-role/staging-task/{task.task_id}"
    assert credentials["AccessKeyId"] != task.execution_role.access_key_id  # the agent's credentials never reach a container
    assert [capability.removeprefix("CAP_") for capability in inspected[NAMESPACE]["HostConfig"]["CapAdd"]] == ["NET_ADMIN"]
    # Credentials near their expiry are replaced by a new session; the containers read the new ones at once.
    assert renewal["renewed"] != renewal["served"] == credentials["AccessKeyId"] and renewal["read"] == renewal["renewed"]


def test_a_task_without_a_task_role_has_no_credentials_variable_and_no_endpoint(task_world, emulated_aws):
    task, printed, inspected = run_reading_task(task_world, reading_task_definition(task_role=None))
    assert task.credentials_id == ""
    for name in ("migrate", "app"):
        assert printed[name] == {"uri": None}
        assert RELATIVE_URI_VARIABLE not in environment_of(inspected[name])
    assert not inspected[NAMESPACE]["HostConfig"]["CapAdd"]
    assert inspected[NAMESPACE]["Config"]["Entrypoint"] == ["sleep"]
