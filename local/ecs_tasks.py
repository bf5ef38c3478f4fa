"""ECS tasks as real containers: a task definition, as the emulator's ECS holds it, run the way Fargate runs it.

A task is started the way the ECS agent starts one (AWS's *Amazon ECS task definition parameters* and
*task lifecycle* pages, cited in docs/local-emulator.md):

- `awsvpc`: the task has one network namespace and one address of its own on the world's network, held by a
  pause container (as Fargate's does); every container of the task joins it, so they share `localhost`;
- each container's image is pulled from the ECR stand-in (the registry of the box world; an image anywhere
  else cannot be pulled here: the task stops with `CannotPullContainerError`, as on AWS when a pull fails);
- `secrets` are resolved from the emulator's Secrets Manager (or SSM Parameter Store) as the agent does,
  `arn:...:secret:NAME-SUFFIX:json-key:version-stage:version-id`; a secret that cannot be read stops the
  task before any container starts (`ResourceInitializationError`), with the reason ECS gives;
- `environment`, `command`, `entryPoint`, `workingDirectory`, `user`, `readonlyRootFilesystem`, `portMappings`
  (awsvpc: the container port), `healthCheck` (only the task definition's: ECS ignores an image's own
  HEALTHCHECK, so the container runs with none unless the task definition names one), `stopTimeout` (SIGTERM, then
  SIGKILL after it; 30 s when unset, Fargate's default), `ulimits`, `dockerLabels`, a container's `cpu` (a relative
  share), `memory` and `memoryReservation`, the task's `cpu` and `memory` (each container is capped at the task's
  size: Docker has no cgroup per task), `mountPoints` of the task's plain volumes (Fargate's ephemeral task storage: a Docker volume per
  task, removed with it);
- `dependsOn` in order (START, COMPLETE, SUCCESS, HEALTHY): a container whose condition is never met is not
  started, and the task stops;
- an essential container that exits stops the task ("Essential container in task exited"): the others get
  SIGTERM, then SIGKILL after their stop timeout; a non-essential one may exit (the `migrate` container does);
- `awslogs`: each container's output goes to the emulator's CloudWatch Logs, group `awslogs-group`, stream
  `PREFIX/CONTAINER/TASK-ID` (what the awslogs driver names it), shipped by the stand-in as the container runs
  and when it stops;
- `taskRoleArn`: the role is assumed in the emulator's STS for the task and served to its containers at
  169.254.170.2 (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, local/task_credentials.py); `executionRoleArn`: what the
  agent does (`secrets`, awslogs) is signed with that role's credentials, which no container sees. A task
  definition that needs an execution role and names none is refused with the message ECS's RegisterTaskDefinition
  gives.

Anything else a task definition sets is refused when the task would start (`TaskDefinitionRefused`, naming the
container, the key and its value): nothing is silently ignored.
"""
from __future__ import annotations

import json
import re
import secrets as random_tokens
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from local import task_credentials
from local.docker import Daemon, DockerError
from local.task_credentials import AssumedRole

Say = Callable[[str], None]

# Keys a container definition may carry, and what makes a value "not set" (moto adds cpu 0 and empty lists).
HONOURED_CONTAINER_KEYS = {
    "name", "image", "essential", "command", "entryPoint", "environment", "secrets", "portMappings", "healthCheck",
    "user", "readonlyRootFilesystem", "stopTimeout", "cpu", "memory", "memoryReservation", "logConfiguration",
    "dependsOn", "workingDirectory", "mountPoints", "volumesFrom", "ulimits", "dockerLabels", "environmentFiles",
}
HONOURED_TASK_KEYS = {
    "taskDefinitionArn", "family", "revision", "status", "containerDefinitions", "networkMode", "cpu", "memory",
    "requiresCompatibilities", "compatibilities", "executionRoleArn", "taskRoleArn", "volumes", "placementConstraints",
    "runtimePlatform", "registeredAt", "registeredBy", "deregisteredAt", "tags",
}
DEPENDENCY_CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")
NAMESPACE = "~namespace"  # the pause container holding the task's network namespace (ECS shows none)
DEFAULT_STOP_TIMEOUT_SECONDS = 30  # Fargate's default when stopTimeout is unset
MAX_STOP_TIMEOUT_SECONDS = 120  # Fargate's maximum
ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<path>.+)$")
SECRET_ARN = re.compile(r"^(?P<secret>arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[^:]+)"
                        r"(?::(?P<json_key>[^:]*):(?P<stage>[^:]*):(?P<version>[^:]*))?$")
PARAMETER_ARN = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter(?P<name>/.+)$")


