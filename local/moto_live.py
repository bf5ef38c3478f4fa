"""What really runs on a local ECS cluster, answered by the emulator's own ECS and ELBv2 APIs.

moto's ECS runs no task and keeps no service deployment: its ListTasks knows only tasks RunTask recorded (and
never stops), ListServiceDeployments is not implemented, and DescribeTargetHealth reports whatever was registered
as healthy. The ECS stand-in (local/ecs_service.py) runs a cluster's services on real containers; its agent
(local/ecs_agent.py) publishes what it observes to moto_server several times a second, on `PUBLISH_PATH`, and
takes back what callers asked ECS to do. So the release tool's real adapter (release/adapters/aws.py), or the AWS CLI,
reads a living cluster through the calls it makes on AWS, from any shell:

- ListTasks, DescribeTasks: the stand-in's tasks (ECS keeps a stopped task for about an hour; the stand-in too);
- RunTask: handed to the stand-in, which starts the task; the answer names it (PROVISIONING), as ECS's does;
- ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions: its deployments and revisions;
- StopServiceDeployment: ROLLBACK_REQUESTED at once, then honoured by the stand-in at its next pass;
- DescribeTargetHealth: moto's registrations with the load balancer stand-in's checked states.

A cluster nobody publishes keeps moto's own answers. A publication older than STALE_SECONDS is not passed off as
the truth: the calls fail with ECS's ServerException saying the stand-in stopped reporting (nothing then knows
what runs). Installed in moto_server only (`python -m local.moto_server`), never in the tests' in-process moto.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from moto.core.responses import ActionResult
from moto.ecs import responses as ecs_responses
from moto.ecs.exceptions import ECSException, InvalidParameterException
from moto.elbv2 import responses as elbv2_responses

from local.ecs_agent import PUBLISH_PATH

STALE_SECONDS = 30.0
RUN_TASK_WAIT_SECONDS = 10.0  # the stand-in's agent collects requests several times a second
RUN_TASK_MAX_COUNT = 10  # as ECS: RunTask starts 1 to 10 tasks
STOPPABLE = ("PENDING", "IN_PROGRESS")
REQUESTED = {"ROLLBACK": "ROLLBACK_REQUESTED", "ABORT": "STOP_REQUESTED"}
TIMESTAMP_KEYS = ("createdAt", "startedAt", "stoppedAt", "finishedAt", "updatedAt", "pullStartedAt", "pullStoppedAt")


class ServerException(ECSException):
    code = "ServerException"


class ConflictException(ECSException):
    code = "ConflictException"


class ServiceDeploymentNotFoundException(ECSException):
    code = "ServiceDeploymentNotFoundException"


Key = tuple[str, str, str]  # account, region, cluster name


@dataclass
class Publication:
    """One cluster as its stand-in last saw it (the API's own shapes, timestamps as epoch seconds)."""

    cluster_arn: str
    tasks: list[dict]
    deployments: list[dict]
    revisions: dict[str, dict]
    target_health: dict[str, dict[str, dict]]  # target group ARN -> target id -> {"State", "Reason", "Description"}
    at: float = field(default_factory=time.monotonic)


class LiveClusters:
    """The publications and the requests waiting for each cluster's stand-in (one per moto_server)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, stale_seconds: float = STALE_SECONDS):
        self._clock, self.stale_seconds = clock, stale_seconds
        self._changed = threading.Condition()
        self._published: dict[Key, Publication] = {}
        self._requests: dict[Key, list[dict]] = {}
        self._started: dict[str, str] = {}  # RunTask request id -> the ARN of the task the stand-in started

    def publish(self, key: Key, body: dict) -> list[dict]:
        """Keep the stand-in's view of `key`; hand back the requests waiting for it (each once)."""
        with self._changed:
            self._published[key] = Publication(cluster_arn=body["clusterArn"], tasks=body.get("tasks", []),
                                               deployments=body.get("deployments", []), revisions=body.get("revisions", {}),
                                               target_health=body.get("targetHealth", {}), at=self._clock())
            self._started.update(body.get("started", {}))
            self._changed.notify_all()
            return self._requests.pop(key, [])

    def forget(self, key: Key) -> None:
        """The stand-in stopped on purpose: moto's own answers again."""
        with self._changed:
            self._published.pop(key, None)
            self._requests.pop(key, None)

    def find(self, key: Key) -> Publication | None:
        """The cluster's publication, None when nobody publishes it; raises when its stand-in stopped reporting."""
        with self._changed:
            publication = self._published.get(key)
        if publication is not None:
            age = self._clock() - publication.at
            if age > self.stale_seconds:
                raise ServerException(f"the ECS stand-in running cluster {key[2]} has not reported for {age:.0f} s "
                                      "(stopped or hung): what runs there is unknown")
        return publication

    def in_region(self, account: str, region: str) -> list[Publication]:
        with self._changed:
            keys = [key for key in self._published if key[:2] == (account, region)]
        return [publication for key in keys if (publication := self.find(key)) is not None]

    def request(self, key: Key, request: dict) -> None:
        with self._changed:
            self._requests.setdefault(key, []).append(request)

    def wait_started(self, request_ids: Iterable[str], timeout: float) -> dict[str, str]:
        """The task ARNs the stand-in started for `request_ids`, as many as it did within `timeout`."""
        wanted = list(request_ids)
        deadline = self._clock() + timeout
        with self._changed:
            while not all(request_id in self._started for request_id in wanted):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return {request_id: self._started.pop(request_id) for request_id in wanted if request_id in self._started}

    def mark_stop_requested(self, key: Key, arn: str, status: str) -> None:
        """Until the stand-in's next publication, the deployment reads as ECS shows it right after the call."""
        with self._changed:
            for deployment in self._published[key].deployments:
                if deployment["serviceDeploymentArn"] == arn:
                    deployment["status"] = status


LIVE = LiveClusters()


# --- the stand-in's side of the wire -----------------------------------------------------------------

class PublishEndpoint:
    """WSGI middleware: `POST PUBLISH_PATH` with {account, region, cluster, clusterArn, tasks, deployments, revisions,
    targetHealth, started} answers {"requests": [...]}; `DELETE PUBLISH_PATH?...` forgets the cluster. The rest goes on."""

    def __init__(self, app: Callable[..., Iterable[bytes]], live: LiveClusters = LIVE):
        self._app, self._live = app, live

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PUBLISH_PATH:
            return self._app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            key = (body["account"], body["region"], body["cluster"])
        except (ValueError, KeyError) as error:
            start_response("400 Bad Request", [("Content-Type", "application/json")])
            return [json.dumps({"message": f"a publication needs account, region, cluster: {error}"}).encode()]
        if environ.get("REQUEST_METHOD") == "DELETE":
            self._live.forget(key)
            answer = {"requests": []}
        else:
            answer = {"requests": self._live.publish(key, body)}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]


