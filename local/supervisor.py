"""`make local-up`'s supervisor: one process that keeps a kept world living until `make local-down`.

On AWS the hosts and the tasks are looked after whether or not anyone runs a command. Here each of the
things AWS keeps running is a follower (local/follower.py) in this one process, started by `python -m local up`
after its walk and stopped by `python -m local down` by the pid in `.local/supervisor.json`.

An ec2 stage (`HostsSupervisor`): State Manager applies the gate associations when the stack changes them, the
load balancer checks its targets, the alarms evaluate, the Auto Scaling group replaces a failed host and follows
its desired capacity:
- the load balancer stand-in (HAProxy on the port `up` printed) and its controller, and the alarm stand-in;
- the State Manager stand-in (both gates, on every host, on hosts that join), seeded with what the walk's
  associations last ran (`associations.json`, rewritten as they run) so a restart does not run them again;
- the Auto Scaling group stand-in (local/group.py).

An ecs stage (`TasksSupervisor`), on the world the walk kept (ECR and RDS stand-ins, AWS endpoints): the load
balancer stand-in on both target groups and the alarm stand-in, and the ECS stand-in with its agent
(local/ecs_stage.py), which runs the service's desired count of tasks of its current revision and follows every
later stack update. The walk's tasks are not handed over: they are stopped with the walk, and this stand-in starts
the service's tasks itself, as ECS's service scheduler replaces stopped tasks. A running task belongs to the
stand-in that started it (its deployments, registrations and stop are that stand-in's memory); taking over
another process's containers would be a path ECS never takes and the stand-in does not have. The cost is a gap
of a few seconds between the walk's end and these tasks' first healthy check, when no one serves (the walk's
HAProxy has stopped by then too). A supervisor killed outright leaves its tasks running and its publication in
the emulator: the next one withdraws the publication (stale, it would make the ECS API fail), removes the task
containers (labels `liftoff.harness=<world>` and `liftoff.ecs.task`) and their volumes, and deregisters them from
the service's target groups (as ECS deregisters a stopped task) before its own stand-in starts, so no two sets
of tasks run and no dead target is served or shown.

A `liftoff` in another shell reaches what only this process can answer through a small HTTP API on loopback:
`GET /state`, and `POST /call` with `{"method", "args"}` for the methods the supervisor's `calls` list
(local/control.py is the client): on ec2 what runs on the hosts, target health, Run Command on the boxes,
StartAssociationsOnce and image blobs; on ecs only image blobs, since the emulator answers the ECS reads from the
stand-in's publications (local/moto_live.py). Everything else that `liftoff` does goes to the emulator, as it
would go to AWS.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from local import boxes, processes
from local import emulator as emulators
from local.aws import EMULATED_ACCOUNT, FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.docker import DEFAULT_HOST, Daemon
from local.ecs_agent import EcsAgentError, publication_url, withdraw
from local.ecs_stage import StageTasks
from local.follower import Follower
from local.group import GroupStandIn
from local.hosts import HostsRuntime, StageHosts, StateManagerStandIn
from local.lb import LoadBalancer

REPO = Path(__file__).resolve().parents[1]
RECORD_NAME = "supervisor.json"
ASSOCIATIONS_NAME = "associations.json"
LOG_NAME = "supervisor.log"
STEADY_TIMEOUT_SECONDS = 180.0  # an ecs supervisor's tasks pulled, migrated, started and healthy before it answers
START_TIMEOUT_SECONDS = STEADY_TIMEOUT_SECONDS + 60.0
# A gate in progress, or the tasks' stop timeouts, are let finish (their own timeouts bound them); then SIGKILL.
STOP_GRACE_SECONDS = 60.0
GROUP_INTERVAL_SECONDS = 2.0
IN_SERVICE_TIMEOUT_SECONDS = 60.0


class SupervisorError(RuntimeError):
    """The supervisor could not start, or a call to it failed; the message says what to read."""


@dataclass(frozen=True)
class SupervisorRecord:
    pid: int
    stage: str
    control_url: str
    balancer_url: str
    balancer_pid: int
    log: str


# --- the process `up` starts and `down` stops ------------------------------------------------------

def start(state_dir: Path, *, stage: str, listen_port: int, box_image: str, docker_host: str,
          timeout: float = START_TIMEOUT_SECONDS) -> SupervisorRecord:
    """Start the supervisor in a session of its own; return its record once its API answers."""
    (state_dir / RECORD_NAME).unlink(missing_ok=True)
    log = state_dir / LOG_NAME
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "local.supervisor", "--stage", stage, "--state-dir", str(state_dir.resolve()),
             "--listen-port", str(listen_port), "--box-image", box_image],
            cwd=REPO, env={**os.environ, "DOCKER_HOST": docker_host}, stdout=log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        record = recorded(state_dir)
        if record is not None and record.pid == process.pid:
            return record
        if process.poll() is not None:
            raise SupervisorError(f"the local supervisor exited {process.returncode} before it answered; {log}:\n"
                                  f"{processes.tail(log)}")
        if time.monotonic() > deadline:
            processes.stop(process.pid, grace_seconds=10)
            raise SupervisorError(f"the local supervisor did not answer within {timeout:.0f} s; {log}:\n{processes.tail(log)}")
        time.sleep(0.2)


def recorded(state_dir: Path) -> SupervisorRecord | None:
    try:
        return SupervisorRecord(**json.loads((state_dir / RECORD_NAME).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def is_ours(record: SupervisorRecord) -> bool:
    """The recorded pid is still a supervisor (pids get reused, e.g. after a reboot)."""
    return b"local.supervisor" in processes.command_line(record.pid)


def stop_recorded(state_dir: Path) -> SupervisorRecord | None:
    """Stop the recorded supervisor (it stops its followers and HAProxy); HAProxy too if the supervisor could not.
    Returns the record, or None when none was kept. A stale record (its process gone) is only removed."""
    record = recorded(state_dir)
    if record is None:
        return None
    if is_ours(record):
        processes.stop(record.pid, grace_seconds=STOP_GRACE_SECONDS)
    if b"haproxy" in processes.command_line(record.balancer_pid):  # killed before it stopped HAProxy (its own session)
        processes.stop(record.balancer_pid)
    (state_dir / RECORD_NAME).unlink(missing_ok=True)
    return record


def save_associations(state_dir: Path, status: dict[str, dict]) -> None:
    """What the State Manager stand-in's associations last ran (gate -> tag, status), for the next supervisor."""
    done = {gate: value for gate, value in status.items() if value.get("status") in ("Success", "Failed")}
    tmp = state_dir / f"{ASSOCIATIONS_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"  # two gates may end at once
    tmp.write_text(json.dumps(done, indent=1))
    tmp.replace(state_dir / ASSOCIATIONS_NAME)


