"""The ECS stand-in's service scheduler: it follows the emulator's ECS services and deploys them as ECS does.

Every `interval` seconds (one Follower) it reads each service of the cluster from the emulator (task
definition revision, desired count, deployment configuration, load balancers: what local/moto_models.py
keeps from the template) and moves the real tasks (local/ecs_tasks.py) towards it, the way AWS's
documentation describes ECS's deployment controller (docs/local-emulator.md cites each page):

- a new revision starts a *service deployment*; `rolling` (strategy ROLLING): new tasks up to
  `maximumPercent` of the desired count, each registered in the target group once RUNNING; an old task
  is deregistered (it drains for the group's deregistration delay) and stopped only while the healthy
  tasks stay at or above `minimumHealthyPercent`;
- `blue_green` (BLUE_GREEN): the new ("green") tasks are registered in the target group the production
  listener rule sends nothing to; once all are healthy, the rule's weights move every request to it
  (PRODUCTION_TRAFFIC_SHIFT), the old ("blue") tasks stay running and registered for `bakeTimeInMinutes`
  (BAKE_TIME), then are deregistered and stopped (CLEAN_UP); `canary` and `linear` move the weights in steps
  (`canaryPercent` then the rest after `canaryBakeTimeInMinutes`; `stepPercent` every `stepBakeTimeInMinutes`)
  before the same bake;
- a release alarm of `deploymentConfiguration.alarms` in ALARM during the deployment or its bake, the
  deployment circuit breaker's threshold of failed tasks (rolling and blue/green, as on AWS), or `StopServiceDeployment`
  with ROLLBACK: the deployment rolls back. With a traffic shift that is the rule's weights back to the old group
  (no task starts) and the new tasks stopped; in rolling, a new deployment of the last revision that succeeded.
  Either way the service's task definition names the revision that runs again;
- launches that fail in a row are retried after 5 s, doubling to 60 s (ECS throttles them too);
- steady state: a task that stops, or that fails the target group's health checks after the service's
  `healthCheckGracePeriodSeconds`, is replaced; a desired count change starts or stops tasks.

What ECS does that this does not: placement across zones, capacity providers, Service Connect, task
scale-in protection, service events, and the test listener (TEST_TRAFFIC_SHIFT); CloudFormation's wait for
the deployment (moto finishes the stack update at once, so `liftoff` verifies against these tasks instead).
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from local.ecs_tasks import Task, TaskRunner
from local.follower import Follower
from local.lb import Controller

Say = Callable[[str], None]
ROLLING, BLUE_GREEN, CANARY, LINEAR = "ROLLING", "BLUE_GREEN", "CANARY", "LINEAR"
SHIFTING = (BLUE_GREEN, CANARY, LINEAR)  # strategies with two target groups, a traffic shift and a bake
# AWS, *Amazon ECS deployment failure detection*: the circuit breaker serves rolling and blue/green deployments.
BREAKER_STRATEGIES = (ROLLING, BLUE_GREEN)
LAUNCH_BACKOFF_SECONDS = (5, 10, 20, 40, 60)  # between failed launches in a row (ECS throttles them too)
ACTIVE_STATUSES = ("PENDING", "IN_PROGRESS", "ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS")
STOPPED_KEPT_SECONDS = 3600  # DescribeTasks shows a stopped task for about an hour
# The load balancer stand-in's states as DescribeTargetHealth words them (reason codes from the ELBv2 API).
TARGET_STATES = {
    "healthy": {"State": "healthy"},
    "initial": {"State": "initial", "Reason": "Elb.InitialHealthChecking", "Description": "Initial health checks in progress"},
    "unhealthy": {"State": "unhealthy", "Reason": "Target.FailedHealthChecks", "Description": "Health checks failed"},
    "draining": {"State": "draining", "Reason": "Target.DeregistrationInProgress", "Description": "Target deregistration is in progress"},
    "unused": {"State": "unused", "Reason": "Target.NotInUse", "Description": "Target group is not configured to receive traffic"},
}


def rule_weights(elbv2, rule_arn: str) -> dict[str, int]:
    """A listener rule's forward action as {target group ARN: weight}."""
    rules = elbv2.describe_rules(RuleArns=[rule_arn])["Rules"]
    for action in rules[0].get("Actions", []) if rules else []:
        if action.get("Type") == "forward":
            groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 100}]
            return {group["TargetGroupArn"]: int(group.get("Weight", 1)) for group in groups}
    return {}