# --- the API's side ----------------------------------------------------------------------------------

def _cluster_name(value: str | None) -> str:
    return (value or "default").rsplit("/", 1)[-1]


def _with_datetimes(item: dict) -> dict:
    """Epoch seconds as the datetimes moto's serializer writes (nested revisions included)."""
    converted = {}
    for key, value in item.items():
        if key in TIMESTAMP_KEYS and isinstance(value, (int, float)):
            converted[key] = datetime.fromtimestamp(value, timezone.utc)
        elif isinstance(value, dict):
            converted[key] = _with_datetimes(value)
        elif isinstance(value, list):
            converted[key] = [_with_datetimes(v) if isinstance(v, dict) else v for v in value]
        else:
            converted[key] = value
    return converted


def _family(task_definition_arn: str) -> str:
    return task_definition_arn.rsplit("/", 1)[-1].split(":", 1)[0]


def listed_tasks(tasks: Iterable[dict], *, service: str | None, family: str | None, started_by: str | None,
                 desired_status: str | None) -> list[str]:
    """ListTasks' filters as ECS applies them (desired status RUNNING unless asked otherwise)."""
    wanted = desired_status or "RUNNING"
    return [task["taskArn"] for task in tasks
            if task.get("desiredStatus") == wanted
            and (service is None or task.get("group") == f"service:{service.rsplit('/', 1)[-1]}")
            and (family is None or _family(task.get("taskDefinitionArn", "")) == family)
            and (started_by is None or task.get("startedBy") == started_by)]