def saved_associations(state_dir: Path) -> dict[str, dict]:
    try:
        return json.loads((state_dir / ASSOCIATIONS_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# --- the supervisor itself -------------------------------------------------------------------------

class _Supervising:
    """What both kinds share: the control API on loopback and the record `up`, `down` and another shell's `liftoff` read."""

    calls: tuple[str, ...] = ()
    compute = ""

    def __init__(self, *, stage: str, state_dir: Path, say):
        self.stage, self.state_dir, self.say = stage, state_dir, say
        self._server: ThreadingHTTPServer | None = None

    def call(self, method: str, args: dict):
        if method not in self.calls:
            raise SupervisorError(f"unknown call {method!r}; the supervisor of stage {self.stage} answers "
                                  f"{', '.join(self.calls)}")
        return self._call(method, args)  # each kind's own

    def _serve(self, balancer: LoadBalancer) -> SupervisorRecord:
        """The control API, then the record: `up` waits for the record, so everything answers once it exists."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self._server.serve_forever, name="control API", daemon=True).start()
        record = SupervisorRecord(pid=os.getpid(), stage=self.stage, control_url=f"http://127.0.0.1:{self._server.server_port}",
                                  balancer_url=balancer.url, balancer_pid=balancer.process.pid,
                                  log=str(self.state_dir / LOG_NAME))
        tmp = self.state_dir / f"{RECORD_NAME}.tmp"
        tmp.write_text(json.dumps(asdict(record), indent=1))
        tmp.replace(self.state_dir / RECORD_NAME)
        self.say(f"supervising stage {self.stage}: control API {record.control_url}")
        return record

    def _stop_serving(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def _running_emulator(state_dir: Path) -> emulators.Emulator:
    emulator = emulators.recorded(state_dir)
    if emulator is None or not emulators.is_ours(emulator):
        raise SupervisorError(f"no emulator runs from {state_dir} (`make local-up` starts one)")
    return emulator


def _kept_world(state_dir: Path, what: str) -> boxes.BoxWorld:
    world = boxes.BoxWorld.recorded(state_dir)
    if world is None:
        raise SupervisorError(f"no world is recorded in {state_dir} for {what} (`make local-up` keeps one where Docker runs)")
    return world


class HostsSupervisor(_Supervising):
    """An ec2 stage's kept hosts (see the module docstring)."""

    # What another shell's liftoff may ask (HostsRuntime's methods: the reads of what runs, and what only runs here).
    calls = ("ec2_running", "target_health", "start_association_once", "send_to_hosts", "download_layer")
    compute = "ec2"

    def __init__(self, *, stage: str, service_stack: str, registry_stack: str, state_dir: Path, listen_port: int,
                 box_image: str, daemon: Daemon, say=print):
        super().__init__(stage=stage, state_dir=state_dir, say=say)
        self.listen_port = listen_port
        emulator = _running_emulator(state_dir)
        world = _kept_world(state_dir, "the hosts")
        session = EndpointSession(fake_session(), emulator.endpoint)
        self.hosts = StageHosts(daemon=daemon, session=session, emulator_port=emulator.port, service_stack=service_stack,
                                registry_stack=registry_stack, state_dir=state_dir, name=world.name, box_image=box_image,
                                say=say)
        self.hosts.attach(world)
        # What the associations ran is kept the moment each run ends: a supervisor killed later starts from it.
        self.state_manager = StateManagerStandIn(self.hosts, say=say, status=saved_associations(state_dir),
                                                 on_result=lambda status: save_associations(state_dir, status))
        self.runtime = HostsRuntime(hosts=self.hosts, state_manager=self.state_manager, service_stack=service_stack,
                                    registry_stack=registry_stack, region=FAKE_ENVIRONMENT["AWS_REGION"], session=session)
        self.group = GroupStandIn(self.hosts, self.state_manager, say=say)
        self._group_follower = Follower("Auto Scaling group stand-in", self.group.step, interval=GROUP_INTERVAL_SECONDS,
                                        say=say, stop_timeout=boxes.BOOT_TIMEOUT_SECONDS)

    def start(self) -> SupervisorRecord:
        balancer = self.hosts.start_load_balancer(listen_port=self.listen_port)
        self.say(f"load balancer: {balancer.url} (HAProxy pid {balancer.process.pid})")
        try:
            # A new HAProxy knows no target healthy before its checks pass: answer only once it serves (the walk's did).
            self.hosts.wait_in_service(timeout=IN_SERVICE_TIMEOUT_SECONDS)
        except boxes.BoxError as error:
            self.say(f"not every host is in service yet ({error}); the Auto Scaling group stand-in looks after them")
        self.state_manager.start()
        self._group_follower.start()
        return self._serve(balancer)

    def stop(self) -> None:
        self._stop_serving()
        self._group_follower.stop()
        self.state_manager.stop()
        self.hosts.stop_load_balancer()
        self.say("stopped")

    def state(self) -> dict:
        states = self.hosts.controller.states() if self.hosts.controller is not None else {}
        return {"stage": self.stage, "compute": self.compute,
                "balancer_url": self.hosts.balancer.url if self.hosts.balancer else "",
                "associations": self.state_manager.status, "targets": states,
                "hosts": {box.instance_id: box.address for box in self.hosts.hosts},
                "replaced": [list(item) for item in self.group.replaced]}

    def _call(self, method: str, args: dict):
        if method == "send_to_hosts":
            results = self.runtime.send_to_hosts(args["instances"], args["document"], args["parameters"],
                                                 timeout=args["command_timeout"], poll=0, sleep=time.sleep, monotonic=time.monotonic)
            return {instance: list(result) for instance, result in results.items()}
        if method == "download_layer":
            blob = boxes.registry_blob(self.hosts.world, **args)
            return base64.b64encode(blob).decode()
        return getattr(self.runtime, method)(**args)


class TasksSupervisor(_Supervising):
    """An ecs stage's kept world and its service's tasks (see the module docstring)."""

    # The ECS reads go to the emulator (it answers from the agent's publications); the ECR stand-in's blobs only from here.
    calls = ("download_layer",)
    compute = "ecs"

    def __init__(self, *, stage: str, service_stack: str, registry_stack: str, state_dir: Path, listen_port: int,
                 box_image: str, daemon: Daemon, say=print):
        super().__init__(stage=stage, state_dir=state_dir, say=say)
        self.listen_port, self.daemon = listen_port, daemon
        emulator = _running_emulator(state_dir)
        world = _kept_world(state_dir, "the tasks")
        self.session = EndpointSession(fake_session(), emulator.endpoint)
        self.tasks = StageTasks(daemon=daemon, session=self.session, emulator_port=emulator.port, service_stack=service_stack,
                                registry_stack=registry_stack, state_dir=state_dir, name=world.name, box_image=box_image,
                                account=EMULATED_ACCOUNT, region=FAKE_ENVIRONMENT["AWS_REGION"], say=say)
        self.tasks.world = world  # started and recorded by the walk; `make local-down` removes it
        self.service = ""

    def start(self) -> SupervisorRecord:
        outputs = self.tasks.outputs()
        self.service = outputs["EcsServiceName"]
        self._clear_a_dead_stand_in(cluster=outputs["ClusterName"], target_groups=StageTasks.target_groups(outputs))
        balancer = self.tasks.start_load_balancer(listen_port=self.listen_port)
        self.say(f"load balancer: {balancer.url} (HAProxy pid {balancer.process.pid})")
        self.tasks.start_tasks()
        try:
            running = self.tasks.wait_steady(timeout=STEADY_TIMEOUT_SECONDS)
            self.say(f"service {self.service}: {len(running)} task(s) running and healthy")
        except boxes.BoxError as error:
            self.say(f"service {self.service} is not steady yet ({error}); the ECS stand-in goes on launching its tasks")
        return self._serve(balancer)

    def stop(self) -> None:
        self._stop_serving()
        self.tasks.stop_running()  # the agent withdraws its publication, the tasks stop in their stop timeouts, then HAProxy
        self.say("stopped")

    def state(self) -> dict:
        ecs, controller = self.tasks.ecs, self.tasks.controller
        return {"stage": self.stage, "compute": self.compute,
                "balancer_url": self.tasks.balancer.url if self.tasks.balancer else "",
                "targets": controller.states() if controller is not None else {},
                "tasks": {task["taskArn"].rsplit("/", 1)[-1]: {"status": task["lastStatus"], "address": task["address"],
                                                              "revision": task["revision"].rsplit("/", 1)[-1]}
                          for task in (ecs.tasks(self.service) if ecs is not None else [])},
                "deployments": [{"status": deployment.status, "stage": deployment.stage,
                                 "revision": deployment.target.rsplit("/", 1)[-1]}
                                for deployment in (ecs.deployments(self.service) if ecs is not None else [])]}

    def _call(self, method: str, args: dict):
        blob = boxes.registry_blob(self.tasks.world, **args)  # the only call: download_layer
        return base64.b64encode(blob).decode()

    def _clear_a_dead_stand_in(self, *, cluster: str, target_groups: list[str]) -> None:
        """What an earlier stand-in left: a killed supervisor's publication, task containers and registrations; after
        the walk, which stopped its tasks in order, only their registrations (ECS deregisters a stopped task; a stand-in
        that stops with its tasks leaves them)."""
        try:
            withdraw(publication_url(self.session.endpoint_url), account=EMULATED_ACCOUNT, region=FAKE_ENVIRONMENT["AWS_REGION"],
                     cluster=cluster)
        except EcsAgentError as error:
            raise SupervisorError(f"the emulator did not withdraw cluster {cluster}'s publication ({error})") from None
        world = self.tasks.world
        containers = self.daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={world.name}",
                                     "--filter", "label=liftoff.ecs.task").stdout.split()
        if containers:
            self.daemon.run("rm", "--force", "--volumes", *containers, timeout=120)
        volumes = [volume for volume in self.daemon.run("volume", "ls", "--quiet", "--filter",
                                                        f"label=liftoff.harness={world.name}").stdout.split()
                   if volume.startswith(f"{world.name}-task-")]  # the tasks' own (local/ecs_tasks.py names them so)
        if volumes:
            self.daemon.run("volume", "rm", "--force", *volumes)
        elbv2 = self.session.client("elbv2")
        deregistered = 0
        for group in target_groups:
            targets = [{"Id": description["Target"]["Id"], "Port": description["Target"]["Port"]}
                       for description in elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]]
            if targets:
                elbv2.deregister_targets(TargetGroupArn=group, Targets=targets)
                deregistered += len(targets)
        if containers or deregistered:
            self.say(f"removed what an earlier ECS stand-in left: {len(containers)} task container(s), {len(volumes)} volume(s), "
                     f"{deregistered} target registration(s)")