def stopped_long_ago(task: Task) -> bool:
    """Stopped longer ago than DescribeTasks shows a stopped task: forgotten."""
    return task.last_status == "STOPPED" and bool(task.stopped_at) and time.time() - task.stopped_at > STOPPED_KEPT_SECONDS


def service_groups(service: dict) -> list[str]:
    """Every target group the service's tasks may be registered in (the alternate one too, in a traffic shift)."""
    balancers = service.get("loadBalancers") or []
    if not balancers:
        return []
    alternate = (balancers[0].get("advancedConfiguration") or {}).get("alternateTargetGroupArn")
    return [balancers[0]["targetGroupArn"], *([alternate] if alternate else [])]


def shift_steps(strategy: str, configuration: dict) -> list[tuple[int, int]]:
    """The production traffic shift as (new version's percent, minutes to wait after it) steps: all at once (blue/green),
    a canary share then the rest (canary), or equal steps (linear); the last step's wait is the bake."""
    bake = int(configuration.get("bakeTimeInMinutes", 0))
    if strategy == CANARY:
        canary = configuration.get("canaryConfiguration") or {}
        return [(int(float(canary.get("canaryPercent", 5))), int(canary.get("canaryBakeTimeInMinutes", 0))), (100, bake)]
    if strategy == LINEAR:
        linear = configuration.get("linearConfiguration") or {}
        step = max(3.0, float(linear.get("stepPercent", 10)))  # AWS takes 3.0 to 100.0
        weights = [round(step * count) for count in range(1, math.ceil(100 / step)) if step * count < 100] + [100]
        return [(weight, int(linear.get("stepBakeTimeInMinutes", 0)) if weight < 100 else bake) for weight in weights]
    return [(100, bake)]


def circuit_breaker_threshold(desired: int) -> int:
    """Failed task launches that trip the deployment circuit breaker: half the desired count, at least 3, at most 200
    (AWS: *How the Amazon ECS deployment circuit breaker detects failures*)."""
    return min(200, max(3, math.ceil(desired * 0.5)))


def rolling_bounds(desired: int, minimum_percent: int, maximum_percent: int) -> tuple[int, int]:
    """(tasks that must stay healthy, tasks that may run) during a rolling deployment: ECS rounds the minimum up and
    the maximum down (*Deploy Amazon ECS services by replacing tasks*)."""
    return math.ceil(desired * minimum_percent / 100), max(desired, math.floor(desired * maximum_percent / 100))


@dataclass
class ManagedTask:
    task: Task
    revision: str  # the task definition ARN it runs
    target_group: str  # where it is (or will be) registered
    registered: bool = False
    deregistered_at: float | None = None  # draining since; stopped once the deregistration delay has passed
    stopping: bool = False  # its stop has been started
    counted: bool = False  # a failed launch the deployment has counted
    launch_noted: bool = False  # its launch's outcome has been taken into the service's backoff
    failed_checks: bool = False  # stopped by the scheduler because it failed the target group's health checks
    ended_by_itself: bool = False  # stopped without the scheduler asking (a crash, a failed start)


@dataclass
class Deployment:
    """One service deployment, as ECS's ListServiceDeployments / DescribeServiceDeployments describe it."""

    arn: str
    strategy: str
    target: str  # task definition ARN
    sources: list[str]
    status: str = "IN_PROGRESS"
    stage: str = "SCALE_UP"
    target_group: str = ""  # where the new tasks go
    source_group: str = ""
    bake_minutes: int = 0
    bake_until: float | None = None
    steps: list[tuple[int, int]] = field(default_factory=list)  # the traffic shift still to do (percent, minutes after)
    weight: int = 0  # the new version's share of production traffic now
    started_at: float = field(default_factory=time.time)
    stage_changed_at: float = field(default_factory=time.time)
    failed_tasks: int = 0
    reason: str = ""
    rolls_back: bool = False  # started by ECS to roll a failed deployment back

    def move(self, stage: str) -> None:
        self.stage, self.stage_changed_at = stage, time.time()


@dataclass
class ServiceState:
    name: str
    arn: str
    revision: str = ""  # the revision the last deployment started for
    desired: int = 0
    tasks: dict[str, ManagedTask] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)  # newest first
    settings: dict = field(default_factory=dict)  # the last DescribeServices answer
    failed_launches: int = 0  # failed launches in a row
    next_launch_at: float = 0.0  # no launch before this (backoff after failed ones)