def described_tasks(tasks: Iterable[dict], wanted: Iterable[str]) -> tuple[list[dict], list[dict]]:
    by_arn = {task["taskArn"]: task for task in tasks}
    by_id = {arn.rsplit("/", 1)[-1]: task for arn, task in by_arn.items()}
    found, failures = [], []
    for name in wanted:
        task = by_arn.get(name) or by_id.get(name)
        if task is None:
            failures.append({"arn": name, "reason": "MISSING"})
        else:
            found.append(_with_datetimes(task))
    return found, failures


def _key(response) -> Key:
    return response.current_account, response.region, _cluster_name(response._get_param("cluster"))


def _live_or_moto(original: Callable, live_answer: Callable) -> Callable:
    def action(self):
        publication = LIVE.find(_key(self))
        return original(self) if publication is None else live_answer(self, publication)
    action.__name__ = original.__name__
    return action


def _list_tasks(self, publication: Publication) -> ActionResult:
    return ActionResult({"taskArns": listed_tasks(publication.tasks, service=self._get_param("serviceName"),
                                                  family=self._get_param("family"), started_by=self._get_param("startedBy"),
                                                  desired_status=self._get_param("desiredStatus"))})


def _describe_tasks(self, publication: Publication) -> ActionResult:
    tasks, failures = described_tasks(publication.tasks, self._get_param("tasks", []))
    return ActionResult({"tasks": tasks, "failures": failures})


def _run_task(self, publication: Publication) -> ActionResult:
    count = int(self._get_param("count", 1) or 1)
    if not 1 <= count <= RUN_TASK_MAX_COUNT:
        raise InvalidParameterException(f"count {count} is not allowed: RunTask starts 1 to {RUN_TASK_MAX_COUNT} tasks")
    if self._get_param("overrides"):
        raise InvalidParameterException("the ECS stand-in cannot honour RunTask overrides (it runs task definitions as "
                                        "registered): register a task definition with what you need instead")
    definition = self.ecs_backend.describe_task_definition(self._get_param("taskDefinition"))
    key = _key(self)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for request_id in ids:
        LIVE.request(key, {"kind": "run_task", "id": request_id, "taskDefinition": definition.arn,
                           "group": self._get_param("group") or f"family:{definition.family}",
                           "startedBy": self._get_param("startedBy") or ""})
    started = LIVE.wait_started(ids, RUN_TASK_WAIT_SECONDS)
    publication = LIVE.find(key) or publication
    tasks, _ = described_tasks(publication.tasks, started.values())
    failures = [{"arn": definition.arn, "reason": f"the ECS stand-in did not start the task within {RUN_TASK_WAIT_SECONDS:.0f} s"}
                for request_id in ids if request_id not in started]
    return ActionResult({"tasks": tasks, "failures": failures})


def _deployments(self) -> list[tuple[Key, dict]]:
    found = []
    for publication in LIVE.in_region(self.current_account, self.region):
        key = (self.current_account, self.region, _cluster_name(publication.cluster_arn))
        found.extend((key, deployment) for deployment in publication.deployments)
    return found


def list_service_deployments(self) -> ActionResult:
    publication = LIVE.find(_key(self))
    if publication is None:
        raise NotImplementedError("The list_service_deployments action has not been implemented")
    service = self._get_param("service", "").rsplit("/", 1)[-1]
    statuses = self._get_param("status") or []
    briefs = [{"serviceDeploymentArn": d["serviceDeploymentArn"], "serviceArn": d["serviceArn"], "clusterArn": d["clusterArn"],
               "startedAt": d.get("startedAt"), "createdAt": d.get("createdAt"), "finishedAt": d.get("finishedAt"),
               "targetServiceRevisionArn": d.get("targetServiceRevision", {}).get("arn"), "status": d["status"],
               "statusReason": d.get("statusReason", "")}
              for d in publication.deployments
              if d["serviceArn"].rsplit("/", 1)[-1] == service and (not statuses or d["status"] in statuses)]
    return ActionResult({"serviceDeployments": [_with_datetimes({k: v for k, v in b.items() if v is not None}) for b in briefs]})