def _handler(supervisor: _Supervising) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path != "/state":
                return self._answer(404, {"error": {"type": "NotFound", "message": f"no {self.path}; GET /state"}})
            self._answer(200, supervisor.state())

        def do_POST(self):  # noqa: N802
            if self.path != "/call":
                return self._answer(404, {"error": {"type": "NotFound", "message": f"no {self.path}; POST /call"}})
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self._answer(200, {"result": supervisor.call(request["method"], request.get("args", {}))})
            except Exception as error:  # said to the caller, which raises it there
                self._answer(200, {"error": {"type": type(error).__name__, "message": str(error)}})

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args) -> None:
            pass  # the calls' effects are said by the followers; one line per HTTP request is noise

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.supervisor", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--box-image", required=True)
    args = parser.parse_args(argv)
    from config import load_config

    stage = load_config(REPO / "cdk.json").stage(args.stage)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopping.set())

    def say(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line.strip()}", flush=True)

    kind = TasksSupervisor if stage.compute == "ecs" else HostsSupervisor
    supervisor = kind(stage=stage.name, service_stack=stage.service_stack_name, registry_stack=stage.registry_stack_name,
                      state_dir=args.state_dir, listen_port=args.listen_port, box_image=args.box_image,
                      daemon=Daemon(host=os.environ.get("DOCKER_HOST") or DEFAULT_HOST), say=say)
    try:
        supervisor.start()
        stopping.wait()
    finally:
        supervisor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
