"""An ecs stage run for real: the box world (ECR and RDS stand-ins, the AWS endpoints), the load balancer stand-in
on both target groups and the production listener rule, the alarm stand-in, and the ECS stand-in's tasks.

`StageTasks` starts and stops all of it (everything it starts carries the world's label, and `stop` removes it);
the ECS stand-in's agent publishes what runs to the emulator, whose ECS and ELBv2 APIs answer from it (local/moto_live.py).
`TasksRuntime` is the release tool's adapter on such a stage: the real one, reading tasks, service deployments
and target health from the emulator as from AWS (and stopping a deployment, running `liftoff migrate`'s one-off
task through it), with image blobs from the ECR stand-in.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from local import boxes, lb
from local.alarms import AlarmStandIn, start_release_alarms
from local.docker import Daemon
from local.ecs_agent import EcsAgent
from local.ecs_service import EcsStandIn, rule_weights
from local.ecs_tasks import TaskRunner, World, resolve_secret
from local.emulator import free_port
from local.runtime import EmulatedRuntime, RealTaskReads

Say = Callable[[str], None]
APP_CONTAINER = "app"


class StageTasks:
    """The ECS side of one emulated stage, on this machine's Docker; `stop` removes all of it."""

    def __init__(self, *, daemon: Daemon, session, emulator_port: int, service_stack: str, registry_stack: str,
                 state_dir: Path, name: str, box_image: str, account: str, region: str, say: Say = print):
        self.daemon, self.session, self.emulator_port = daemon, session, emulator_port
        self.service_stack, self.registry_stack = service_stack, registry_stack
        self.state_dir, self.name, self.box_image, self.account, self.region, self.say = state_dir, name, box_image, account, region, say
        self.world: boxes.BoxWorld | None = None
        self.balancer: lb.LoadBalancer | None = None
        self.controller: lb.Controller | None = None
        self.alarms: AlarmStandIn | None = None
        self.ecs: EcsStandIn | None = None
        self.agent: EcsAgent | None = None
        self._clients: dict[str, object] = {}

    def _client(self, service: str):
        # One per service: the waits of a walk or a test read the stack and the service many times a second.
        if service not in self._clients:
            self._clients[service] = self.session.client(service)
        return self._clients[service]

    def outputs(self, stack: str | None = None) -> dict[str, str]:
        described = self._client("cloudformation").describe_stacks(StackName=stack or self.service_stack)["Stacks"][0]
        return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}

    def service(self) -> dict:
        outputs = self.outputs()
        return self._client("ecs").describe_services(cluster=outputs["ClusterName"], services=[outputs["EcsServiceName"]])["services"][0]

    @staticmethod
    def target_groups(outputs: dict[str, str]) -> list[str]:
        """The service's target groups, from its stack's outputs (the alternate one too, with a traffic shift)."""
        return [outputs[key] for key in ("TargetGroupArn", "AlternateTargetGroupArn") if outputs.get(key)]

    def app_container(self, definition: dict, service: dict | None = None) -> dict:
        """The container the load balancer sends requests to (the service's, else `app`)."""
        balancers = (service if service is not None else self.service()).get("loadBalancers") or []
        name = balancers[0]["containerName"] if balancers else APP_CONTAINER
        return next(c for c in definition["containerDefinitions"] if c["name"] == name)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> boxes.BoxWorld:
        """The world the tasks reach: its database gets the user, password, name and port the task definition passes."""
        definition = self._client("ecs").describe_task_definition(taskDefinition=self.service()["taskDefinition"])["taskDefinition"]
        app = self.app_container(definition)
        environment = {item["name"]: item["value"] for item in app.get("environment") or []}
        for secret in app.get("secrets") or []:
            environment[secret["name"]] = resolve_secret(secret["valueFrom"], secretsmanager=self.session.client("secretsmanager"),
                                                         ssm=self.session.client("ssm"))
        self.world = boxes.start_world(
            self.daemon, name=self.name, image=self.box_image, emulator_port=self.emulator_port, region=self.region,
            state_dir=self.state_dir, say=self.say,
            database={key: environment[key] for key in ("DB_USER", "DB_PASSWORD", "DB_NAME", "DB_PORT")})
        return self.world

    def push(self, images: dict[str, str]) -> dict[str, str]:
        return boxes.push_images(self.daemon, self._world(), self.session, self.outputs(self.registry_stack)["RepositoryName"], images)

    def start_load_balancer(self, *, listen_port: int | None = None) -> lb.LoadBalancer:
        """HAProxy from the synthesized target groups, following both groups' registrations and the production
        listener rule's weights (which ECS's blue/green deployment moves)."""
        world = self._world()
        template = self.session.client("cloudformation").get_template(StackName=self.service_stack)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        self.balancer = lb.LoadBalancer(lb.TargetGroupSettings.from_template(template), state_dir=self.state_dir, name=self.name,
                                        listen_port=listen_port or free_port())
        self.balancer.start()
        outputs = self.outputs()
        groups = self.target_groups(outputs)
        advanced = ((self.service().get("loadBalancers") or [{}])[0].get("advancedConfiguration") or {})
        rule = advanced.get("productionListenerRule")
        elbv2 = self.session.client("elbv2")  # one client for the controller's passes (every 0.25 s) and the rule's weights
        routing = (lambda: rule_weights(elbv2, rule)) if rule else None
        self.controller = lb.Controller(self.balancer, elbv2=elbv2, target_group_arns=groups, routing=routing,
                                        address_of=lambda target: target,  # ip targets: the task's own address
                                        health_file=Path(world.health_file), say=self.say)
        self.controller.start()
        self.alarms = start_release_alarms(self.balancer, self.controller, self.session.client("cloudwatch"), outputs, say=self.say)
        return self.balancer

    def start_tasks(self) -> EcsStandIn:
        """The ECS stand-in: from now on the cluster's services run (and follow every stack update)."""
        world = self._world()
        database = {address: world.database_address for address in self._database_endpoints()}
        runner = TaskRunner(World(daemon=self.daemon, name=world.name, network=world.network, registry_host=world.registry_host,
                                  pause_image=self.box_image, hosts=database),
                            session=self.session, account=self.account, region=self.region, cluster=self.outputs()["ClusterName"],
                            say=self.say)
        self.ecs = EcsStandIn(runner, session=self.session, cluster=self.outputs()["ClusterName"], controller=self.controller, say=self.say)
        self.ecs.start()
        self.agent = EcsAgent(self.ecs, endpoint_url=self.session.endpoint_url, say=self.say)
        self.agent.start()
        return self.ecs

    def wait_steady(self, timeout: float = 180.0) -> list[dict]:
        """Until the service's deployment succeeded: its desired count of tasks running and healthy."""
        service = self.outputs()["EcsServiceName"]
        deadline = time.monotonic() + timeout
        while True:
            deployments = self.ecs.deployments(service) if self.ecs else []
            running = [task for task in (self.ecs.tasks(service) if self.ecs else []) if task["lastStatus"] == "RUNNING"]
            if deployments and deployments[0].status == "SUCCESSFUL":
                return running
            if time.monotonic() > deadline:
                stopped = [f"{task['taskArn'].rsplit('/', 1)[-1][:8]}: {task['stoppedReason']}"
                           for task in (self.ecs.tasks(service) if self.ecs else []) if task["lastStatus"] == "STOPPED"]
                raise boxes.BoxError(f"the ECS service did not reach a successful deployment within {timeout:.0f} s "
                                     f"(deployments: {[(d.status, d.stage) for d in deployments]}; stopped tasks: {stopped or 'none'})")
            time.sleep(0.5)

    def stop(self) -> None:
        self.stop_running()
        if self.world is not None:
            boxes.stop_world(self.daemon, self.world, self.state_dir)
            self.world = None

    def stop_running(self) -> None:
        """The agent, the tasks, the load balancer and the alarms; the world stays (`make local-up` keeps it for its
        supervisor, which runs them again on it)."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        if self.ecs is not None:
            self.ecs.stop(stop_tasks=True)
            self.ecs = None
        lb.stop_in_order(self.alarms, self.controller, self.balancer)
        self.alarms = self.controller = self.balancer = None

    def _database_endpoints(self) -> list[str]:
        instances = self.session.client("rds").describe_db_instances()["DBInstances"]
        return [instance["Endpoint"]["Address"] for instance in instances if instance.get("Endpoint", {}).get("Address")]

    def _world(self) -> boxes.BoxWorld:
        if self.world is None:
            raise boxes.BoxError("the stage's world is not started (call start() first)")
        return self.world


class TasksRuntime(RealTaskReads, EmulatedRuntime):
    """`liftoff` on an ecs stage whose tasks really run: the real adapter's reads of ECS and the target groups, which the
    emulator answers from the ECS stand-in's publications (local/moto_live.py), as AWS answers them; image blobs from
    the ECR stand-in. Nothing is made up from the stack's record."""

    def __init__(self, *, tasks: StageTasks, **kwargs):
        super().__init__(**kwargs)
        self.stage_tasks = tasks

    def download_layer(self, repository: str, digest: str) -> bytes | None:
        return boxes.registry_blob(self.stage_tasks._world(), repository, digest)