class EcsStandIn:
    """Runs the services of one cluster on real tasks (see the module docstring)."""

    interval = 1.0

    def __init__(self, runner: TaskRunner, *, session, cluster: str, controller: Controller | None, say: Say = print):
        self.runner, self.session, self.cluster, self.controller, self.say = runner, session, cluster, controller, say
        self.services: dict[str, ServiceState] = {}
        self._lock = threading.RLock()
        self._follower = Follower("ECS stand-in", self.step, interval=self.interval, say=say)
        self._definitions: dict[str, dict] = {}
        self._stop_requests: dict[str, str] = {}  # deployment ARN -> stop type
        self._clients: dict[str, object] = {}  # one per service: the step runs every second
        self.one_offs: dict[str, Task] = {}  # RunTask's tasks (task id -> task), kept an hour after they stop

    def _client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._follower.start()

    def stop(self, *, stop_tasks: bool = True) -> None:
        self._follower.stop()
        if stop_tasks:
            with self._lock:
                managed = [item for state in self.services.values() for item in state.tasks.values()]
                for item in managed:
                    # ECS deregisters a task it stops: no registration outlives the stand-in (a later one would inherit it).
                    if item.registered and item.deregistered_at is None and item.task.last_status != "STOPPED":
                        try:
                            self._drain(item, "the ECS stand-in stopped", immediate=True)
                        except Exception as error:  # noqa: BLE001 (the emulator may be gone first; the tasks stop regardless)
                            self.say(f"  ECS stand-in: could not deregister task {item.task.task_id[:8]}: {error}")
            threads = [threading.Thread(target=self.runner.stop, args=(item.task, "the ECS stand-in stopped"), daemon=True)
                       for item in managed]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=180)

    # --- what the cluster shows (the agent publishes it to the emulator: local/ecs_agent.py) ----------

    def tasks(self, service: str) -> list[dict]:
        with self._lock:
            state = self._find(service)
            return [dict(self.described_task(item.task), revision=item.revision, targetGroup=item.target_group)
                    for item in state.tasks.values()] if state else []

    def deployments(self, service: str) -> list[Deployment]:
        with self._lock:
            state = self._find(service)
            return list(state.deployments) if state else []

    def definition(self, arn: str) -> dict:
        if arn not in self._definitions:
            self._definitions[arn] = self._client("ecs").describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self._definitions[arn]

    def request_stop(self, deployment_arn: str, stop_type: str = "ROLLBACK") -> None:
        """StopServiceDeployment: honoured at the next step (the deployment must be in progress)."""
        with self._lock:
            for state in self.services.values():
                for deployment in state.deployments:
                    if deployment.arn == deployment_arn:
                        if deployment.status not in ("PENDING", "IN_PROGRESS"):
                            raise ValueError(f"service deployment {deployment_arn} is {deployment.status}; only one in "
                                             "progress can be stopped")
                        deployment.status = "ROLLBACK_REQUESTED" if stop_type == "ROLLBACK" else "STOP_REQUESTED"
                        self._stop_requests[deployment_arn] = stop_type
                        return
        raise ValueError(f"no service deployment {deployment_arn}")

    def run_one_off(self, definition_arn: str, *, group: str, started_by: str = "") -> Task:
        """RunTask: a task outside any service (`liftoff migrate`'s one-off), watched at each step until it stops."""
        task = self.runner.start(self.definition(definition_arn), group=group, started_by=started_by)
        with self._lock:
            self.one_offs[task.task_id] = task
        return task

    def snapshot(self) -> dict:
        """The cluster as ECS's API shows it now (see local/moto_live.py): tasks, service deployments and their
        revisions, and the load balancer stand-in's state of each target of the services' groups."""
        with self._lock:
            tasks = [item.task for state in self.services.values() for item in state.tasks.values()] + list(self.one_offs.values())
            deployments, revisions, health = [], {}, {}
            for state in self.services.values():
                for deployment in state.deployments:
                    deployments.append(self._described_deployment(state, deployment))
                    for arn in (deployment.target, *deployment.sources):
                        revisions[self.revision_arn(state, arn)] = self._described_revision(state, arn)
                if self.controller is not None:
                    for group in service_groups(state.settings):
                        health[group] = {target: TARGET_STATES.get(value, {"State": value})
                                         for target, value in self.controller.states_of(group).items()}
        return {"clusterArn": self.cluster_arn, "tasks": [self.described_task(task) for task in tasks], "deployments": deployments,
                "revisions": revisions, "targetHealth": health}

    def described_task(self, task: Task) -> dict:
        """As DescribeTasks shows it: every container of its task definition, in the definition's order, those that
        never started too (PENDING, or STOPPED with no exit code once the task stopped)."""
        described = task.describe()
        started = {container["name"]: container for container in described["containers"]}
        never = "STOPPED" if described["lastStatus"] == "STOPPED" else "PENDING"
        described["containers"] = [started.get(c["name"]) or {"name": c["name"], "image": c.get("image", ""), "lastStatus": never, "exitCode": None}
                                   for c in self.definition(task.definition_arn).get("containerDefinitions", [])]
        if described.get("address"):
            # Where DescribeTasks says an awsvpc task's address: its network interface attachment, and each container's.
            described["attachments"] = [{"type": "ElasticNetworkInterface", "status": "ATTACHED" if described["lastStatus"] != "STOPPED" else "DELETED",
                                         "details": [{"name": "privateIPv4Address", "value": described["address"]}]}]
            for container in described["containers"]:
                container["networkInterfaces"] = [{"privateIpv4Address": described["address"]}]
        return described

    @property
    def cluster_arn(self) -> str:
        return f"arn:aws:ecs:{self.runner.region}:{self.runner.account}:cluster/{self.cluster}"

    def revision_arn(self, state: ServiceState, definition_arn: str) -> str:
        """A service revision per task definition revision the service ran (ECS numbers them; a checksum here)."""
        return f"{state.arn.replace(':service/', ':service-revision/')}/{zlib.crc32(definition_arn.encode())}"

    def _described_revision(self, state: ServiceState, definition_arn: str) -> dict:
        containers = self.definition(definition_arn).get("containerDefinitions", [])
        return {"serviceRevisionArn": self.revision_arn(state, definition_arn), "serviceArn": state.arn, "clusterArn": self.cluster_arn,
                "taskDefinition": definition_arn, "launchType": "FARGATE",
                "containerImages": [{"containerName": c["name"], "image": c.get("image", "")} for c in containers]}

    def _described_deployment(self, state: ServiceState, deployment: Deployment) -> dict:
        def summary(arn: str, weight: int) -> dict:
            counts = [item.task.last_status for item in state.tasks.values() if item.revision == arn]
            return {"arn": self.revision_arn(state, arn), "requestedTaskCount": state.desired if arn == deployment.target else 0,
                    "runningTaskCount": counts.count("RUNNING"),
                    "pendingTaskCount": sum(1 for status in counts if status in ("PROVISIONING", "PENDING")),
                    "requestedProductionTrafficWeight": float(weight)}

        configuration = dict(state.settings.get("deploymentConfiguration") or {})
        configuration["bakeTimeInMinutes"] = deployment.bake_minutes
        finished = deployment.status not in ACTIVE_STATUSES + ("STOP_REQUESTED",)
        return {"serviceDeploymentArn": deployment.arn, "serviceArn": state.arn, "clusterArn": self.cluster_arn,
                "createdAt": deployment.started_at, "startedAt": deployment.started_at, "updatedAt": deployment.stage_changed_at,
                **({"finishedAt": deployment.stage_changed_at} if finished else {}),
                "status": deployment.status, "statusReason": deployment.reason, "lifecycleStage": deployment.stage,
                "targetServiceRevision": summary(deployment.target, deployment.weight),
                "sourceServiceRevisions": [summary(source, 100 - deployment.weight) for source in deployment.sources],
                "deploymentConfiguration": configuration}

    def _find(self, service: str) -> ServiceState | None:
        name = service.rsplit("/", 1)[-1]
        return self.services.get(name)

    # --- one pass ----------------------------------------------------------------------------------

    def step(self) -> None:
        ecs = self._client("ecs")
        arns = ecs.list_services(cluster=self.cluster).get("serviceArns", [])
        described = ecs.describe_services(cluster=self.cluster, services=arns)["services"] if arns else []
        active = [service for service in described if service.get("status") == "ACTIVE"]
        with self._lock:
            # Every watched task's containers read at once; an essential container's exit stops its task (and ships its logs).
            self.runner.observe_all([*self.one_offs.values(),
                                     *(item.task for service in active if service["serviceName"] in self.services
                                       for item in list(self.services[service["serviceName"]].tasks.values()))])
            for task_id, task in list(self.one_offs.items()):
                if stopped_long_ago(task):
                    del self.one_offs[task_id]
            for service in active:
                state = self.services.setdefault(service["serviceName"], ServiceState(name=service["serviceName"], arn=service["serviceArn"]))
                state.settings = service
                self._follow(state, service)

    def _follow(self, state: ServiceState, service: dict) -> None:
        self._note_launches(state)
        self._deregister_stopped(state)
        self._register_running(state)
        self._finish_draining(state)
        revision, desired = service["taskDefinition"], int(service.get("desiredCount", 0))
        state.desired = desired
        deployment = next((d for d in state.deployments if d.status in ACTIVE_STATUSES + ("STOP_REQUESTED",)), None)
        if revision != state.revision:
            if deployment is not None:  # superseded: ECS stops the deployment in progress for the newer one
                deployment.status, deployment.reason = "STOPPED", "a newer deployment started"
            deployment = self._begin(state, service, revision)
        if deployment is None:
            self._keep_steady(state, service)
            return
        request = self._stop_requests.pop(deployment.arn, None)
        if request == "ROLLBACK":
            self._roll_back(state, deployment, "StopServiceDeployment with ROLLBACK")
            return
        # A rollback's own deployment is not judged by the alarms that caused it (they stay in ALARM for a while).
        firing = self._firing_alarms(service) if deployment.status == "IN_PROGRESS" and not deployment.rolls_back else []
        if firing:
            self._roll_back(state, deployment, f"deployment alarm(s) in ALARM: {', '.join(firing)}")
            return
        if deployment.strategy in SHIFTING:
            self._shifting(state, service, deployment)
        else:
            self._rolling(state, service, deployment)

    # --- deployments -------------------------------------------------------------------------------

    def _begin(self, state: ServiceState, service: dict, revision: str) -> Deployment:
        configuration = service.get("deploymentConfiguration") or {}
        strategy = configuration.get("strategy", ROLLING)
        if strategy not in (ROLLING, *SHIFTING):
            raise ValueError(f"deployment strategy {strategy} is not run by the ECS stand-in ({', '.join((ROLLING, *SHIFTING))})")
        production, alternate = self._groups(service)
        # The service's first deployment has nothing to shift from: its tasks go straight into the production group.
        shifting = strategy in SHIFTING and bool(alternate) and bool(state.tasks or state.deployments)
        deployment_id = f"{int(time.time() * 1000):x}{len(state.deployments):02x}"
        deployment = Deployment(
            arn=f"{state.arn.replace(':service/', ':service-deployment/')}/{deployment_id}",
            strategy=strategy if shifting else ROLLING,
            target=revision, sources=sorted({item.revision for item in state.tasks.values() if item.revision != revision}),
            bake_minutes=int(configuration.get("bakeTimeInMinutes", 0)) if shifting else 0,
            steps=shift_steps(strategy, configuration) if shifting else [],
            target_group=alternate if shifting else production, source_group=production)
        state.revision = revision
        state.deployments.insert(0, deployment)
        if deployment.strategy in SHIFTING:
            # A deployment superseded in its bake leaves tasks in the group the new one fills: they go first.
            for item in self._live_all(state):
                if item.target_group == deployment.target_group and item.deregistered_at is None:
                    self._drain(item, "superseded by a newer deployment")
        self.say(f"  ECS stand-in: {state.name}: {deployment.strategy.lower().replace('_', '/')} deployment of "
                 f"{revision.rsplit('/', 1)[-1]} started ({deployment.arn.rsplit('/', 1)[-1]})")
        return deployment

    def _rolling(self, state: ServiceState, service: dict, deployment: Deployment) -> None:
        configuration = service.get("deploymentConfiguration") or {}
        keep_healthy, may_run = rolling_bounds(state.desired, int(configuration.get("minimumHealthyPercent", 100)),
                                               int(configuration.get("maximumPercent", 200)))
        if self._count_failures(state, deployment, service):
            return
        new = self._live(state, deployment.target)
        old = [item for item in self._live_all(state) if item.revision != deployment.target and item.deregistered_at is None]
        while len(new) < state.desired and len(self._live_all(state)) < may_run and time.time() >= state.next_launch_at:
            new.append(self._launch(state, deployment.target, deployment.target_group))
        healthy_new = [item for item in new if self._healthy(item)]
        healthy_old = [item for item in old if self._healthy(item)]
        for item in sorted(old, key=lambda task: task in healthy_old):  # the unhealthy ones first: they serve nothing
            if len(healthy_new) + len(healthy_old) - (1 if item in healthy_old else 0) < keep_healthy:
                break
            self._drain(item, "replaced by the service deployment")
            old.remove(item)
            if item in healthy_old:
                healthy_old.remove(item)
        if not old and len(healthy_new) >= state.desired and not self._draining(state):
            deployment.status, deployment.stage = "SUCCESSFUL", "CLEAN_UP"
            self.say(f"  ECS stand-in: {state.name}: deployment {deployment.arn.rsplit('/', 1)[-1]} successful "
                     f"({len(healthy_new)} task(s) of {deployment.target.rsplit('/', 1)[-1]} healthy)")

    def _shifting(self, state: ServiceState, service: dict, deployment: Deployment) -> None:
        """Blue/green, canary, linear: the new tasks fill the other group, then the listener rule's weights move in steps,
        then the bake; the old tasks go only after it."""
        if deployment.stage == "SCALE_UP":
            # Failed tasks are replaced (production traffic never reaches them) until the circuit breaker (blue/green
            # only, where the service enables it), the deployment's alarms or a StopServiceDeployment end it.
            if self._count_failures(state, deployment, service):
                return
            green = self._live(state, deployment.target)
            while len(green) < state.desired and time.time() >= state.next_launch_at:
                green.append(self._launch(state, deployment.target, deployment.target_group))
            if len(green) >= state.desired and all(self._healthy(item) for item in green):
                deployment.move("PRODUCTION_TRAFFIC_SHIFT")
                self._next_shift(state, service, deployment)
            return
        if deployment.stage in ("PRODUCTION_TRAFFIC_SHIFT", "BAKE_TIME") and time.time() >= (deployment.bake_until or 0):
            if deployment.steps:
                self._next_shift(state, service, deployment)
            else:
                deployment.move("CLEAN_UP")
        if deployment.stage == "CLEAN_UP":
            for item in self._live_all(state):
                if item.revision != deployment.target and item.deregistered_at is None:
                    self._drain(item, f"the {deployment.strategy.lower().replace('_', '/')} deployment's bake ended")
            if not [item for item in self._live_all(state) if item.revision != deployment.target]:
                deployment.status = "SUCCESSFUL"
                self.say(f"  ECS stand-in: {state.name}: deployment {deployment.arn.rsplit('/', 1)[-1]} successful")

    def _next_shift(self, state: ServiceState, service: dict, deployment: Deployment) -> None:
        weight, minutes = deployment.steps.pop(0)
        self._weigh(service, deployment.target_group, weight)
        deployment.weight = weight
        deployment.bake_until = time.time() + 60 * minutes
        if not deployment.steps:
            deployment.move("BAKE_TIME")
        self.say(f"  ECS stand-in: {state.name}: {weight}% of production traffic on {deployment.target.rsplit('/', 1)[-1]}"
                 + (f"; the previous tasks stay for the {minutes} min bake" if not deployment.steps else f"; next step in {minutes} min"))

    def _roll_back(self, state: ServiceState, deployment: Deployment, why: str) -> None:
        """Back to the revision that ran before; the service's task definition says so again, as after ECS's rollback."""
        deployment.status, deployment.reason = "ROLLBACK_IN_PROGRESS", why
        self.say(f"  ECS stand-in: {state.name}: deployment {deployment.arn.rsplit('/', 1)[-1]} rolls back: {why}")
        previous = next((d.target for d in state.deployments if d.status == "SUCCESSFUL" and d.target != deployment.target),
                        deployment.sources[0] if deployment.sources else None)
        if previous is None:
            deployment.status = "ROLLBACK_FAILED"
            return
        self._client("ecs").update_service(cluster=self.cluster, service=state.name, taskDefinition=previous)
        if deployment.strategy in SHIFTING:
            if deployment.stage != "SCALE_UP":
                self._weigh(state.settings, deployment.target_group, 0)  # the old tasks still run: traffic back, nothing starts
                deployment.weight = 0
            for item in self._live(state, deployment.target):
                self._drain(item, f"rolled back: {why}")
            state.revision = previous
            deployment.status = "ROLLBACK_SUCCESSFUL"
            return
        deployment.status = "ROLLBACK_SUCCESSFUL"
        rollback = self._begin(state, state.settings, previous)
        rollback.reason, rollback.rolls_back = f"rollback of {deployment.arn.rsplit('/', 1)[-1]}", True

    def _keep_steady(self, state: ServiceState, service: dict) -> None:
        """No deployment in progress: the desired count of the current revision, healthy, in the serving group."""
        production, _ = self._groups(service)
        serving_group = next((item.target_group for item in self._live(state, state.revision)), production)
        live = self._live(state, state.revision)
        for item in list(live):
            if self._failed_checks(item, service):
                item.failed_checks = True
                self._drain(item, "Task failed ELB health checks", immediate=True)
                live.remove(item)
        while len(live) < state.desired and time.time() >= state.next_launch_at:
            live.append(self._launch(state, state.revision, serving_group))
        for item in live[state.desired:]:
            self._drain(item, "the service's desired count went down")

    # --- tasks ------------------------------------------------------------------------------------

    def _launch(self, state: ServiceState, revision: str, target_group: str) -> ManagedTask:
        task = self.runner.start(self.definition(revision), group=f"service:{state.name}", started_by="ecs-svc")
        item = ManagedTask(task=task, revision=revision, target_group=target_group)
        state.tasks[task.task_id] = item
        return item

    def _live(self, state: ServiceState, revision: str) -> list[ManagedTask]:
        return [item for item in self._live_all(state) if item.revision == revision and item.deregistered_at is None]

    def _live_all(self, state: ServiceState) -> list[ManagedTask]:
        return [item for item in state.tasks.values() if item.task.last_status != "STOPPED" and item.task.desired_status != "STOPPED"]

    def _draining(self, state: ServiceState) -> list[ManagedTask]:
        return [item for item in state.tasks.values() if item.deregistered_at is not None and item.task.last_status != "STOPPED"]

    def _healthy(self, item: ManagedTask) -> bool:
        if item.task.last_status != "RUNNING" or not item.registered:
            return False
        if self.controller is None:
            return item.task.health_status != "UNHEALTHY"
        return self.controller.states_of(item.target_group).get(item.task.address) == "healthy"

    def _failed_checks(self, item: ManagedTask, service: dict) -> bool:
        """Unhealthy in its group after the grace period, or never healthy within it and the checks that make one healthy."""
        if self.controller is None or not item.registered or item.task.started_at is None:
            return item.task.health_status == "UNHEALTHY"
        grace = int(service.get("healthCheckGracePeriodSeconds") or 0)
        settings = self.controller.balancer.settings
        state = self.controller.states_of(item.target_group).get(item.task.address)
        since = time.time() - item.task.started_at
        if state == "unhealthy" and since > grace:
            return True
        return state == "initial" and since > grace + settings.interval_seconds * (settings.healthy_threshold + settings.unhealthy_threshold) + 5

    def _count_failures(self, state: ServiceState, deployment: Deployment, service: dict) -> bool:
        """Failed launches of the new revision (stopped, or failing checks): replaced, counted; True once the circuit
        breaker (or, for blue/green, the same threshold) rolls the deployment back."""
        for item in list(state.tasks.values()):
            if item.revision != deployment.target or item.counted:
                continue
            failed = item.ended_by_itself
            if not failed and item.task.last_status == "RUNNING" and self._failed_checks(item, service):
                item.failed_checks = True
                self._drain(item, "Task failed ELB health checks", immediate=True)
                failed = True
            if failed:
                item.counted = True
                deployment.failed_tasks += 1
        breaker = (service.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        limit = circuit_breaker_threshold(state.desired)
        if deployment.strategy in BREAKER_STRATEGIES and breaker.get("enable") and deployment.failed_tasks >= limit:
            why = f"circuit breaker: {deployment.failed_tasks} task(s) failed to start or pass health checks (threshold {limit})"
            if breaker.get("rollback"):
                self._roll_back(state, deployment, why)
            else:
                deployment.status, deployment.reason = "FAILED", why
            return True
        return False

    def _note_launches(self, state: ServiceState) -> None:
        """Failed launches in a row (a task that stopped by itself before it ever served) push the next launch back
        (5 s, doubling to 60 s); a task that becomes healthy resets it."""
        for item in state.tasks.values():
            if item.task.last_status == "STOPPED" and item.deregistered_at is None:
                item.ended_by_itself = True
            if item.launch_noted:
                continue
            if item.task.last_status == "STOPPED" and (item.ended_by_itself or item.failed_checks):
                item.launch_noted = True
                state.failed_launches += 1
                wait = LAUNCH_BACKOFF_SECONDS[min(state.failed_launches, len(LAUNCH_BACKOFF_SECONDS)) - 1]
                state.next_launch_at = time.time() + wait
            elif self._healthy(item):
                item.launch_noted = True
                state.failed_launches, state.next_launch_at = 0, 0.0

    def _deregister_stopped(self, state: ServiceState) -> None:
        """A task that stopped by itself (a crash, a failed start) leaves its target group, as ECS deregisters it."""
        for item in state.tasks.values():
            if item.ended_by_itself and item.registered and item.deregistered_at is None:
                self._drain(item, item.task.stopped_reason or "stopped", immediate=True)

    def _register_running(self, state: ServiceState) -> None:
        for item in state.tasks.values():
            if item.task.last_status == "RUNNING" and not item.registered and item.deregistered_at is None:
                port = self._container_port(state.settings)
                if port is not None:
                    self._client("elbv2").register_targets(TargetGroupArn=item.target_group,
                                                                  Targets=[{"Id": item.task.address, "Port": port}])
                item.registered = True

    def _drain(self, item: ManagedTask, reason: str, *, immediate: bool = False) -> None:
        """Deregister, let it drain for the group's delay, then stop it (at once when it failed its checks or never served)."""
        item.deregistered_at = time.time() - (10**6 if immediate or not item.registered else 0)
        item.task.stopped_reason = item.task.stopped_reason or reason
        if item.registered:
            port = self._container_port(self.services[item.task.group.split(":", 1)[1]].settings)
            self._client("elbv2").deregister_targets(TargetGroupArn=item.target_group,
                                                            Targets=[{"Id": item.task.address, "Port": port}])

    def _finish_draining(self, state: ServiceState) -> None:
        delay = self.controller.balancer.settings.deregistration_delay_seconds if self.controller is not None else 0
        for item in state.tasks.values():
            if (item.deregistered_at is not None and not item.stopping and item.task.last_status != "STOPPED"
                    and time.time() - item.deregistered_at >= delay):
                item.stopping = True
                threading.Thread(target=self.runner.stop, args=(item.task, item.task.stopped_reason or "stopped by the service"),
                                 daemon=True).start()
        # Forget tasks stopped long ago: `tasks` shows what stopped recently, as DescribeTasks does for about an hour.
        for task_id, item in list(state.tasks.items()):
            if stopped_long_ago(item.task):
                del state.tasks[task_id]

    # --- the load balancer and alarms ----------------------------------------------------------------

    @staticmethod
    def _container_port(service: dict) -> int | None:
        balancers = service.get("loadBalancers") or []
        return int(balancers[0]["containerPort"]) if balancers else None

    def _groups(self, service: dict) -> tuple[str, str]:
        """(the group the production listener rule sends requests to, the other one or '')."""
        balancers = service.get("loadBalancers") or []
        if not balancers:
            return "", ""
        first = balancers[0]
        advanced = first.get("advancedConfiguration") or {}
        alternate = advanced.get("alternateTargetGroupArn", "")
        rule = advanced.get("productionListenerRule")
        if not alternate or not rule:
            return first["targetGroupArn"], ""
        weights = rule_weights(self._client("elbv2"), rule)
        production = max(weights, key=weights.get) if weights else first["targetGroupArn"]
        return production, alternate if production == first["targetGroupArn"] else first["targetGroupArn"]

    def _weigh(self, service: dict, new_group: str, percent: int) -> None:
        """The production listener rule forwards `percent` of requests to `new_group` and the rest to the other group
        (ECS's production traffic shift, and its reverse on a rollback)."""
        balancer = (service.get("loadBalancers") or [{}])[0]
        advanced = balancer.get("advancedConfiguration") or {}
        groups = [balancer["targetGroupArn"], advanced["alternateTargetGroupArn"]]
        self._client("elbv2").modify_rule(RuleArn=advanced["productionListenerRule"], Actions=[{
            "Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": group, "Weight": percent if group == new_group else 100 - percent} for group in groups]}}])
        if self.controller is not None:
            self.controller.sync()  # the new weights in HAProxy now, not at the controller's next pass

    def _firing_alarms(self, service: dict) -> list[str]:
        alarms = (service.get("deploymentConfiguration") or {}).get("alarms") or {}
        names = alarms.get("alarmNames") or []
        if not alarms.get("enable") or not alarms.get("rollback") or not names:
            return []
        described = self._client("cloudwatch").describe_alarms(AlarmNames=names)["MetricAlarms"]
        return [alarm["AlarmName"] for alarm in described if alarm.get("StateValue") == "ALARM"]