def describe_service_deployments(self) -> ActionResult:
    wanted = self._get_param("serviceDeploymentArns", [])
    known = {deployment["serviceDeploymentArn"]: deployment for _, deployment in _deployments(self)}
    return ActionResult({"serviceDeployments": [_with_datetimes(known[arn]) for arn in wanted if arn in known],
                         "failures": [{"arn": arn, "reason": "MISSING"} for arn in wanted if arn not in known]})


def describe_service_revisions(self) -> ActionResult:
    wanted = self._get_param("serviceRevisionArns", [])
    known = {arn: revision for publication in LIVE.in_region(self.current_account, self.region)
             for arn, revision in publication.revisions.items()}
    return ActionResult({"serviceRevisions": [_with_datetimes(known[arn]) for arn in wanted if arn in known],
                         "failures": [{"arn": arn, "reason": "MISSING"} for arn in wanted if arn not in known]})


def stop_service_deployment(self) -> ActionResult:
    arn = self._get_param("serviceDeploymentArn")
    stop_type = self._get_param("stopType") or "ABORT"
    if stop_type not in REQUESTED:
        raise InvalidParameterException(f"stopType {stop_type!r} is not allowed: ROLLBACK or ABORT")
    found = next(((key, deployment) for key, deployment in _deployments(self) if deployment["serviceDeploymentArn"] == arn), None)
    if found is None:
        raise ServiceDeploymentNotFoundException(f"service deployment {arn} does not exist")
    key, deployment = found
    if deployment["status"] not in STOPPABLE:
        raise ConflictException(f"service deployment {arn} is {deployment['status']}: only a deployment PENDING or "
                                "IN_PROGRESS can be stopped")
    LIVE.mark_stop_requested(key, arn, REQUESTED[stop_type])
    LIVE.request(key, {"kind": "stop_deployment", "arn": arn, "stopType": stop_type})
    return ActionResult({"serviceDeploymentArn": arn})


_original_describe_target_health = elbv2_responses.ELBV2Response.describe_target_health


def describe_target_health(self) -> ActionResult:
    """moto's registrations (what the caller and the stand-in registered), each with the state the load balancer
    stand-in's checks gave it, where a stand-in publishes the group."""
    group = self._get_param("TargetGroupArn")
    checked = next((publication.target_health[group] for publication in LIVE.in_region(self.current_account, self.region)
                    if group in publication.target_health), None)
    if checked is None:
        return _original_describe_target_health(self)
    descriptions = self.elbv2_backend.describe_target_health(group, self._get_param("Targets", []))
    for description in descriptions:
        state = checked.get(description.instance_id, {"State": "initial", "Reason": "Elb.RegistrationInProgress",
                                                      "Description": "Target registration is in progress"})
        description.status, description.reason, description.description = state["State"], state.get("Reason"), state.get("Description")
    return ActionResult({"TargetHealthDescriptions": descriptions})


def install() -> None:
    """Answer live clusters from their stand-in's publications (moto_server calls this at start)."""
    response = ecs_responses.EC2ContainerServiceResponse
    response.list_tasks = _live_or_moto(response.list_tasks, _list_tasks)
    response.describe_tasks = _live_or_moto(response.describe_tasks, _describe_tasks)
    response.run_task = _live_or_moto(response.run_task, _run_task)
    response.list_service_deployments = list_service_deployments
    response.describe_service_deployments = describe_service_deployments
    response.describe_service_revisions = describe_service_revisions
    response.stop_service_deployment = stop_service_deployment
    elbv2_responses.ELBV2Response.describe_target_health = describe_target_health