class TaskDefinitionRefused(ValueError):
    """The task definition sets something the stand-in cannot honour; the message names it."""


class TaskCannotStart(RuntimeError):
    """A secret, or the image, could not be fetched: the message is the reason ECS gives the stopped task."""


def _is_set(value: Any) -> bool:
    return value not in (None, "", [], {}, 0, False)


def check_task_definition(definition: dict) -> None:
    """Refuse, naming it, the first thing the stand-in cannot run as AWS would."""
    family = definition.get("family", "?")
    for key, value in definition.items():
        if key not in HONOURED_TASK_KEYS and _is_set(value):
            raise TaskDefinitionRefused(f"task definition {family}: {key}={json.dumps(value)[:200]} is not run by the ECS stand-in "
                                        f"(it runs {', '.join(sorted(HONOURED_TASK_KEYS - {'containerDefinitions'}))})")
    if definition.get("networkMode", "awsvpc") != "awsvpc":
        raise TaskDefinitionRefused(f"task definition {family}: networkMode={definition['networkMode']} is not run by the ECS "
                                    "stand-in (it runs awsvpc, Fargate's only mode)")
    if _is_set(definition.get("placementConstraints")):
        raise TaskDefinitionRefused(f"task definition {family}: placementConstraints are not run by the ECS stand-in")
    platform = definition.get("runtimePlatform") or {}
    if platform.get("operatingSystemFamily", "LINUX") != "LINUX":
        raise TaskDefinitionRefused(f"task definition {family}: runtimePlatform.operatingSystemFamily="
                                    f"{platform['operatingSystemFamily']} is not run here (Linux containers only)")
    volumes = {volume.get("name"): volume for volume in definition.get("volumes") or []}
    for name, volume in volumes.items():
        extra = {key: value for key, value in volume.items() if key != "name" and _is_set(value)}
        if extra:
            raise TaskDefinitionRefused(f"task definition {family}: volume {name} sets {sorted(extra)}; the ECS stand-in runs only "
                                        "plain task volumes (Fargate's ephemeral task storage)")
    names = [container.get("name") for container in definition.get("containerDefinitions") or []]
    if not names:
        raise TaskDefinitionRefused(f"task definition {family} has no containers")
    for container in definition["containerDefinitions"]:
        where = f"task definition {family}, container {container.get('name')}"
        for key, value in container.items():
            if key not in HONOURED_CONTAINER_KEYS and _is_set(value):
                raise TaskDefinitionRefused(f"{where}: {key}={json.dumps(value)[:200]} is not run by the ECS stand-in "
                                            f"(it runs {', '.join(sorted(HONOURED_CONTAINER_KEYS))})")
        for key in ("volumesFrom", "environmentFiles"):
            if _is_set(container.get(key)):
                raise TaskDefinitionRefused(f"{where}: {key} is not run by the ECS stand-in")
        log = container.get("logConfiguration")
        if log and log.get("logDriver") != "awslogs":
            raise TaskDefinitionRefused(f"{where}: logDriver={log.get('logDriver')} is not run by the ECS stand-in (awslogs only)")
        if log and "awslogs-group" not in (log.get("options") or {}):
            raise TaskDefinitionRefused(f"{where}: the awslogs log configuration names no awslogs-group")
        for mapping in container.get("portMappings") or []:
            if mapping.get("protocol", "tcp") != "tcp":
                raise TaskDefinitionRefused(f"{where}: portMappings protocol {mapping['protocol']} is not run here (tcp only)")
            if mapping.get("hostPort") not in (None, mapping.get("containerPort")):
                # AWS refuses this too for awsvpc: the host port must be the container port.
                raise TaskDefinitionRefused(f"{where}: hostPort {mapping['hostPort']} differs from containerPort "
                                            f"{mapping.get('containerPort')}; awsvpc requires them equal")
        for dependency in container.get("dependsOn") or []:
            if dependency.get("containerName") not in names:
                raise TaskDefinitionRefused(f"{where}: dependsOn names {dependency.get('containerName')!r}, not a container of the task")
            if dependency.get("condition") not in DEPENDENCY_CONDITIONS:
                raise TaskDefinitionRefused(f"{where}: dependsOn condition {dependency.get('condition')!r}; "
                                            f"allowed: {', '.join(DEPENDENCY_CONDITIONS)}")
        for mount in container.get("mountPoints") or []:
            if mount.get("sourceVolume") not in volumes:
                raise TaskDefinitionRefused(f"{where}: mountPoints names volume {mount.get('sourceVolume')!r}, not a volume of the task")
        if container.get("stopTimeout") is not None and not 2 <= int(container["stopTimeout"]) <= MAX_STOP_TIMEOUT_SECONDS:
            raise TaskDefinitionRefused(f"{where}: stopTimeout {container['stopTimeout']}; Fargate allows 2 to {MAX_STOP_TIMEOUT_SECONDS} s")
    if not any(container.get("essential", True) for container in definition["containerDefinitions"]):
        raise TaskDefinitionRefused(f"task definition {family}: no container is essential; ECS requires at least one")
    missing_execution_role = execution_role_refusal(definition)
    if missing_execution_role:
        raise TaskDefinitionRefused(f"task definition {family}: ClientException: {missing_execution_role}")


