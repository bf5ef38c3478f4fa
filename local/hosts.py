"""An emulated ec2 stage's hosts, for real: host boxes booted from the launch template, and the gates run on them.

- The Auto Scaling group stand-in: for each instance the emulator lists in the stage's group, a host
  box (local/boxes.py) boots from the user data bytes the emulator's launch template holds, and
  `boot` waits for each host's cfn-signal as CloudFormation's creation policy would.
- The ECR stand-in is filled the way a pipeline fills ECR: `push` sends each release image to the
  box world's registry and records the same manifest in the emulator's ECR (same digest), with the
  scan a scan-on-push repository starts.
- The State Manager stand-in (`StateManagerStandIn`): the emulator has no association model, so a
  thread follows the service stack's `StagedImageTag` and `ImageTag` parameters and, whenever one
  changes (and once at start, as an association's creation does), runs the gate's document command
  (`/opt/liftoff/bin/liftoff-stage TAG` or `liftoff-activate TAG`) on the hosts as many at a time as the
  association's MaxConcurrency in the template says (resolved with the stack's parameters: 1, or 100%
  for a warm rollback), starting none after the first failure (MaxErrors 0). `start_association_once` runs an
  association again with the stack's current parameter, as SSM StartAssociationsOnce does; each
  instance's last result per gate is kept (`instance_results`). The emulator gives each association
  id a placeholder value of its own (local/adapter.py), so an id runs its own gate.
- Faults a test can cause on a box world (`fill_docker_disk`, `stop_registry`, `stop_database`, and
  their repairs): a full Docker disk on one host, the ECR stand-in unreachable, the RDS stand-in down.
- The load balancer stand-in (local/lb.py, `start_load_balancer`): HAProxy in front of the hosts,
  configured from the synthesized target group, following the emulator's registrations.
- `HostsRuntime`: the release tool's adapter for such a stage; what runs is read from the hosts (docker
  for whether a host is up, the host reports the hosts write to the emulator's SSM) and the load balancer
  stand-in (target health), not from the stack's record.
"""
from __future__ import annotations

import base64
import json
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from local import boxes, lb
from local.aws import EMULATED_ACCOUNT
from local.alarms import AlarmStandIn, start_release_alarms
from local.docker import Daemon
from local.emulator import free_port
from local.follower import Follower
from local.run_command import RunCommandStandIn
from local.runtime import EmulatedRuntime
from release.pure import decisions as d

GATES = (("stage", "StagedImageTag", "liftoff-stage"), ("activate", "ImageTag", "liftoff-activate"))
HOST_ROLE_LOGICAL_ID = "Ec2HostRole"  # components/ec2_service.py's role, under CDK's hash
HOST_CREDENTIALS_SECONDS = 12 * 3600
FOLLOW_INTERVAL_SECONDS = 0.5
# Where the stack is changed through HostsRuntime, in the follower's own process, the runtime wakes it: its poll only
# catches changes made elsewhere, and each poll is a DescribeStacks (~10 ms of CPU with the client's).
WOKEN_FOLLOW_INTERVAL_SECONDS = 2.0
Say = Callable[[str], None]


@dataclass
class ScaleEvent:
    """What one capacity change did: hosts launched (seconds from the change until the load balancer stand-in
    had each healthy) and hosts terminated (seconds from the change until each box stopped, drained first)."""
    before: int
    after: int
    added: dict[str, float] = field(default_factory=dict)
    removed: dict[str, float] = field(default_factory=dict)
    gate_runs: list["GateRun"] = field(default_factory=list)


@dataclass
class GateRun:
    gate: str
    tag: str
    instance_id: str
    exit_code: int
    seconds: float
    output: str = field(repr=False)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


