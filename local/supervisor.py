"""`make local-up`'s supervisor: one process that keeps a kept ec2 world living until `make local-down`.

On AWS the hosts are looked after whether or not anyone runs a command: State Manager applies the gate
associations when the stack changes them, the load balancer checks its targets, the alarms evaluate,
the Auto Scaling group replaces a failed host and follows its desired capacity. Here each of those is a
follower (local/follower.py) in this one process, started by `python -m local up` after its walk
and stopped by `python -m local down` by the pid in `.local/supervisor.json`:

- the load balancer stand-in (HAProxy on the port `up` printed) and its controller, and the alarm stand-in;
- the State Manager stand-in (both gates, on every host, on hosts that join), seeded with what the walk's
  associations last ran (`associations.json`, rewritten as they run) so a restart does not run them again;
- the Auto Scaling group stand-in (local/group.py).

A `liftoff` in another shell reaches what only this process can answer (what runs on the hosts, target
health, Run Command on the boxes, StartAssociationsOnce) through a small HTTP API on loopback:
`GET /state`, and `POST /call` with `{"method", "args"}` for the methods `CALLS` lists (local/control.py
is the client). Everything else that `liftoff` does goes to the emulator, as it would go to AWS.
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
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.docker import DEFAULT_HOST, Daemon
from local.follower import Follower
from local.group import GroupStandIn
from local.hosts import HostsRuntime, StageHosts, StateManagerStandIn

REPO = Path(__file__).resolve().parents[1]
RECORD_NAME = "supervisor.json"
ASSOCIATIONS_NAME = "associations.json"
LOG_NAME = "supervisor.log"
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 60.0  # a gate in progress is let finish (its own timeouts bound it); then SIGKILL
GROUP_INTERVAL_SECONDS = 2.0
IN_SERVICE_TIMEOUT_SECONDS = 60.0
# What another shell's liftoff may ask (HostsRuntime's methods: the reads of what runs, and what only runs here).
CALLS = ("ec2_running", "target_health", "start_association_once", "send_to_hosts", "download_layer")


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

class Supervisor:
    def __init__(self, *, stage: str, service_stack: str, registry_stack: str, state_dir: Path, listen_port: int,
                 box_image: str, daemon: Daemon, say=print):
        self.stage, self.state_dir, self.listen_port, self.say = stage, state_dir, listen_port, say
        emulator = emulators.recorded(state_dir)
        if emulator is None or not emulators.is_ours(emulator):
            raise SupervisorError(f"no emulator runs from {state_dir} (`make local-up` starts one)")
        world = boxes.BoxWorld.recorded(state_dir)
        if world is None:
            raise SupervisorError(f"no hosts' world is recorded in {state_dir} (`make local-up` boots one on an ec2 stage)")
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
        self._server: ThreadingHTTPServer | None = None

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

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._group_follower.stop()
        self.state_manager.stop()
        self.hosts.stop_load_balancer()
        self.say("stopped")

    def state(self) -> dict:
        states = self.hosts.controller.states() if self.hosts.controller is not None else {}
        return {"stage": self.stage, "balancer_url": self.hosts.balancer.url if self.hosts.balancer else "",
                "associations": self.state_manager.status, "targets": states,
                "hosts": {box.instance_id: box.address for box in self.hosts.hosts},
                "replaced": [list(item) for item in self.group.replaced]}

    def call(self, method: str, args: dict):
        if method not in CALLS:
            raise SupervisorError(f"unknown call {method!r}; the supervisor answers {', '.join(CALLS)}")
        if method == "send_to_hosts":
            results = self.runtime.send_to_hosts(args["instances"], args["document"], args["parameters"],
                                                 timeout=args["command_timeout"], poll=0, sleep=time.sleep, monotonic=time.monotonic)
            return {instance: list(result) for instance, result in results.items()}
        if method == "download_layer":
            blob = self._download_layer(**args)
            return None if blob is None else base64.b64encode(blob).decode()
        return getattr(self.runtime, method)(**args)

    def _download_layer(self, repository: str, digest: str) -> bytes | None:
        from local.run_command import BoxesRuntime

        return BoxesRuntime.download_layer(self.runtime, repository, digest)


def _handler(supervisor: Supervisor) -> type[BaseHTTPRequestHandler]:
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

    supervisor = Supervisor(stage=stage.name, service_stack=stage.service_stack_name, registry_stack=stage.registry_stack_name,
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