def execution_role_refusal(definition: dict) -> str | None:
    """ECS's RegisterTaskDefinition message when the agent would need an execution role the definition does not name
    (AWS's *task execution IAM role* page: secrets; on Fargate, awslogs and private ECR images), else None."""
    if _is_set(definition.get("executionRoleArn")):
        return None
    containers = definition.get("containerDefinitions") or []
    if any(_is_set(container.get("secrets")) for container in containers):
        return "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
    if "FARGATE" not in (definition.get("requiresCompatibilities") or []):
        return None  # on EC2 the container instance's role does the agent's work
    if any((container.get("logConfiguration") or {}).get("logDriver") == "awslogs" for container in containers):
        return "Fargate requires task definition to have execution role ARN to support log driver awslogs."
    if any(ECR_HOST.match(container.get("image", "")) for container in containers):
        return "Fargate requires task definition to have execution role ARN to support ECR images."
    return None


def start_order(definition: dict) -> list[dict]:
    """The containers in an order that starts each after the containers it depends on (refuses a cycle)."""
    containers = {container["name"]: container for container in definition["containerDefinitions"]}
    ordered: list[dict] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(container["name"] == name for container in ordered):
            return
        if name in visiting:
            raise TaskDefinitionRefused(f"task definition {definition.get('family')}: dependsOn has a cycle through {name}")
        visiting.add(name)
        for dependency in containers[name].get("dependsOn") or []:
            visit(dependency["containerName"])
        visiting.discard(name)
        ordered.append(containers[name])

    for name in containers:
        visit(name)
    return ordered


def registry_reference(image: str, registry_host: str) -> str:
    """The ECR image as the ECR stand-in serves it (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG` ->
    `REGISTRY_HOST/REPO:TAG`); any other registry cannot be reached from here."""
    found = ECR_HOST.match(image)
    if not found:
        raise TaskCannotStart(f"CannotPullContainerError: {image} is not in the stage's ECR; the ECS stand-in pulls only from the "
                                "ECR stand-in (no other registry is reachable here)")
    return f"{registry_host}/{found.group('path')}"


def resolve_secret(value_from: str, *, secretsmanager, ssm) -> str:
    """One `secrets` entry's value, as the ECS agent resolves it (Secrets Manager ARN with an optional JSON key,
    version stage and version id; or an SSM parameter's ARN or name)."""
    found = SECRET_ARN.match(value_from)
    if found:
        request: dict[str, str] = {"SecretId": found.group("secret")}
        if found.group("stage"):
            request["VersionStage"] = found.group("stage")
        if found.group("version"):
            request["VersionId"] = found.group("version")
        try:
            value = secretsmanager.get_secret_value(**request)["SecretString"]
        except Exception as error:  # noqa: BLE001 (botocore's ClientError: its code and message are the reason)
            raise TaskCannotStart(
                "ResourceInitializationError: unable to pull secrets or registry auth: unable to retrieve secret from asm: "
                f"failed to fetch secret {found.group('secret')} from secrets manager: {_client_error(error)}") from None
        if not found.group("json_key"):
            return value
        try:
            document = json.loads(value)
        except json.JSONDecodeError:
            raise TaskCannotStart(f"ResourceInitializationError: unable to retrieve secret from asm: secret {found.group('secret')} "
                                    f"is not JSON, so it has no key {found.group('json_key')!r}") from None
        if not isinstance(document, dict) or found.group("json_key") not in document:
            raise TaskCannotStart(f"ResourceInitializationError: unable to retrieve secret from asm: retrieved secret from Secrets "
                                    f"Manager did not contain json key {found.group('json_key')}")
        return str(document[found.group("json_key")])
    parameter = PARAMETER_ARN.match(value_from)
    name = parameter.group("name") if parameter else value_from
    try:
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as error:  # noqa: BLE001
        raise TaskCannotStart(f"ResourceInitializationError: unable to pull secrets or registry auth: unable to retrieve secrets "
                                f"from ssm: {name}: {_client_error(error)}") from None