class StageHosts:
    """The hosts of one emulated ec2 stage as boxes, with their world; `stop` removes all of it."""

    def __init__(self, *, daemon: Daemon, session, emulator_port: int, service_stack: str, registry_stack: str,
                 state_dir: Path, name: str, box_image: str, say: Say = print):
        self.daemon, self.session, self.emulator_port = daemon, session, emulator_port
        self.service_stack, self.registry_stack = service_stack, registry_stack
        self.state_dir, self.name, self.box_image, self.say = state_dir, name, box_image, say
        self.world: boxes.BoxWorld | None = None
        self.balancer: lb.LoadBalancer | None = None
        self.controller: lb.Controller | None = None
        self.alarms: AlarmStandIn | None = None
        self._host_environment: dict[str, str] | None = None
        self._lock = threading.Lock()  # one gate command at a time on the stage, as the host lock would
        self._host_role: str | None = None

    # --- what the emulator recorded ------------------------------------------------------------

    def _outputs(self, stack: str) -> dict[str, str]:
        described = self.session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        return {output["OutputKey"]: output["OutputValue"] for output in described.get("Outputs", [])}

    def group(self) -> dict:
        name = self._outputs(self.service_stack)["AutoScalingGroupName"]
        return self.session.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]

    def user_data(self) -> bytes:
        template = self.group()["LaunchTemplate"]
        versions = self.session.client("ec2").describe_launch_template_versions(
            LaunchTemplateId=template["LaunchTemplateId"], Versions=[str(template.get("Version", "$Latest"))])["LaunchTemplateVersions"]
        return base64.b64decode(versions[0]["LaunchTemplateData"]["UserData"])

    def host_environment(self) -> dict[str, str]:
        """host.env as the user data writes it (the settings every host gets); read once, the launch template
        never changes while the stage's hosts run."""
        if self._host_environment is None:
            self._host_environment = self._parse_host_environment()
        return self._host_environment

    def _parse_host_environment(self) -> dict[str, str]:
        found = re.search(r"<<'HOSTENV'\n(.*?)\nHOSTENV\n", self.user_data().decode(), re.S)
        if not found:
            raise boxes.BoxError("the launch template's user data writes no host.env (<<'HOSTENV' ... HOSTENV)")
        return dict(line.split("=", 1) for line in found.group(1).splitlines())

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> boxes.BoxWorld:
        environment = self.host_environment()
        secret = json.loads(self.session.client("secretsmanager").get_secret_value(
            SecretId=environment["DB_SECRET_ARN"])["SecretString"])
        self.world = boxes.start_world(
            self.daemon, name=self.name, image=self.box_image, emulator_port=self.emulator_port,
            region=environment["AWS_REGION"], state_dir=self.state_dir, say=self.say,
            database={"DB_USER": secret["username"], "DB_PASSWORD": secret["password"],
                      "DB_NAME": environment["DB_NAME"], "DB_PORT": environment["DB_PORT"]})
        return self.world

    def attach(self, world: boxes.BoxWorld) -> None:
        """Take over a world another process started and recorded (`make local-up`'s supervisor)."""
        self.world = world

    def start_load_balancer(self, *, listen_port: int | None = None) -> lb.LoadBalancer:
        """HAProxy configured from the synthesized target group, following the emulator's registrations."""
        world = self._require_world()
        template = self.session.client("cloudformation").get_template(StackName=self.service_stack)["TemplateBody"]
        template = json.loads(template) if isinstance(template, str) else template
        settings = lb.TargetGroupSettings.from_template(template)
        self.balancer = lb.LoadBalancer(settings, state_dir=self.state_dir, name=self.name, listen_port=listen_port or free_port())
        self.balancer.start()
        outputs = self._outputs(self.service_stack)
        target_group = outputs.get("TargetGroupArn") or self.host_environment()["TARGET_GROUP_ARN"]
        self.controller = lb.Controller(
            self.balancer, elbv2=self.session.client("elbv2"), target_group_arn=target_group,
            address_of=lambda target: world.boxes[target].address if target in world.boxes else None,
            health_file=Path(world.health_file), say=self.say)
        self.controller.start()
        self.alarms = start_release_alarms(self.balancer, self.controller, self.session.client("cloudwatch"), outputs, say=self.say)
        return self.balancer

    def wait_in_service(self, timeout: float = 120.0) -> None:
        """Until the load balancer stand-in's checks find every host healthy."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.controller.states() if self.controller is not None else {}
            if states and set(states.values()) == {"healthy"} and set(states) >= {box.instance_id for box in self.hosts}:
                return
            if time.monotonic() > deadline:
                raise boxes.BoxError(f"the hosts were not all healthy in the load balancer within {timeout:.0f} s: {states}")
            time.sleep(0.25)

    def stop_load_balancer(self) -> None:
        lb.stop_in_order(self.alarms, self.controller, self.balancer)
        self.alarms = self.controller = self.balancer = None

    def stop(self) -> None:
        self.stop_load_balancer()
        if self.world is not None:
            boxes.stop_world(self.daemon, self.world, self.state_dir)
            self.world = None

    def push(self, images: dict[str, str]) -> dict[str, str]:
        """Push each `version -> local image` to the ECR stand-in and record it in the emulator's ECR; return digests."""
        repository = self._outputs(self.registry_stack)["RepositoryName"]
        return boxes.push_images(self.daemon, self._require_world(), self.session, repository, images)

    def set_capacity(self, count: int) -> None:
        """The Auto Scaling group's size in the emulator, as a `desired_count` deploy (or the autoscaler) sets it."""
        name = self.group()["AutoScalingGroupName"]
        self.session.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=count, MaxSize=count + 1, DesiredCapacity=count)
        instances = self.group().get("Instances", [])
        if len(instances) != count:
            raise boxes.BoxError(f"the emulator's Auto Scaling group has {len(instances)} instance(s) after setting {count}")

    def set_limits(self, *, floor: int, ceiling: int) -> None:
        """The group's MinSize/MaxSize as a stage with desired_count `floor` and max_count `ceiling` deploys them
        (its DesiredCapacity left alone, as the template leaves it)."""
        self.session.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=self.group()["AutoScalingGroupName"], MinSize=floor, MaxSize=ceiling)

    def scale_to(self, count: int, *, state_manager: "StateManagerStandIn | None" = None,
                 timeout: float = boxes.BOOT_TIMEOUT_SECONDS) -> ScaleEvent:
        """What the Auto Scaling group does when its target-tracking policy sets a new desired capacity.

        Scale-out: hosts launch from the launch template (boxes booted from its user data); the group registers
        them with the target group, where the load balancer sends them requests only once they pass its checks;
        State Manager runs both gates on each, as it applies associations to every instance joining the group.
        Scale-in: the group deregisters the leaving hosts from the target group and waits out the deregistration
        delay while the load balancer drains them, and only then terminates them (here: stops their boxes)."""
        if self.controller is None:
            raise boxes.BoxError("scaling needs the load balancer stand-in (start_load_balancer) to drain and admit hosts")
        group = self.group()
        if not group["MinSize"] <= count <= group["MaxSize"]:
            raise boxes.BoxError(f"capacity {count} is outside the group's limits {group['MinSize']}-{group['MaxSize']} "
                                 "(set_limits first, as the stage's desired_count and max_count would)")
        before = {instance["InstanceId"] for instance in group.get("Instances", [])}
        began = time.monotonic()
        self.session.client("autoscaling").set_desired_capacity(
            AutoScalingGroupName=group["AutoScalingGroupName"], DesiredCapacity=count, HonorCooldown=False)
        after = {instance["InstanceId"] for instance in self.group().get("Instances", [])}
        if after - before:
            # moto registers a new instance at once; the group registers it when it is in service, with an address
            # (here: once its box runs). Registered earlier, the stand-in would add a target it cannot reach.
            self.targets("deregister", sorted(after - before))
        event = ScaleEvent(before=len(before), after=len(after))
        if before - after:
            self.drain_and_terminate(sorted(before - after), began, event, timeout)
        if after - before:
            self.launch(sorted(after - before), began, event, state_manager, timeout)
        return event

    def drain_and_terminate(self, leaving: list[str], began: float, event: ScaleEvent, timeout: float) -> None:
        world = self._require_world()
        # moto terminates the instances but leaves them registered; the group's own deregistration, as on AWS.
        self.targets("deregister", leaving)
        deadline = time.monotonic() + self.balancer.settings.deregistration_delay_seconds + timeout
        while any(instance in self.controller.states() for instance in leaving):
            if time.monotonic() > deadline:
                raise boxes.BoxError(f"the load balancer stand-in did not finish draining {', '.join(leaving)}")
            time.sleep(0.25)
        def terminate(instance: str, box: boxes.Box) -> None:
            # A shutdown as EC2 does it: systemd stops the unit (the container gets its SIGTERM and stop timeout).
            self.daemon.run("stop", "--time", "60", box.container, check=False, timeout=120)
            self.daemon.run("rm", "--force", "--volumes", box.container, check=False, timeout=120)
            event.removed[instance] = time.monotonic() - began

        leaving_boxes = {instance: world.boxes.pop(instance) for instance in leaving}
        world.record(self.state_dir)
        # The group terminates its drained instances together.
        threads = [threading.Thread(target=terminate, args=item, name=f"terminate-{item[0]}") for item in leaving_boxes.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def targets(self, verb: str, instances: list[str]) -> None:
        call = getattr(self.session.client("elbv2"), f"{verb}_targets")
        call(TargetGroupArn=self.controller.target_group_arn, Targets=[{"Id": instance} for instance in instances])

    def launch(self, joining: list[str], began: float, event: ScaleEvent, state_manager: "StateManagerStandIn | None",
                timeout: float) -> None:
        world = self._require_world()
        user_data = self.user_data()
        reservations = self.session.client("ec2").describe_instances(InstanceIds=joining)["Reservations"]
        healthy_at: dict[str, float] = {}
        watching = threading.Event()

        def watch() -> None:  # when each new host first counts as healthy, while the rest of the launch goes on
            while not watching.is_set() and len(healthy_at) < len(joining):
                states = self.controller.states()
                for instance in joining:
                    if instance not in healthy_at and states.get(instance) == "healthy":
                        healthy_at[instance] = time.monotonic() - began
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, name="scale-out-watch", daemon=True)
        watcher.start()
        try:
            for reservation in reservations:
                for instance in reservation["Instances"]:
                    boxes.boot_box(self.daemon, world, image=self.box_image, instance_id=instance["InstanceId"],
                                   local_ipv4=instance.get("PrivateIpAddress", ""), user_data=user_data,
                                   availability_zone=instance.get("Placement", {}).get("AvailabilityZone", f"{world.region}a"),
                                   state_dir=self.state_dir,
                                   profile=self.instance_profile(instance["InstanceId"]))
            self.targets("register", joining)
            for instance in joining:
                boxes.wait_signalled(self.daemon, world.boxes[instance])
            if state_manager is not None:
                event.gate_runs.extend(join_gates(self, state_manager, joining))
            watcher.join(timeout)
        finally:
            watching.set()
        missing = [instance for instance in joining if instance not in healthy_at]
        if missing:
            raise boxes.BoxError(f"new host(s) {', '.join(missing)} never became healthy in the load balancer stand-in")
        event.added.update(healthy_at)

    def instance_profile(self, instance_id: str) -> boxes.InstanceProfile:
        """The credentials a host's metadata service hands out: the launch template's instance profile's role, assumed
        for the instance as EC2 does (the session is named after it), so the emulator holds the host's scripts to that
        role's policies (local/moto_iam.py). Assumed for 12 hours: longer than any box world of a test or a walk."""
        if self._host_role is None:
            pages = self.session.client("cloudformation").get_paginator("list_stack_resources").paginate(StackName=self.service_stack)
            roles = [r["PhysicalResourceId"] for page in pages for r in page["StackResourceSummaries"]
                     if r.get("ResourceType") == "AWS::IAM::Role" and r["LogicalResourceId"].startswith(HOST_ROLE_LOGICAL_ID)]
            if len(roles) != 1:
                raise boxes.BoxError(f"{self.service_stack} has {len(roles)} host role(s) ({HOST_ROLE_LOGICAL_ID}...); expected one")
            self._host_role = roles[0]
        arn = f"arn:aws:iam::{EMULATED_ACCOUNT}:role/{self._host_role}"
        credentials = self.session.client("sts").assume_role(RoleArn=arn, RoleSessionName=instance_id,
                                                             DurationSeconds=HOST_CREDENTIALS_SECONDS)["Credentials"]
        return boxes.InstanceProfile(role=self._host_role, access_key_id=credentials["AccessKeyId"],
                                     secret_access_key=credentials["SecretAccessKey"], token=credentials["SessionToken"],
                                     expiration=credentials["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"))

    def boot(self) -> dict[str, float]:
        """Boot a box per instance of the group (all at once, as a group launches), wait for each signal;
        return seconds from boot to signal per instance."""
        world = self._require_world()
        user_data = self.user_data()
        instances = self._instances()
        started = {}
        for instance in instances:
            boxes.boot_box(self.daemon, world, image=self.box_image, instance_id=instance["InstanceId"],
                           local_ipv4=instance.get("PrivateIpAddress", ""), user_data=user_data,
                           availability_zone=instance.get("Placement", {}).get("AvailabilityZone", f"{world.region}a"),
                           state_dir=self.state_dir,
                           profile=self.instance_profile(instance["InstanceId"]))
            started[instance["InstanceId"]] = time.monotonic()
        seconds = {}
        for instance_id, began in started.items():
            boxes.wait_signalled(self.daemon, world.boxes[instance_id])
            seconds[instance_id] = time.monotonic() - began
        return seconds

    def _instances(self) -> list[dict]:
        ids = [instance["InstanceId"] for instance in self.group().get("Instances", [])]
        if not ids:
            raise boxes.BoxError(f"the emulator lists no instance in {self.service_stack}'s Auto Scaling group")
        reservations = self.session.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
        return [instance for reservation in reservations for instance in reservation["Instances"]]

    # --- faults a test can cause ---------------------------------------------------------------

    # Docker downloads layers into this directory before it registers them: a full small filesystem mounted
    # over it makes every pull fail with docker's own "no space left on device", and the machine's disk is
    # never filled (the boxes' Docker data lives on it).
    DOCKER_DOWNLOAD_DIR = "/var/lib/docker/tmp"

    def fill_docker_disk(self, box: boxes.Box) -> None:
        """The host's Docker disk is full (for pulls: what runs keeps running)."""
        script = (f"mkdir -p {self.DOCKER_DOWNLOAD_DIR} && mount -t tmpfs -o size=64k liftoff-full-disk {self.DOCKER_DOWNLOAD_DIR}"
                  f" && fallocate -l 64k {self.DOCKER_DOWNLOAD_DIR}/fill")
        result = boxes.run_on_box(self.daemon, box, "bash", "-c", script, timeout=30)
        if result.returncode != 0:
            raise boxes.BoxError(f"could not fill {box.instance_id}'s Docker disk: {result.stderr.strip()}")

    def free_docker_disk(self, box: boxes.Box) -> None:
        result = boxes.run_on_box(self.daemon, box, "umount", "liftoff-full-disk", timeout=30)
        if result.returncode != 0:
            raise boxes.BoxError(f"could not free {box.instance_id}'s Docker disk: {result.stderr.strip()}")

    def stop_registry(self) -> None:
        """The ECR stand-in is unreachable: paused, so connections open but nothing answers and the hosts' docker
        gives up on its own timeout (paused, not stopped: a restarted container may get another address)."""
        self.daemon.run("pause", self._require_world().registry_container, timeout=60)

    def start_registry(self) -> None:
        self.daemon.run("unpause", self._require_world().registry_container, timeout=60)

    def stop_database(self) -> None:
        """The RDS stand-in is down: PostgreSQL shuts down fast (it ends its sessions, as an instance that stops
        or fails over does) and its container stops, so nothing answers on its address."""
        container = self._require_world().database_container
        self.daemon.run("kill", "--signal", "SIGINT", container, timeout=60)
        self.daemon.run("wait", container, timeout=120)

    def start_database(self) -> None:
        world = self._require_world()
        self.daemon.run("start", world.database_container, timeout=60)
        # The hosts' DNS names the stand-in's address: it must come back on it.
        address = boxes._address(self.daemon, world.database_container, world.network)
        if address != world.database_address:
            raise boxes.BoxError(f"the RDS stand-in came back on {address}, not {world.database_address} (the hosts' DNS)")
        port = self.host_environment()["DB_PORT"]
        boxes._wait(lambda: self.daemon.run("exec", world.database_container, "pg_isready", "-q", "-h", "127.0.0.1", "-p", port,
                                            check=False).returncode == 0,
                    60, "the RDS stand-in did not accept connections again", lambda: "")

    def box_running(self, box: boxes.Box) -> bool:
        return self.boxes_running([box]) == [box]

    def boxes_running(self, boxes_: list[boxes.Box]) -> list[boxes.Box]:
        """Those of `boxes_` whose container runs, read in one batch from the daemon."""
        running = self.daemon.running(*(box.container for box in boxes_))
        return [box for box in boxes_ if box.container in running]

    def reports(self) -> dict[str, dict]:
        """The host reports the hosts wrote to the emulator's SSM (HostReportPath<instance-id>)."""
        path = self._outputs(self.service_stack)["HostReportPath"]
        found = {}
        for page in self.session.client("ssm").get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
            for parameter in page["Parameters"]:
                found[parameter["Name"][len(path):]] = json.loads(parameter["Value"])
        return found

    # --- the hosts -----------------------------------------------------------------------------

    @property
    def hosts(self) -> list[boxes.Box]:
        return list(self._require_world().boxes.values())

    def run_gate(self, gate: str, tag: str, *, max_concurrency: str = "1") -> list[GateRun]:
        """The gate's document command on the hosts, as State Manager's rate control runs it: at most
        `max_concurrency` (a count or a percentage of the hosts) at a time, and none started after the first
        failure (MaxErrors 0). Runs come back in the hosts' order."""
        script = {name: command for name, _, command in GATES}[gate]
        with self._lock:
            hosts = list(self.hosts)
            at_once = d.hosts_at_once(max_concurrency, len(hosts))
            failed = threading.Event()

            def run(box: boxes.Box) -> GateRun | None:
                if failed.is_set():
                    return None
                began = time.monotonic()
                result = boxes.run_on_box(self.daemon, box, f"/opt/liftoff/bin/{script}", tag)
                if result.returncode != 0:
                    failed.set()
                return GateRun(gate=gate, tag=tag, instance_id=box.instance_id, exit_code=result.returncode,
                               seconds=time.monotonic() - began, output=result.stdout + result.stderr)

            with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix=f"{gate}-gate") as pool:
                runs = list(pool.map(run, hosts))
        return [run for run in runs if run is not None]

    def answer(self, box: boxes.Box, path: str, *, timeout: float = 2.0) -> tuple[int, str]:
        """What the host's service answers on `path` (its own port, as the load balancer reaches it)."""
        port = self.host_environment()["CONTAINER_PORT"]
        try:
            with urllib.request.urlopen(f"http://{box.address}:{port}{path}", timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError as error:
            return 0, str(error)

    def serving_version(self, box: boxes.Box) -> str:
        status, body = self.answer(box, "/version")
        return json.loads(body).get("version", "") if status == 200 else ""

    def end_bake_window(self) -> list[str]:
        """What each host's retire timer does when `bake_seconds` have passed: stop the warm previous
        version (activation: slots), so the next switch back is an ordinary start. Returns what ran."""
        said = []
        for box in self.hosts:
            active = boxes.run_on_box(self.daemon, box, "cat", "/etc/liftoff/active-slot", timeout=30).stdout.strip()
            if active not in ("a", "b"):
                continue
            idle = "b" if active == "a" else "a"
            result = boxes.run_on_box(self.daemon, box, "/opt/liftoff/bin/liftoff-retire", idle, timeout=180)
            if result.returncode != 0:
                raise boxes.BoxError(f"liftoff-retire {idle} on {box.instance_id} exited {result.returncode}: {result.stderr.strip()}")
            said.append(f"{box.instance_id}: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'retired'}")
        return said

    def active_tags(self) -> dict[str, str]:
        return {box.instance_id: boxes.active_tag(self.daemon, box) for box in self.hosts}

    def _require_world(self) -> boxes.BoxWorld:
        if self.world is None:
            raise boxes.BoxError("the hosts' world is not started (call start() first)")
        return self.world


class StateManagerStandIn:
    """Runs the gates on the hosts when the stack's gate parameters change (see the module docstring)."""

    def __init__(self, hosts: StageHosts, *, say: Say = print, status: dict[str, dict] | None = None,
                 on_result: Callable[[dict[str, dict]], None] | None = None, interval: float | None = None):
        self.hosts, self.say, self.on_result = hosts, say, on_result
        # gate -> what its association last ran ({"tag", "status"}); seeded, a gate whose tag is unchanged does not run
        self.status: dict[str, dict] = dict(status or {})
        self.runs: list[GateRun] = []
        # gate -> instance -> its last run's result: {"tag", "status" (Success|Failed), "exit_code", "output"}
        self.instance_results: dict[str, dict[str, dict]] = {}
        # A gate run in progress may take minutes (a pull, a canary): stopping waits for it.
        self._follower = Follower("State Manager stand-in", self.apply_once, say=say, stop_timeout=900,
                                  interval=FOLLOW_INTERVAL_SECONDS if interval is None else interval)
        self._changed = threading.Condition()

    def parameters(self) -> dict[str, str]:
        described = self.hosts.session.client("cloudformation").describe_stacks(StackName=self.hosts.service_stack)["Stacks"][0]
        return {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}

    def apply_once(self) -> list[GateRun]:
        """Run every gate whose parameter differs from what it last ran (stage before activate)."""
        parameters = self.parameters()
        done = []
        for gate, parameter, _ in GATES:
            tag = parameters.get(parameter, "")
            if not tag or self.status.get(gate, {}).get("tag") == tag:
                continue
            done.extend(self._run(gate, tag, parameters))
        return done

    def max_concurrency(self, gate: str, parameters: dict[str, str]) -> str:
        """The gate's association's MaxConcurrency as the stack's template says it (a Ref resolved with the
        stack's parameters), found by the parameter its ImageTag follows."""
        body = self.hosts.session.client("cloudformation").get_template(
            StackName=self.hosts.service_stack, TemplateStage="Original")["TemplateBody"]
        template = json.loads(body) if isinstance(body, str) else body
        follows = {"Ref": {name: parameter for name, parameter, _ in GATES}[gate]}
        for resource in template.get("Resources", {}).values():
            properties = resource.get("Properties", {})
            if resource.get("Type") == "AWS::SSM::Association" and properties.get("Parameters", {}).get("ImageTag") == [follows]:
                value = properties.get("MaxConcurrency", "1")
                return parameters.get(value["Ref"], "1") if isinstance(value, dict) else str(value)
        return "1"

    def _run(self, gate: str, tag: str, parameters: dict[str, str]) -> list[GateRun]:
        """Run `gate` with `tag` at the concurrency `parameters` (the stack's, read with the tag) give its association."""
        with self._changed:
            self.status[gate] = {"tag": tag, "status": "InProgress"}
        at_once = self.max_concurrency(gate, parameters)
        began = time.monotonic()
        runs = self.hosts.run_gate(gate, tag, max_concurrency=at_once)
        failed = [run for run in runs if not run.succeeded]
        with self._changed:
            self.status[gate] = {"tag": tag, "status": "Failed" if failed else "Success"}
            self._record(runs)
            self._changed.notify_all()
            finished = {name: dict(value) for name, value in self.status.items()}
        if self.on_result is not None:  # e.g. kept on disk the moment it is known (local/supervisor.py)
            self.on_result(finished)
        for run in runs:
            self.say(f"  host {run.instance_id}: {gate} {tag} -> exit {run.exit_code} in {run.seconds:.1f} s")
        self.say(f"  {gate} {tag}: {len(runs)} host(s), MaxConcurrency {at_once}, {time.monotonic() - began:.1f} s in all")
        return runs

    def _record(self, runs: list[GateRun]) -> None:
        self.runs.extend(runs)
        for run in runs:
            self.instance_results.setdefault(run.gate, {})[run.instance_id] = {
                "tag": run.tag, "status": "Success" if run.succeeded else "Failed", "exit_code": run.exit_code,
                "output": run.output[-2000:]}

    def gates_of(self, association_id: str) -> list[str]:
        """The gate(s) an association id of the service stack stands for (see the module docstring)."""
        outputs = self.hosts._outputs(self.hosts.service_stack)
        gates = [gate for gate, key in (("stage", "StageAssociationId"), ("activate", "ActivateAssociationId"))
                 if outputs.get(key) == association_id]
        if not gates:
            known = sorted({outputs.get("StageAssociationId", ""), outputs.get("ActivateAssociationId", "")} - {""})
            raise boxes.BoxError(f"association {association_id!r} is not one of {self.hosts.service_stack}'s "
                                 f"({', '.join(known) or 'none'})")
        return gates

    def start_association_once(self, association_id: str) -> list[GateRun]:
        """SSM StartAssociationsOnce: the association runs again now on every host, with the stack's current
        parameter, whether or not it changed (the follower thread keeps following changes)."""
        parameters = self.parameters()
        runs = []
        for gate in self.gates_of(association_id):
            tag = parameters.get({name: parameter for name, parameter, _ in GATES}[gate], "")
            if tag:
                runs.extend(self._run(gate, tag, parameters))
        return runs

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()

    def wake(self) -> None:
        """The stack was just changed: follow it now (AWS starts the association's run on the change itself)."""
        self._follower.wake()

    def settle(self) -> list[GateRun]:
        """Stop following, then run what the stack asks that has not run yet: State Manager applies an association
        after the update that changed it, so a change made just before the stop (a rollback's stack update, which the
        follower may not have polled yet) runs now instead of being dropped."""
        self.stop()
        return self.apply_once()


def join_gates(hosts: StageHosts, state_manager: StateManagerStandIn, instance_ids: list[str]) -> list[GateRun]:
    """State Manager on instances that joined the group: each association's last tag (stage, then activate) runs
    on them, as AWS applies a tag-targeted association to every new instance that matches it."""
    runs = []
    with hosts._lock:
        for gate, _, script in GATES:
            tag = state_manager.status.get(gate, {}).get("tag")
            if not tag:
                continue
            for instance in instance_ids:
                box = hosts.world.boxes[instance]
                began = time.monotonic()
                result = boxes.run_on_box(hosts.daemon, box, f"/opt/liftoff/bin/{script}", tag)
                runs.append(GateRun(gate=gate, tag=tag, instance_id=instance, exit_code=result.returncode,
                                    seconds=time.monotonic() - began, output=result.stdout + result.stderr))
    with state_manager._changed:
        state_manager._record(runs)
    return runs


class HostsRuntime(EmulatedRuntime):
    """The release tool's adapter on an emulated ec2 stage whose hosts are real boxes."""

    def __init__(self, *, hosts: StageHosts, state_manager: StateManagerStandIn, **kwargs):
        super().__init__(**kwargs)
        self.hosts, self.state_manager = hosts, state_manager
        self.run_command = RunCommandStandIn(hosts)
        # The gates Run Command ran (the fleet's canary host alone; every host's warm flip), as the State Manager stand-in keeps its own.
        self.command_runs: list[GateRun] = []

    def update_parameters(self, name: str, parameters: list[dict[str, str]]) -> None:
        super().update_parameters(name, parameters)
        self.state_manager.wake()

    def send_to_hosts(self, instances, document, parameters, *, timeout, poll, sleep, monotonic):
        """SSM Run Command on the boxes: the fleet's canary host alone, or every host's warm flip at once."""
        began = time.monotonic()
        results = self.run_command.run_on(instances, document, parameters, timeout=timeout)
        tag = parameters.get("ImageTag", [""])[0]
        for instance, (code, output, _) in results.items():
            self.command_runs.append(GateRun(gate="activate", tag=tag, instance_id=instance, exit_code=code,
                                             seconds=time.monotonic() - began, output=output))
            self.state_manager.say(f"  host {instance}: activate {tag} (Run Command, {len(instances)} host(s)) -> exit {code} "
                                   f"in {time.monotonic() - began:.1f} s")
        return results

    def ec2_running(self, auto_scaling_group: str, association_id: str) -> dict:
        desired, _ = self.auto_scaling_group(auto_scaling_group)
        association = self.state_manager.status.get(self.state_manager.gates_of(association_id)[0], {})
        return {"instances": [self._instance(box) for box in self.hosts.hosts],
                "desired_count": desired, "association_parameter": association.get("tag", ""),
                "association_status": association.get("status", "")}

    def _instance(self, box: boxes.Box) -> dict:
        """What the group would say of a host, from what docker says of its box and the load balancer stand-in's
        checks (the group uses ELB health checks): a stopped box or a host failing its checks is Unhealthy
        (the group then replaces it)."""
        if not self.hosts.box_running(box):
            return {"instance": box.instance_id, "state": "InService", "health": "Unhealthy"}
        states = self.hosts.controller.states() if self.hosts.controller is not None else {}
        healthy = states.get(box.instance_id, "healthy") in ("healthy", "initial")
        return {"instance": box.instance_id, "state": "InService", "health": "Healthy" if healthy else "Unhealthy"}

    def start_association_once(self, association_id: str) -> None:
        """SSM StartAssociationsOnce, honoured by the State Manager stand-in (the emulator has no association model)."""
        self.state_manager.start_association_once(association_id)

    def target_health(self, target_group_arn: str) -> list[dict]:
        """The load balancer stand-in's states (its real health checks and draining), as an ALB reports them."""
        if self.hosts.controller is None:
            raise boxes.BoxError("the load balancer stand-in is not running (StageHosts.start_load_balancer)")
        return [{"target": target, "state": state, "reason": "" if state == "healthy" else state}
                for target, state in self.hosts.controller.states().items()]
