"""The staging (ecs, blue/green) stage run for real: the synthesized task definition as containers, its service
deployments moving real traffic through the load balancer stand-in, and `liftoff` reading what runs.

One world for the module (emulator, stage, box world, HAProxy, the ECS stand-in); the tests run in order on it.
The stage is the shipped staging stage with a 1-minute bake (60 s, the shortest bake ECS takes) and two tasks.
"""
from __future__ import annotations

import copy
import io
import json
import re
import threading
import time
import urllib.request
import uuid

import pytest

from config import parse_config
from local import images, moto_iam
from local.aws import EMULATED_ACCOUNT, FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.ecs_stage import StageTasks, TasksRuntime
from local.load import PATIENT_CLIENT_SECONDS, LoadRun
from local.principals import operator_session
from release.pure import decisions as d
from release import cli as release_cli
from tests.helpers.box_world import running_emulator, wait_until
from tests.helpers.clients import failures
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import cdk_context

pytestmark = pytest.mark.cost(minutes=4)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

FIRST, TARGET = "1.0.0", "1.1.0"
LOAD_RATE = 20.0


@pytest.fixture(scope="module")
def staging_config(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["staging"].update({"bake_seconds": 60, "desired_count": 2})
    variant = synth_variant(context)
    (variant.outdir / "cdk.json").write_text(json.dumps({"context": {**cdk_context(), "liftoff": context}}))
    return variant, parse_config(context).stage("staging")


# release_images before box_image: on a fresh machine this world (among the first to start) builds the service's
# images while a box world's worker makes the box root filesystem (tests/helpers/docker_fixtures.py).
@pytest.fixture(scope="module")
def world(docker_daemon, release_images, box_image, staging_config, tmp_path_factory):
    variant, stage = staging_config
    with running_emulator(tmp_path_factory) as emulator, pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        deployed = deploy_stage(variant.outdir, stage, image_tag=FIRST)
        session = EndpointSession(fake_session(), emulator.endpoint)
        tasks = StageTasks(daemon=docker_daemon, session=session, emulator_port=emulator.port,
                           service_stack=deployed.stack_names["service"], registry_stack=deployed.stack_names["registry"],
                           state_dir=tmp_path_factory.mktemp("ecs-state"), name=f"ecs-{uuid.uuid4().hex[:6]}", box_image=box_image,
                           account=EMULATED_ACCOUNT, region=FAKE_ENVIRONMENT["AWS_REGION"], say=print)
        try:
            tasks.start()
            tasks.push(dict(release_images))
            tasks.start_load_balancer()
            tasks.start_tasks()
            tasks.wait_steady()
            yield {"tasks": tasks, "deployed": deployed, "stage": stage, "config": variant.outdir / "cdk.json", "session": session}
        finally:
            tasks.stop()
            left = docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={tasks.name}").stdout.split()
            assert left == [], f"containers left behind: {left}"


def runtime(world) -> TasksRuntime:
    # liftoff runs as the stage's operator, held to liftoff-staging-operator by the emulator (local/moto_iam.py).
    if "operator" not in world:
        world["operator"] = operator_session(world["session"], "staging")
    return TasksRuntime(tasks=world["tasks"], service_stack=world["deployed"].stack_names["service"],
                        registry_stack=world["deployed"].stack_names["registry"], region=FAKE_ENVIRONMENT["AWS_REGION"],
                        session=world["operator"], stand_in_session=world["session"])


def liftoff(world, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    options = ["--config", str(world["config"]), "--stage", "staging"]
    if argv[0] in ("stage", "activate", "rollback"):
        options += ["--poll-interval", "1"]
    if argv[0] in ("activate", "rollback"):
        options += ["--yes"]
    code = release_cli.main([*argv, *options], stdin=io.StringIO(""), stdout=out, stderr=out, aws=runtime(world))
    return code, out.getvalue()


def version_through_the_balancer(world) -> str:
    with urllib.request.urlopen(f"{world['tasks'].balancer.url}/version", timeout=5) as response:
        return json.loads(response.read())["version"]


def service_tasks(world) -> list[dict]:
    """The service's tasks as `liftoff` reads them: ListTasks and DescribeTasks answered by the emulator from the ECS
    stand-in's publication (a wait on these is a wait on what the next `liftoff` sees)."""
    outputs = world["tasks"].outputs()
    ecs = world["session"].client("ecs")
    arns = [arn for status in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster=outputs["ClusterName"], serviceName=outputs["EcsServiceName"], desiredStatus=status)["taskArns"]]
    return ecs.describe_tasks(cluster=outputs["ClusterName"], tasks=arns)["tasks"] if arns else []


def address(task: dict) -> str:
    """An awsvpc task's address, where DescribeTasks says it (its network interface attachment)."""
    details = next(a["details"] for a in task["attachments"] if a["type"] == "ElasticNetworkInterface")
    return next(detail["value"] for detail in details if detail["name"] == "privateIPv4Address")


def test_the_synthesized_task_definition_runs_as_containers_and_serves(world, docker_daemon):
    running = [task for task in service_tasks(world) if task["lastStatus"] == "RUNNING"]
    assert len(running) == 2
    assert version_through_the_balancer(world) == FIRST
    # Each task: its own address, the migrate container exited 0 before the app started (dependsOn SUCCESS).
    assert len({address(task) for task in running}) == 2
    for task in running:
        containers = {container["name"]: container for container in task["containers"]}
        assert containers["migrate"]["lastStatus"] == "STOPPED" and containers["migrate"]["exitCode"] == 0
        assert containers["app"]["lastStatus"] == "RUNNING"
    # The app container has what the task definition says: the secret resolved, the stop timeout, the task's memory.
    app_id = docker_daemon.run("ps", "--quiet", "--filter", f"label=liftoff.ecs.task={running[0]['taskArn'].rsplit('/', 1)[-1]}",
                               "--filter", "name=-app").stdout.split()[0]
    inspected = json.loads(docker_daemon.run("inspect", app_id).stdout)[0]
    environment = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    secret_arn = world["deployed"].outputs[world["deployed"].stack_names["data"]]["DatabaseSecretArn"]
    secret = json.loads(world["session"].client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
    assert (environment["DB_USER"], environment["DB_PASSWORD"]) == (secret["username"], secret["password"])
    assert environment["APP_VERSION"] == FIRST
    assert inspected["Config"]["StopTimeout"] == world["stage"].stop_timeout_seconds
    assert inspected["HostConfig"]["Memory"] == world["stage"].task_memory_mib * 1024 * 1024
    assert inspected["Config"].get("Healthcheck", {}).get("Test") == ["NONE"]  # ECS ignores the image's HEALTHCHECK


def test_liftoff_status_reads_the_running_tasks(world):
    code, out = liftoff(world, "status")
    assert code == 0, out
    assert FIRST in out


def test_a_blue_green_activation_moves_traffic_with_no_failed_request_and_a_rollback_in_the_bake_is_a_flip(world):
    stand_in, controller = world["tasks"].ecs, world["tasks"].controller
    service = world["tasks"].outputs()["EcsServiceName"]
    blue = {address(task) for task in service_tasks(world) if task["lastStatus"] == "RUNNING"}
    with LoadRun(f"{world['tasks'].balancer.url}/version", rate=LOAD_RATE, duration=600, timeout=PATIENT_CLIENT_SECONDS) as run:
        try:
            code, out = liftoff(world, "stage", TARGET)
            assert code == 0, out
            # Activate without waiting out the bake (verification needs the blue tasks gone, as on AWS).
            code, out = liftoff(world, "activate", TARGET, "--no-watch", "--verify-timeout", "0")
            assert code in (0, d.EXIT_UNVERIFIED), out
            wait_until(lambda: stand_in.deployments(service)[0].stage == "BAKE_TIME", 120, "the deployment reached its bake")
            wait_until(lambda: version_through_the_balancer(world) == TARGET, 10, "the balancer served the new version")
            # Inside the bake the blue tasks still run (registered, weight 0), and a rollback is a traffic flip back to them.
            assert blue <= {address(task) for task in service_tasks(world) if task["lastStatus"] == "RUNNING"}
            outcome = {}
            rollback = threading.Thread(target=lambda: outcome.update(zip(("code", "out"), liftoff(world, "rollback"))))
            started = time.monotonic()
            rollback.start()
            wait_until(lambda: all(version_through_the_balancer(world) == FIRST for _ in range(5)), 60,
                       "every answer from the earlier version")
            flipped_after = time.monotonic() - started
            # What serves at that moment: the blue tasks, no task started for it.
            assert {target for target, weight in dict(controller.weights).items() if weight > 0} == blue
            rollback.join(timeout=300)
            assert outcome.get("code") == 0, outcome.get("out")
            print(f"rollback in the bake: every answer from {FIRST} {flipped_after:.1f} s after the command")
        finally:
            run.stop()
    summary = run.summary()
    assert summary.failed == 0, (summary, failures(run))


def steady(world, timeout=240) -> None:
    service = world["tasks"].outputs()["EcsServiceName"]
    wait_until(lambda: world["tasks"].ecs.deployments(service)[0].status == "SUCCESSFUL"
               and len([t for t in service_tasks(world) if t["lastStatus"] == "RUNNING"]) == 2, timeout, "the service settled")


def test_a_task_whose_secret_cannot_be_read_never_starts_and_status_shows_ecss_reason(world, docker_daemon):
    steady(world)
    secrets = world["session"].client("secretsmanager")
    secret_arn = world["deployed"].outputs[world["deployed"].stack_names["data"]]["DatabaseSecretArn"]
    running = [task for task in service_tasks(world) if task["lastStatus"] == "RUNNING"]
    secrets.delete_secret(SecretId=secret_arn, RecoveryWindowInDays=7)  # marked for deletion: unreadable, restorable
    try:
        # A task dies (its app container is killed); ECS replaces it, and the replacement cannot read its secrets.
        victim = running[0]["taskArn"].rsplit("/", 1)[-1]
        app = docker_daemon.run("ps", "--quiet", "--filter", f"label=liftoff.ecs.task={victim}", "--filter", "name=-app").stdout.split()[0]
        docker_daemon.run("kill", app)

        def failed_start_and_victim_stopped():
            # Both, as status will read them: the victim's other containers may stop after the replacement failed.
            tasks = service_tasks(world)
            stopped = {task["taskArn"].rsplit("/", 1)[-1] for task in tasks if task["lastStatus"] == "STOPPED"}
            failed = [task for task in tasks if task["lastStatus"] == "STOPPED" and task["stopCode"] == "TaskFailedToStart"]
            return failed if victim in stopped else []

        (failed, *_) = wait_until(failed_start_and_victim_stopped, 90, "a replacement failed to start and the victim stopped")
        assert failed["stoppedReason"].startswith("ResourceInitializationError: unable to pull secrets or registry auth")
        assert "marked deleted" in failed["stoppedReason"]
        # No container of it ever started: DescribeTasks lists each of the task definition's, stopped without an exit code.
        assert {c["name"] for c in failed["containers"]} == {"app", "migrate"}
        assert all(c["lastStatus"] == "STOPPED" and c.get("exitCode") is None for c in failed["containers"])
        code, out = liftoff(world, "status")
        assert code == 0, out
        assert re.search(r"^  stopped  task \S+ \S+ at \S+: ResourceInitializationError: .*marked deleted", out, re.M), out
        assert re.search(rf"^  stopped  task {victim} \S+ at \S+: Essential container in task exited", out, re.M), out
    finally:
        secrets.restore_secret(SecretId=secret_arn)
    # Readable again: the next launch (after ECS-like backoff) runs, and the service is whole.
    wait_until(lambda: len([t for t in service_tasks(world) if t["lastStatus"] == "RUNNING"]) == 2, 120, "the service replaced the task")


def test_liftoff_migrate_runs_the_migrate_task_for_real_against_the_database_and_shows_its_output(world):
    steady(world)
    code, out = liftoff(world, "migrate", "--version", TARGET, "--yes")
    assert code == 0, out
    started = re.search(r"one-off task ([0-9a-f]+) \((\S+-migrate):\d+\) started", out)
    assert started, out
    # The operator registered and ran the one-off task itself, every call allowed by its policy.
    operator = world["operator"].client("sts").get_caller_identity()["Arn"]
    calls = [c for c in moto_iam.recorded_calls(world["session"].endpoint_url) if c["principal"] == operator]
    assert {"ecs:RegisterTaskDefinition", "ecs:RunTask", "ecs:DeregisterTaskDefinition", "logs:GetLogEvents"} <= {c["action"] for c in calls}
    assert [c for c in calls if not c["allowed"]] == []
    # Its log stream, as the awslogs driver names it, holds what the container wrote (shipped when it stopped).
    logs = world["session"].client("logs")
    group = world["tasks"].outputs()["LogGroupName"]
    events = logs.get_log_events(logGroupName=group, logStreamName=f"migrate/migrate/{started.group(1)}", startFromHead=True)["events"]
    assert events and any("migrat" in event["message"] for event in events), events
    assert events[-1]["message"] in out  # what the task printed is shown to whoever ran it
    # The one-off is not the service's: no service task stopped or started for it, and its copy of the definition is gone.
    assert len([t for t in service_tasks(world) if t["lastStatus"] == "RUNNING"]) == 2
    families = world["session"].client("ecs").list_task_definitions(familyPrefix=started.group(2))["taskDefinitionArns"]
    assert families == []


def test_a_release_that_never_gets_healthy_never_takes_traffic_and_the_circuit_breaker_rolls_it_back(world, docker_daemon,
                                                                                                        service_image):
    steady(world)
    world["tasks"].push({"1.2.0": images.release_image(docker_daemon, service_image, "1.2.0", never_starts=True)})
    outputs = world["tasks"].outputs()
    ecs = world["session"].client("ecs")
    with LoadRun(f"{world['tasks'].balancer.url}/version", rate=LOAD_RATE, duration=600, timeout=PATIENT_CLIENT_SECONDS) as run:
        try:
            code, out = liftoff(world, "stage", "1.2.0")
            assert code == 0, out
            code, out = liftoff(world, "activate", "1.2.0", "--no-watch", "--verify-timeout", "45")
            # Never seen running: not verified (on AWS CloudFormation's update fails with the deployment: exit 5; moto
            # finished the update at once, docs/local-emulator.md). Why, in ECS's words, in the activation's output.
            assert code == d.EXIT_UNVERIFIED, out
            assert "a task of 1.2.0 stopped: Essential container in task exited" in out, out

            def rolled_back():
                # As the AWS CLI or liftoff read it: ECS's own rollback of the deployment, and why.
                listed = ecs.list_service_deployments(cluster=outputs["ClusterName"], service=outputs["EcsServiceName"],
                                                      status=["ROLLBACK_SUCCESSFUL"])["serviceDeployments"]
                return [d for d in listed if d.get("statusReason", "").startswith("circuit breaker")]

            (deployment, *_) = wait_until(rolled_back, 120, "the circuit breaker rolled the deployment back")
            assert re.fullmatch(r"circuit breaker: [3-9] task\(s\) failed to start or pass health checks \(threshold 3\)",
                                deployment["statusReason"]), deployment
            service = ecs.describe_services(cluster=outputs["ClusterName"], services=[outputs["EcsServiceName"]])["services"][0]
            image = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]["containerDefinitions"]
            assert all(container["image"].endswith(f":{FIRST}") for container in image)  # the service names the old revision again
        finally:
            run.stop()
    summary = run.summary()
    assert summary.failed == 0, (summary, failures(run))
    assert set(summary.versions) == {FIRST}, summary