def _client_error(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return f"{code}: {response['Error'].get('Message', '')}" if code else str(error)


def memory_limit_mib(definition: dict, container: dict) -> int | None:
    """The container's hard memory limit: its own `memory`, else the task's (Docker has no task-wide cgroup)."""
    for value in (container.get("memory"), definition.get("memory")):
        if _is_set(value):
            return int(value)
    return None


def run_arguments(definition: dict, container: dict, *, name: str, namespace: str, image: str, environment: dict[str, str],
                  labels: dict[str, str], volumes: dict[str, str]) -> list[str]:
    """`docker run` arguments for one container of a task: what the task definition says, nothing more (pure)."""
    arguments = ["run", "--detach", "--name", name, "--network", f"container:{namespace}"]
    for key, value in {**labels, **(container.get("dockerLabels") or {})}.items():
        arguments += ["--label", f"{key}={value}"]
    for key, value in environment.items():
        arguments += ["--env", f"{key}={value}"]
    if container.get("user"):
        arguments += ["--user", str(container["user"])]
    if container.get("readonlyRootFilesystem"):
        arguments += ["--read-only"]
    if container.get("workingDirectory"):
        arguments += ["--workdir", container["workingDirectory"]]
    stop_timeout = int(container.get("stopTimeout") or DEFAULT_STOP_TIMEOUT_SECONDS)
    arguments += ["--stop-timeout", str(stop_timeout)]
    memory = memory_limit_mib(definition, container)
    if memory:
        arguments += ["--memory", f"{memory}m"]
    if _is_set(container.get("memoryReservation")):
        arguments += ["--memory-reservation", f"{int(container['memoryReservation'])}m"]
    if _is_set(definition.get("cpu")):
        arguments += ["--cpus", f"{int(definition['cpu']) / 1024:g}"]  # the task's size is a hard cap; 1024 units are one vCPU
    if _is_set(container.get("cpu")):
        arguments += ["--cpu-shares", str(int(container["cpu"]))]  # a container's own units are a relative share, as on ECS
    for limit in container.get("ulimits") or []:
        arguments += ["--ulimit", f"{limit['name']}={limit['softLimit']}:{limit['hardLimit']}"]
    for mount in container.get("mountPoints") or []:
        arguments += ["--volume", f"{volumes[mount['sourceVolume']]}:{mount['containerPath']}{':ro' if mount.get('readOnly') else ''}"]
    check = container.get("healthCheck")
    if check:
        command = list(check["command"])
        # Docker runs --health-cmd under /bin/sh -c: the exec form (CMD) is quoted for the shell to split back.
        test = command[1] if command[0] == "CMD-SHELL" else shlex.join(command[1:]) if command[0] == "CMD" else shlex.join(command)
        arguments += ["--health-cmd", test, "--health-interval", f"{int(check.get('interval', 30))}s",
                      "--health-timeout", f"{int(check.get('timeout', 5))}s", "--health-retries", str(int(check.get("retries", 3))),
                      "--health-start-period", f"{int(check.get('startPeriod', 0))}s"]
    else:
        arguments += ["--no-healthcheck"]  # ECS never runs an image's own HEALTHCHECK
    if container.get("entryPoint"):
        arguments += ["--entrypoint", container["entryPoint"][0]]
    arguments.append(image)
    if container.get("entryPoint"):
        arguments += container["entryPoint"][1:]
    arguments += list(container.get("command") or [])
    return arguments


def log_stream(container: dict, task_id: str) -> str | None:
    """The awslogs stream ECS names: `PREFIX/CONTAINER/TASK-ID` (the task id alone without a prefix)."""
    log = container.get("logConfiguration")
    if not log:
        return None
    prefix = (log.get("options") or {}).get("awslogs-stream-prefix")
    return f"{prefix}/{container['name']}/{task_id}" if prefix else task_id


@dataclass
class World:
    """What a task reaches: the box world's network, registry and names (local/boxes.py), on this machine's Docker."""

    daemon: Daemon
    name: str  # the world's name: containers carry the label liftoff.harness=NAME, and go with it
    network: str
    registry_host: str  # 127.0.0.1:PORT, the ECR stand-in published on loopback
    pause_image: str  # any image with `sleep` (the box image): holds each task's network namespace
    hosts: dict[str, str] = field(default_factory=dict)  # names the task resolves (the RDS endpoint) -> address


@dataclass
class Task:
    """One task, as ECS describes it; its fields change as the stand-in runs it (read them under `lock`)."""

    arn: str
    task_id: str
    definition_arn: str
    group: str  # service:NAME
    started_by: str
    last_status: str = "PROVISIONING"
    desired_status: str = "RUNNING"
    health_status: str = "UNKNOWN"
    address: str = ""
    stopped_reason: str = ""
    stop_code: str = ""
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    stopped_at: float | None = None
    containers: dict[str, dict] = field(default_factory=dict)  # name -> {"id", "image", "essential", "exit_code", "status"}
    volumes: list[str] = field(default_factory=list)  # Docker volumes standing in for the task's ephemeral storage
    credentials_id: str = ""  # in AWS_CONTAINER_CREDENTIALS_RELATIVE_URI; empty when the task has no task role
    task_role: AssumedRole | None = field(default=None, repr=False)  # what the task's containers get at 169.254.170.2
    execution_role: AssumedRole | None = field(default=None, repr=False)  # what the agent signs its own calls with
    refresh_retry_at: float = 0.0  # after a failed refresh of the task role's credentials, the next try
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def describe(self) -> dict:
        """The task as `DescribeTasks` shows one (the fields liftoff and the scheduler read)."""
        with self.lock:
            return {"taskArn": self.arn, "taskDefinitionArn": self.definition_arn, "group": self.group, "startedBy": self.started_by,
                    "lastStatus": self.last_status, "desiredStatus": self.desired_status, "healthStatus": self.health_status,
                    "stoppedReason": self.stopped_reason, "stopCode": self.stop_code, "address": self.address,
                    "createdAt": _iso(self.created_at), "startedAt": _iso(self.started_at), "stoppedAt": _iso(self.stopped_at),
                    "containers": [{"name": name, "image": value["image"], "lastStatus": value["status"],
                                    "exitCode": value.get("exit_code")} for name, value in self.containers.items()
                                   if name != NAMESPACE]}


def _iso(moment: float | None) -> str | None:
    return None if moment is None else datetime.fromtimestamp(moment, timezone.utc).isoformat(timespec="seconds")


class TaskRunner:
    """Starts, watches and stops tasks on `world`; each start runs on its own thread (a pull and a migrate take seconds)."""

    poll_seconds = 0.5

    def __init__(self, world: World, *, session, account: str, region: str, cluster: str, say: Say = print):
        self.world, self.session, self.account, self.region, self.cluster, self.say = world, session, account, region, cluster, say
        self._pulled: set[str] = set()
        self._pull_lock = threading.Lock()

    # --- starting ------------------------------------------------------------------------------

    def start(self, definition: dict, *, group: str, started_by: str = "") -> Task:
        """A new task of `definition`, PROVISIONING at once; it runs (or stops, with its reason) on a thread of its own."""
        task_id = random_tokens.token_hex(16)
        task = Task(arn=f"arn:aws:ecs:{self.region}:{self.account}:task/{self.cluster}/{task_id}", task_id=task_id,
                    definition_arn=definition["taskDefinitionArn"], group=group, started_by=started_by)
        threading.Thread(target=self._run, args=(task, definition), name=f"task {task_id[:8]}", daemon=True).start()
        return task

    def _run(self, task: Task, definition: dict) -> None:
        try:
            check_task_definition(definition)
            containers = start_order(definition)
            self._assume_roles(task, definition)
            environments = {container["name"]: self._environment(task, container) for container in containers}
            images = {container["name"]: registry_reference(container["image"], self.world.registry_host) for container in containers}
            with task.lock:
                task.last_status = "PENDING"
            for image in dict.fromkeys(images.values()):
                self._pull(image)
            if task.desired_status == "STOPPED":
                raise _Stopped("the task was stopped while it started")
            self._start_namespace(task)
            volumes = self._volumes(task, definition)
            for container in containers:
                self._wait_dependencies(task, container)
                self._start_container(task, definition, container, images[container["name"]], environments[container["name"]], volumes)
            with task.lock:
                task.last_status, task.started_at = "RUNNING", time.time()
        except (TaskDefinitionRefused, TaskCannotStart) as error:
            self._stopped(task, str(error), "TaskFailedToStart")
        except _Stopped as reason:
            self._stopped(task, str(reason), "TaskFailedToStart")
        except DockerError as error:
            self._stopped(task, f"CannotStartContainerError: {error}", "TaskFailedToStart")
        except Exception as error:  # noqa: BLE001 (a task never stays PROVISIONING: whatever broke is its stopped reason)
            self._stopped(task, f"the ECS stand-in could not start the task: {type(error).__name__}: {error}", "TaskFailedToStart")

    def _assume_roles(self, task: Task, definition: dict) -> None:
        execution_role, task_role = definition.get("executionRoleArn"), definition.get("taskRoleArn")
        assumed_execution = self._assume(execution_role, task) if _is_set(execution_role) else None
        assumed_task = self._assume(task_role, task) if _is_set(task_role) else None
        with task.lock:
            task.execution_role, task.task_role = assumed_execution, assumed_task
            task.credentials_id = str(uuid.uuid4()) if assumed_task else ""

    def _assume(self, role_arn: str, task: Task) -> AssumedRole:
        # The session names the task, so the emulator's GetCallerIdentity (and its logs) tell which task called.
        response = self.session.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=task.task_id)
        return AssumedRole.from_sts(role_arn, response["Credentials"])

    def _agent_client(self, task: Task, service: str):
        """A client for what the agent does for the task (secrets, awslogs): as the execution role when the task
        definition names one, else with the runner's own credentials (the container instance's role, on EC2)."""
        with task.lock:
            role = task.execution_role
        if role is None:
            return self.session.client(service)
        if role.due_for_refresh(datetime.now(timezone.utc)):
            role = self._assume(role.role_arn, task)
            with task.lock:
                task.execution_role = role
        return self.session.client(service, **role.client_arguments())

    def _environment(self, task: Task, container: dict) -> dict[str, str]:
        values = {item["name"]: item["value"] for item in container.get("environment") or []}
        if container.get("secrets"):
            secretsmanager, ssm = self._agent_client(task, "secretsmanager"), self._agent_client(task, "ssm")
            for secret in container["secrets"]:
                values[secret["name"]] = resolve_secret(secret["valueFrom"], secretsmanager=secretsmanager, ssm=ssm)
        return {**values, **task_credentials.container_environment(task.credentials_id)}

    def _pull(self, image: str) -> None:
        with self._pull_lock:
            if image in self._pulled:
                return
            result = self.world.daemon.run("pull", "--quiet", image, check=False, timeout=600)
            if result.returncode != 0:
                raise TaskCannotStart(f"CannotPullContainerError: pull image manifest has been retried: {image}: "
                                        f"{result.stderr.strip()[-500:]}")
            self._pulled.add(image)

    def _labels(self, task: Task) -> dict[str, str]:
        return {"liftoff.harness": self.world.name, "liftoff.ecs.task": task.task_id, "liftoff.ecs.group": task.group}

    def _start_namespace(self, task: Task) -> None:
        arguments = ["run", "--detach", "--name", f"{self.world.name}-task-{task.task_id[:12]}", "--network", self.world.network]
        for key, value in self._labels(task).items():
            arguments += ["--label", f"{key}={value}"]
        for name, address in self.world.hosts.items():
            arguments += ["--add-host", f"{name}:{address}"]
        if task.task_role:
            # NET_ADMIN for its address and redirect rule: the pause container's own, the task's containers do not get it.
            arguments += ["--cap-add", "NET_ADMIN", "--entrypoint", "python3", self.world.pause_image,
                          "-c", task_credentials.server_source(), "serve", task.credentials_id]
        else:
            # No task role: no variable in any container, so nothing in the task asks for credentials; no endpoint
            # (and no NET_ADMIN) is needed to answer it.
            arguments += ["--entrypoint", "sleep", self.world.pause_image, "infinity"]
        pause = self.world.daemon.run(*arguments).stdout.strip()
        with task.lock:
            task.containers[NAMESPACE] = {"id": pause, "image": self.world.pause_image, "essential": False, "status": "RUNNING"}
        address = self.world.daemon.run("inspect", "--format",
                                        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", pause).stdout.strip()
        with task.lock:
            task.address = address
        if task.task_role:
            self._install_task_role(task, task.task_role)

    def _install_task_role(self, task: Task, role: AssumedRole) -> None:
        """Hand the task role's credentials to the task's endpoint; returns once it answers with them."""
        pause = task.containers[NAMESPACE]["id"]
        result = self.world.daemon.run("exec", "--interactive", pause, "python3", "-c", task_credentials.server_source(),
                                       "install", task.credentials_id, input=json.dumps(role.document()), check=False, timeout=60)
        if result.returncode != 0:
            logs = self.world.daemon.run("logs", "--tail", "20", pause, check=False)
            raise _Stopped(f"the ECS stand-in's task credentials endpoint did not take the task role's credentials: "
                           f"{result.stderr.strip()[-500:]} {(logs.stdout + logs.stderr).strip()[-1000:]}".strip())
        with task.lock:
            task.task_role = role

    def _refresh_task_role(self, task: Task) -> None:
        """New task role credentials before the served ones expire, as the agent gets from ECS."""
        role = task.task_role
        if role is None or not role.due_for_refresh(datetime.now(timezone.utc)) or time.time() < task.refresh_retry_at:
            return
        try:
            self._install_task_role(task, self._assume(role.role_arn, task))
        except Exception as error:  # noqa: BLE001 (the task goes on with the credentials it has; a minute later, again)
            task.refresh_retry_at = time.time() + 60
            self.say(f"  ECS stand-in: task {task.task_id[:8]}: the task role's credentials were not refreshed: {error}")

    def _volumes(self, task: Task, definition: dict) -> dict[str, str]:
        volumes = {}
        for volume in definition.get("volumes") or []:
            name = f"{self.world.name}-task-{task.task_id[:12]}-{volume['name']}"
            self.world.daemon.run("volume", "create", "--label", f"liftoff.harness={self.world.name}", name)
            volumes[volume["name"]] = name
            task.volumes.append(name)
        return volumes

    def _start_container(self, task: Task, definition: dict, container: dict, image: str, environment: dict[str, str],
                         volumes: dict[str, str]) -> None:
        if task.desired_status == "STOPPED":
            raise _Stopped("the task was stopped while it started")
        arguments = run_arguments(definition, container, name=f"{self.world.name}-task-{task.task_id[:12]}-{container['name']}",
                                  namespace=task.containers[NAMESPACE]["id"], image=image, environment=environment,
                                  labels=self._labels(task), volumes=volumes)
        identifier = self.world.daemon.run(*arguments).stdout.strip()
        with task.lock:
            task.containers[container["name"]] = {"id": identifier, "image": container["image"],
                                                  "essential": container.get("essential", True), "status": "RUNNING",
                                                  "log_stream": log_stream(container, task.task_id),
                                                  "log_group": ((container.get("logConfiguration") or {}).get("options") or {}).get("awslogs-group"),
                                                  "shipped_until": ""}

    def _wait_dependencies(self, task: Task, container: dict) -> None:
        for dependency in container.get("dependsOn") or []:
            name, condition = dependency["containerName"], dependency["condition"]
            while True:
                if task.desired_status == "STOPPED":
                    raise _Stopped("the task was stopped while it started")
                state = self._state(task.containers[name]["id"])
                exited = state["Status"] in ("exited", "dead")
                health = (state.get("Health") or {}).get("Status")
                if condition == "START" and state["Status"] != "created":
                    break
                if condition == "COMPLETE" and exited:
                    break
                if condition == "SUCCESS" and exited:
                    if state["ExitCode"] == 0:
                        break
                    raise _Stopped(f"dependency {name} exited {state['ExitCode']} (condition SUCCESS): {container['name']} "
                                   "was never started")
                if condition == "HEALTHY" and health == "healthy":
                    break
                if condition == "HEALTHY" and (exited or health == "unhealthy"):
                    raise _Stopped(f"dependency {name} is {health or state['Status']} (condition HEALTHY): "
                                   f"{container['name']} was never started")
                time.sleep(self.poll_seconds)

    def _state(self, container_id: str) -> dict:
        states = self._states([container_id])
        if container_id not in states:
            raise DockerError(f"container {container_id} is gone")
        return states[container_id]

    # --- watching and stopping ------------------------------------------------------------------

    def observe(self, task: Task) -> None:
        """Bring the task's record up to what its containers do: exits, health; an essential exit stops the task;
        the task role's credentials renewed before they expire."""
        self.observe_all([task])

    def observe_all(self, tasks: list[Task]) -> None:
        """`observe` for each of `tasks`, their containers' states read in one batch (`Daemon.containers`) every pass of
        the stand-in."""
        running = [task for task in tasks if task.last_status == "RUNNING"]
        states = self._states([container["id"] for task in running for name, container in list(task.containers.items())
                               if name != NAMESPACE])
        for task in running:
            self._observe(task, states)

    def _states(self, container_ids: list[str]) -> dict[str, dict]:
        """Each container's `.State` by its id; a container docker no longer knows is left out."""
        if not container_ids:
            return {}
        return {identifier: container["State"] for identifier, container in self.world.daemon.containers(*container_ids).items()}

    def _observe(self, task: Task, states: dict[str, dict]) -> None:
        self._refresh_task_role(task)
        healths, essential_exit = [], None
        for name, container in list(task.containers.items()):
            if name == NAMESPACE:
                continue
            state = states.get(container["id"], {"Status": "dead", "ExitCode": 137})
            if state["Status"] in ("exited", "dead") and container["status"] != "STOPPED":
                with task.lock:
                    container["status"], container["exit_code"] = "STOPPED", state.get("ExitCode")
                self.ship_logs(task, name)
                if container["essential"]:
                    essential_exit = essential_exit or (name, state.get("ExitCode"))
            health = (state.get("Health") or {}).get("Status")
            if container["essential"] and health:
                healths.append(health)
        with task.lock:
            # ECS: the task is HEALTHY when every essential container with a health check is; UNKNOWN without checks.
            task.health_status = ("UNHEALTHY" if "unhealthy" in healths else "HEALTHY" if healths and all(h == "healthy" for h in healths)
                                  else "UNKNOWN")
        if essential_exit:
            self.stop(task, f"Essential container in task exited ({essential_exit[0]} exited {essential_exit[1]})",
                      stop_code="EssentialContainerExited")

    def stop(self, task: Task, reason: str, *, stop_code: str = "ServiceSchedulerInitiated") -> None:
        """SIGTERM every container (reverse start order), SIGKILL after its stop timeout; logs shipped; then removed."""
        with task.lock:
            if task.last_status == "STOPPED" or task.desired_status == "STOPPED" and task.last_status == "DEPROVISIONING":
                return
            task.desired_status = "STOPPED"
            starting = task.last_status in ("PROVISIONING", "PENDING")
        if starting:
            # The starting thread sees desired STOPPED and stops it at its next step (it owns the containers until then).
            with task.lock:
                task.stopped_reason, task.stop_code = task.stopped_reason or reason, task.stop_code or stop_code
            return
        with task.lock:
            task.last_status = "DEPROVISIONING"
        names = [name for name in task.containers if name != NAMESPACE]
        for name in reversed(names):
            container = task.containers[name]
            if container["status"] != "STOPPED":
                # docker stop uses the container's --stop-timeout (its stopTimeout) between SIGTERM and SIGKILL.
                self.world.daemon.run("stop", container["id"], check=False, timeout=MAX_STOP_TIMEOUT_SECONDS + 30)
                state = self._state_or_none(container["id"])
                with task.lock:
                    container["status"], container["exit_code"] = "STOPPED", (state or {}).get("ExitCode")
            self.ship_logs(task, name)
        self._stopped(task, reason, stop_code)

    def _state_or_none(self, container_id: str) -> dict | None:
        try:
            return self._state(container_id)
        except DockerError:
            return None

    def _stopped(self, task: Task, reason: str, stop_code: str) -> None:
        ids = [container["id"] for container in task.containers.values()]
        if ids:
            self.world.daemon.run("rm", "--force", "--volumes", *ids, check=False, timeout=120)
        if task.volumes:
            self.world.daemon.run("volume", "rm", "--force", *task.volumes, check=False)
        with task.lock:
            task.last_status, task.desired_status, task.stopped_at = "STOPPED", "STOPPED", time.time()
            task.stopped_reason, task.stop_code = task.stopped_reason or reason, task.stop_code or stop_code
        self.say(f"  ECS stand-in: task {task.task_id[:8]} ({task.definition_arn.rsplit('/', 1)[-1]}) stopped: {task.stopped_reason}")

    # --- logs ----------------------------------------------------------------------------------

    def ship_logs(self, task: Task, name: str) -> None:
        """What the container wrote since the last shipment, into its awslogs group and stream in the emulator."""
        container = task.containers.get(name) or {}
        if not container.get("log_group"):
            return
        result = self.world.daemon.run("logs", "--timestamps", *(["--since", container["shipped_until"]] if container["shipped_until"] else []),
                                       container["id"], check=False, timeout=60)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if not lines:
            return
        logs = self._agent_client(task, "logs")
        try:
            logs.create_log_stream(logGroupName=container["log_group"], logStreamName=container["log_stream"])
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        events = []
        for line in lines:
            stamp, _, message = line.partition(" ")
            events.append({"timestamp": _millis(stamp), "message": message})
        events.sort(key=lambda event: event["timestamp"])
        logs.put_log_events(logGroupName=container["log_group"], logStreamName=container["log_stream"], logEvents=events)
        container["shipped_until"] = _next_nanosecond(lines[-1].partition(" ")[0])


class _Stopped(Exception):
    """A start that cannot go on; the message is the task's stopped reason."""


def _nanoseconds(stamp: str) -> int:
    """Docker's RFC 3339 timestamp with nanoseconds, as nanoseconds since the epoch."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(whole + "+00:00").timestamp())
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9])


def _millis(stamp: str) -> int:
    try:
        return _nanoseconds(stamp) // 1_000_000
    except ValueError:
        return int(time.time() * 1000)


def _next_nanosecond(stamp: str) -> str:
    """`docker logs --since` is inclusive: the next shipment starts one nanosecond after the last line shipped."""
    following = _nanoseconds(stamp) + 1
    return f"{following // 1_000_000_000}.{following % 1_000_000_000:09d}"
