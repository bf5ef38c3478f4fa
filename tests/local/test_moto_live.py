"""The emulator answers a living cluster's ECS and ELBv2 calls from what its stand-in publishes (local/moto_live.py),
so the release tool's real adapter reads it as it reads AWS. One moto_server for the module; the stand-in's side is
the real agent (local/ecs_agent.py) in front of a recorded stand-in, so no Docker is needed here (tests/local/
test_ecs_stage.py runs the whole on real tasks)."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.exceptions import ClientError

from local import emulator as emulators
from local.ecs_agent import EcsAgent
from local.moto_live import LiveClusters, ServerException, described_tasks, listed_tasks
from release.pure import ecs_deployments as e
from release.adapters.aws import Aws

REGION, ACCOUNT, CLUSTER, SERVICE = "us-east-1", "123456789012", "live", "web"
NOW = 1_790_000_000.0


@dataclass
class RecordedRunner:
    account: str = ACCOUNT
    region: str = REGION


@dataclass
class StartedTask:
    arn: str


@dataclass
class RecordedStandIn:
    """What the agent needs of an EcsStandIn: its snapshot, and the two things callers may ask of it."""

    published: dict
    cluster: str = CLUSTER
    runner: RecordedRunner = field(default_factory=RecordedRunner)
    stops: list = field(default_factory=list)
    runs: list = field(default_factory=list)

    def snapshot(self) -> dict:
        return self.published

    def request_stop(self, arn: str, stop_type: str = "ROLLBACK") -> None:
        # As local/ecs_service.py's: the deployment reads as requested from the stand-in's next publication on (the
        # agent publishes again at once after acting on the request).
        for deployment in self.published["deployments"]:
            if deployment["serviceDeploymentArn"] == arn:
                if deployment["status"] not in ("PENDING", "IN_PROGRESS"):
                    raise ValueError(f"service deployment {arn} is {deployment['status']}")
                deployment["status"] = "ROLLBACK_REQUESTED" if stop_type == "ROLLBACK" else "STOP_REQUESTED"
        self.stops.append((arn, stop_type))

    def run_one_off(self, definition_arn: str, *, group: str, started_by: str = "") -> StartedTask:
        task_id = f"oneoff{len(self.runs)}"
        arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id}"
        self.runs.append((definition_arn, group, started_by))
        self.published["tasks"].append(task(task_id, definition_arn, group=group, started_by=started_by, status="PROVISIONING"))
        return StartedTask(arn)


def task(task_id: str, definition: str, *, group: str = f"service:{SERVICE}", status: str = "RUNNING", started_by: str = "ecs-svc",
         image: str = "repo:1.2.0", stopped_reason: str = "") -> dict:
    stopped = status == "STOPPED"
    return {"taskArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/{task_id}", "taskDefinitionArn": definition, "group": group,
            "startedBy": started_by, "lastStatus": status, "desiredStatus": "STOPPED" if stopped else "RUNNING",
            "healthStatus": "UNKNOWN", "stoppedReason": stopped_reason, "stopCode": "TaskFailedToStart" if stopped else "",
            "createdAt": NOW, "startedAt": None if stopped else NOW + 5, "stoppedAt": NOW + 9 if stopped else None,
            "containers": [{"name": "app", "image": image, "lastStatus": status, "exitCode": None}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
            patch.setenv(name, value)
        state = tmp_path_factory.mktemp("moto-live")
        running = emulators.start(state)
        try:
            session = boto3.Session(region_name=REGION)
            ecs = session.client("ecs", endpoint_url=running.endpoint)
            ecs.create_cluster(clusterName=CLUSTER)
            old = ecs.register_task_definition(family="web", containerDefinitions=[{"name": "app", "image": "repo:1.1.0", "memory": 512}])
            new = ecs.register_task_definition(family="web", containerDefinitions=[{"name": "app", "image": "repo:1.2.0", "memory": 512}])
            service = ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=new["taskDefinition"]["taskDefinitionArn"],
                                         desiredCount=1)["service"]
            elbv2 = session.client("elbv2", endpoint_url=running.endpoint)
            vpc = session.client("ec2", endpoint_url=running.endpoint).create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
            groups = [elbv2.create_target_group(Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
                      for name in ("blue", "green", "elsewhere")]
            for group in groups:
                elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.1.5", "Port": 8080}, {"Id": "10.0.1.6", "Port": 8080}])
            yield {"endpoint": running.endpoint, "session": session, "ecs": ecs, "elbv2": elbv2, "service": service, "groups": groups,
                   "old": old["taskDefinition"]["taskDefinitionArn"], "new": new["taskDefinition"]["taskDefinitionArn"]}
        finally:
            emulators.stop(running, state)


def publication(world) -> dict:
    service_arn = world["service"]["serviceArn"]
    revision = service_arn.replace(":service/", ":service-revision/")
    blue, green, _ = world["groups"]

    def summary(arn: str, weight: float) -> dict:
        return {"arn": arn, "requestedTaskCount": 1, "runningTaskCount": 1, "pendingTaskCount": 0, "requestedProductionTrafficWeight": weight}

    def deployment(name: str, status: str, stage: str) -> dict:
        return {"serviceDeploymentArn": f"{service_arn.replace(':service/', ':service-deployment/')}/{name}", "serviceArn": service_arn,
                "clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}", "createdAt": NOW, "startedAt": NOW,
                "updatedAt": NOW + 30, "status": status, "statusReason": "", "lifecycleStage": stage,
                "targetServiceRevision": summary(f"{revision}/2", 100.0), "sourceServiceRevisions": [summary(f"{revision}/1", 0.0)],
                "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 5}}

    return {"clusterArn": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}",
            "tasks": [task("new1", world["new"]), task("old1", world["old"], image="repo:1.1.0"),
                      task("bad1", world["new"], status="STOPPED", stopped_reason="ResourceInitializationError: unable to pull secrets")],
            "deployments": [deployment("baking", "IN_PROGRESS", "BAKE_TIME"), deployment("done", "SUCCESSFUL", "CLEAN_UP")],
            "revisions": {f"{revision}/{n}": {"serviceRevisionArn": f"{revision}/{n}", "serviceArn": service_arn, "taskDefinition": definition,
                                              "containerImages": [{"containerName": "app", "image": image}]}
                          for n, definition, image in ((1, world["old"], "repo:1.1.0"), (2, world["new"], "repo:1.2.0"))},
            "targetHealth": {blue: {"10.0.1.5": {"State": "healthy"}},
                             green: {"10.0.1.5": {"State": "unhealthy", "Reason": "Target.FailedHealthChecks", "Description": "x"}}}}


@pytest.fixture
def live(world):
    stand_in = RecordedStandIn(publication(world))
    agent = EcsAgent(stand_in, endpoint_url=world["endpoint"], say=lambda _line: None)
    agent.start()
    try:
        yield stand_in
    finally:
        agent.stop()


def real(world) -> Aws:
    return Aws(session=_EndpointSession(world["session"], world["endpoint"]))


class _EndpointSession:
    def __init__(self, session, endpoint):
        self.session, self.endpoint = session, endpoint

    def client(self, name, **kwargs):
        return self.session.client(name, endpoint_url=self.endpoint, **kwargs)


def test_the_real_adapter_reads_the_published_tasks_and_why_one_stopped(world, live):
    running = real(world).ecs_running(CLUSTER, SERVICE)
    assert sorted((t["task"], t["status"], t["image"]) for t in running["tasks"]) == [("new1", "RUNNING", "repo:1.2.0"),
                                                                                      ("old1", "RUNNING", "repo:1.1.0")]
    assert [(t["task"], t["reason"]) for t in running["stopped_tasks"]] == [("bad1", "ResourceInitializationError: unable to pull secrets")]
    assert running["stopped_tasks"][0]["stopped_at"].startswith("2026-")


def test_an_unpublished_cluster_keeps_motos_answers_and_a_withdrawn_one_goes_back_to_them(world):
    ecs = world["ecs"]
    assert ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE)["taskArns"] == []
    stand_in = RecordedStandIn(publication(world))
    agent = EcsAgent(stand_in, endpoint_url=world["endpoint"], say=lambda _line: None)
    agent.start()
    assert len(ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE)["taskArns"]) == 2
    agent.stop()
    assert ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE)["taskArns"] == []


def test_the_real_adapter_finds_the_baking_deployment_with_its_revisions(world, live):
    (baking,) = real(world).ecs_deployments(CLUSTER, SERVICE)  # the SUCCESSFUL one is not in progress
    assert (baking.arn.rsplit("/", 1)[-1], baking.status, baking.lifecycle_stage, baking.bake_minutes) == ("baking", "IN_PROGRESS", "BAKE_TIME", 5)
    assert (baking.target.tag, baking.target.production_weight) == ("1.2.0", 100.0)
    assert [(s.tag, s.production_weight) for s in baking.sources] == [("1.1.0", 0.0)]
    decision, _why = e.decide_fast_rollback("BLUE_GREEN", [baking])
    assert decision is not None and decision.to_tag == "1.1.0"


def test_stop_service_deployment_reads_as_requested_at_once_and_reaches_the_stand_in(world, live):
    adapter = real(world)
    arn = adapter.ecs_deployments(CLUSTER, SERVICE)[0].arn
    adapter.stop_ecs_deployment(arn)
    assert adapter.ecs_deployment_status(arn) == "ROLLBACK_REQUESTED"
    deadline = time.monotonic() + 5
    while not live.stops and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live.stops == [(arn, "ROLLBACK")]
    # And from then on, from the stand-in's own publications (the agent publishes several times a second).
    time.sleep(3 * EcsAgent.interval)
    assert adapter.ecs_deployment_status(arn) == "ROLLBACK_REQUESTED"


def test_stopping_a_finished_or_unknown_deployment_is_refused_as_ecs_refuses_it(world, live):
    done = publication(world)["deployments"][1]["serviceDeploymentArn"]
    with pytest.raises(ClientError) as finished:
        world["ecs"].stop_service_deployment(serviceDeploymentArn=done, stopType="ROLLBACK")
    assert finished.value.response["Error"]["Code"] == "ConflictException" and "is SUCCESSFUL" in str(finished.value)
    with pytest.raises(ClientError) as unknown:
        world["ecs"].stop_service_deployment(serviceDeploymentArn=done.replace("/done", "/nope"), stopType="ROLLBACK")
    assert unknown.value.response["Error"]["Code"] == "ServiceDeploymentNotFoundException"
    assert live.stops == []


def test_run_task_is_started_by_the_stand_in_and_answered_with_its_task(world, live):
    ecs = world["ecs"]
    started = ecs.run_task(cluster=CLUSTER, taskDefinition=world["old"], count=1, startedBy="liftoff-migrate", launchType="FARGATE")
    (one,) = started["tasks"]
    assert started["failures"] == [] and one["taskArn"].endswith("/oneoff0") and one["lastStatus"] == "PROVISIONING"
    assert live.runs == [(world["old"], "family:web", "liftoff-migrate")]
    assert ecs.list_tasks(cluster=CLUSTER, startedBy="liftoff-migrate")["taskArns"] == [one["taskArn"]]
    with pytest.raises(ClientError, match="cannot honour RunTask overrides"):
        ecs.run_task(cluster=CLUSTER, taskDefinition=world["old"], overrides={"containerOverrides": [{"name": "app", "command": ["x"]}]})


def test_target_health_is_the_checked_state_of_each_registration(world, live):
    blue, green, elsewhere = world["groups"]
    adapter = real(world)
    assert sorted((t["target"], t["state"]) for t in adapter.target_health(blue)) == [("10.0.1.5", "healthy"), ("10.0.1.6", "initial")]
    assert ("10.0.1.5", "unhealthy", "Target.FailedHealthChecks") in [(t["target"], t["state"], t["reason"]) for t in adapter.target_health(green)]
    # A group no stand-in publishes keeps moto's answer.
    assert {t["target"] for t in adapter.target_health(elsewhere)} == {"10.0.1.5", "10.0.1.6"}


# --- the pure parts -------------------------------------------------------------------------------

def test_list_tasks_filters_as_ecs_does():
    tasks = [task("a", "arn:x:task-definition/web:2"), task("b", "arn:x:task-definition/web-migrate:1", group="family:web-migrate",
                                                        started_by="liftoff-migrate"),
             task("c", "arn:x:task-definition/web:1", status="STOPPED")]
    arns = lambda found: [arn.rsplit("/", 1)[-1] for arn in found]  # noqa: E731
    assert arns(listed_tasks(tasks, service=None, family=None, started_by=None, desired_status=None)) == ["a", "b"]
    assert arns(listed_tasks(tasks, service=SERVICE, family=None, started_by=None, desired_status="STOPPED")) == ["c"]
    assert arns(listed_tasks(tasks, service=None, family="web-migrate", started_by=None, desired_status=None)) == ["b"]
    assert arns(listed_tasks(tasks, service=None, family=None, started_by="ecs-svc", desired_status=None)) == ["a"]
    found, failures = described_tasks(tasks, ["a", tasks[2]["taskArn"], "zzz"])
    assert [t["taskArn"].rsplit("/", 1)[-1] for t in found] == ["a", "c"] and failures == [{"arn": "zzz", "reason": "MISSING"}]


def test_a_publication_its_stand_in_stopped_refreshing_is_an_error_not_the_truth():
    now = [100.0]
    live = LiveClusters(clock=lambda: now[0], stale_seconds=30)
    key = (ACCOUNT, REGION, CLUSTER)
    live.publish(key, {"clusterArn": "c", "tasks": [task("a", "d")]})
    assert live.find(key).tasks[0]["taskArn"].endswith("/a")
    now[0] += 31
    with pytest.raises(ServerException, match="has not reported for 31 s"):
        live.find(key)
    assert live.find((ACCOUNT, REGION, "other")) is None


def test_run_task_waits_for_the_stand_in_to_name_the_task_and_gives_up_after_its_timeout():
    live = LiveClusters()
    key = (ACCOUNT, REGION, CLUSTER)
    live.publish(key, {"clusterArn": "c"})
    live.request(key, {"kind": "run_task", "id": "r1"})
    threading.Timer(0.1, lambda: live.publish(key, {"clusterArn": "c", "started": {"r1": "arn:task/1"}})).start()
    assert live.wait_started(["r1"], timeout=5) == {"r1": "arn:task/1"}
    assert live.wait_started(["r2"], timeout=0.1) == {}
