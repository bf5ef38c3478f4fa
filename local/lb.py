"""The load balancer stand-in: a real HAProxy in front of the host boxes, behaving like the ALB where a
release depends on it.

- Its health check (path, matcher, interval, timeout, healthy/unhealthy thresholds) and its
  deregistration delay are read from the synthesized target group (`TargetGroupSettings.from_template`).
- Its backends are the targets registered in the emulator's target group (by the Auto Scaling group
  at launch, and by the hosts' own `register-targets`/`deregister-targets` calls): `Controller`
  follows them (`poll_seconds`, 0.5 s) and adds each new target to HAProxy as *initial*: marked
  down until it passes `healthy threshold` checks in a row (an ALB sends a new target no traffic
  before that); a deregistered target is *draining*: no new requests, in-flight ones finish, for the
  deregistration delay, then it is removed.
- What `describe-target-health` answers (to the hosts through local/endpoints.py, and to `liftoff`
  through `states`) is these states, from HAProxy's real checks. Each `sync` reads HAProxy once and
  publishes that one reading; `states` returns the same published reading (never a second, later read
  of HAProxy), so everyone who asks between two passes sees one answer, as from one ALB.

What an ALB does that this does not: cross-zone balancing, fail-open to all targets when none is
healthy (HAProxy answers 503), slow start, connection multiplexing, HTTP/2, its own timeouts.
"""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from local import ports, processes
from local.follower import Follower

HAPROXY = "haproxy"
BACKEND = "targets"
Say = Callable[[str], None]


class LoadBalancerError(RuntimeError):
    """HAProxy could not start or be driven; the message says what and shows its output."""


@dataclass(frozen=True)
class TargetGroupSettings:
    health_check_path: str
    matcher: str
    interval_seconds: int
    timeout_seconds: int
    healthy_threshold: int
    unhealthy_threshold: int
    deregistration_delay_seconds: int
    port: int

    @classmethod
    def from_template(cls, template: dict) -> "TargetGroupSettings":
        """From the synthesized template's AWS::ElasticLoadBalancingV2::TargetGroup(s), which must check alike (AWS defaults where unset)."""
        groups = [resource["Properties"] for resource in template.get("Resources", {}).values()
                  if resource.get("Type") == "AWS::ElasticLoadBalancingV2::TargetGroup"]
        if not groups:
            raise LoadBalancerError("expected a target group in the service template, found none")
        settings = {cls._from_group(group) for group in groups}
        if len(settings) != 1:
            # One HAProxy backend checks every target the same way: groups that differ would need one each.
            raise LoadBalancerError(f"the service template's {len(groups)} target groups differ in their health check or "
                                    "deregistration delay; the load balancer stand-in checks all targets alike")
        return settings.pop()

    @classmethod
    def _from_group(cls, group: dict) -> "TargetGroupSettings":
        attributes = {item["Key"]: item["Value"] for item in group.get("TargetGroupAttributes", [])}
        return cls(
            health_check_path=group.get("HealthCheckPath", "/"),
            matcher=str(group.get("Matcher", {}).get("HttpCode", "200")),
            interval_seconds=int(group.get("HealthCheckIntervalSeconds", 30)),
            timeout_seconds=int(group.get("HealthCheckTimeoutSeconds", 5)),
            healthy_threshold=int(group.get("HealthyThresholdCount", 5)),
            unhealthy_threshold=int(group.get("UnhealthyThresholdCount", 2)),
            deregistration_delay_seconds=int(attributes.get("deregistration_delay.timeout_seconds", 300)),
            port=int(group.get("Port", 80)),
        )

    def server_options(self) -> str:
        return (f"check inter {self.interval_seconds}s rise {self.healthy_threshold} fall {self.unhealthy_threshold}")


def haproxy_config(settings: TargetGroupSettings, *, listen_port: int, admin_socket: Path) -> str:
    matcher = settings.matcher.replace(",", " ").split()
    expect = f"status {matcher[0]}" if len(matcher) == 1 and matcher[0].isdigit() else f"rstatus ^({'|'.join(matcher)})$"
    return "\n".join([
        "global",
        f"    stats socket {admin_socket} mode 600 level admin",
        "defaults",
        "    mode http",
        "    timeout connect 3s",
        "    timeout client 60s",
        "    timeout server 60s",
        f"    timeout check {settings.timeout_seconds}s",
        "frontend service",
        # Loopback only: the load generator runs on this machine.
        f"    bind 127.0.0.1:{listen_port}",
        f"    default_backend {BACKEND}",
        f"backend {BACKEND}",
        "    balance roundrobin",
        f"    option httpchk GET {settings.health_check_path}",
        f"    http-check expect {expect}",
        "",
    ])


# HAProxy refuses a stats socket path longer than this (a Unix socket address holds 108 bytes).
MAX_SOCKET_PATH = 97


def _short_socket_path(wanted: Path) -> Path:
    """`wanted`, or, when a deep state directory (a test's tmp path) makes it too long, a short one in the
    temp directory named after it (the same `wanted` always gives the same short path)."""
    if len(str(wanted)) <= MAX_SOCKET_PATH:
        return wanted
    return Path(tempfile.gettempdir()) / f"liftoff-{hashlib.sha256(str(wanted).encode()).hexdigest()[:16]}-haproxy.sock"


class LoadBalancer:
    """One HAProxy process, started and stopped by its pid, driven through its admin socket."""

    def __init__(self, settings: TargetGroupSettings, *, state_dir: Path, name: str, listen_port: int):
        self.settings, self.listen_port = settings, listen_port
        self.admin_socket = _short_socket_path(state_dir / f"{name}-haproxy.sock")
        self.config = state_dir / f"{name}-haproxy.cfg"
        self.log = state_dir / f"{name}-haproxy.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def start(self) -> None:
        taken = ports.listener_error("127.0.0.1", self.listen_port)
        if taken is not None:
            raise LoadBalancerError(f"port {self.listen_port} on 127.0.0.1 is taken ({taken}); pick another")
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(haproxy_config(self.settings, listen_port=self.listen_port, admin_socket=self.admin_socket))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        # Started means answering on its admin socket (the file appears at bind, before HAProxy serves).
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LoadBalancerError(f"haproxy did not start; its output:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return "Pid:" in self.command("show info")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        processes.stop(self.process.pid, grace_seconds=10)
        self.process = None
        self.admin_socket.unlink(missing_ok=True)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(5)
            connection.connect(str(self.admin_socket))
            connection.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, str]:
        """HAProxy's status of each server of the backend: UP, DOWN, UP 1/2, DOWN 1/2, DRAIN, MAINT ..."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        status = header.index("status")
        return {fields[1]: fields[status] for fields in (row.split(",") for row in rows[1:] if row)
                if fields[0] == BACKEND and fields[1] not in ("BACKEND", "FRONTEND")}

    def add(self, target: str, address: str, port: int) -> None:
        self.command(f"add server {BACKEND}/{target} {address}:{port} {self.settings.server_options()}")
        # One line, so nothing runs between: checks on, enabled, marked down until `rise` checks pass.
        self.command(f"enable health {BACKEND}/{target}; enable server {BACKEND}/{target}; "
                     f"set server {BACKEND}/{target} health down")

    def weigh(self, target: str, weight: int) -> None:
        """The server's share of new requests (0 to 256; 0: none, checks go on)."""
        self.command(f"set server {BACKEND}/{target} weight {weight}")

    def drain(self, target: str) -> None:
        self.command(f"set server {BACKEND}/{target} state drain")

    def ready(self, target: str) -> None:
        self.command(f"set server {BACKEND}/{target} state ready")

    def remove(self, target: str) -> None:
        self.command(f"set server {BACKEND}/{target} state maint; shutdown sessions server {BACKEND}/{target}; "
                     f"del server {BACKEND}/{target}")


def route_order(wanted: dict[str, int], current: dict[str, int]) -> list[tuple[str, int]]:
    """The weight changes to make, raises first: HAProxy applies each at once, so lowering the serving group before
    raising the other would leave every server at 0 for a moment, and a request then gets a 503."""
    changes = [(target, weight) for target, weight in wanted.items() if current.get(target) != weight]
    return sorted(changes, key=lambda change: change[1] <= current.get(change[0], 0))


class Controller:
    """Follows the emulator's registrations into HAProxy and publishes ALB-like target states."""

    # An ALB takes seconds to act on a registration change; each pass is a describe-target-health (per target group) on
    # the emulator, ~10 ms of CPU with the client's: at 0.25 s the controllers of a test run spent ~50 CPU-s polling.
    poll_seconds = 0.5

    def __init__(self, balancer: LoadBalancer, *, elbv2, target_group_arn: str = "", target_group_arns: Sequence[str] = (),
                 address_of: Callable[[str], str | None], routing: Callable[[], dict[str, int]] | None = None,
                 health_file: Path | None = None, say: Say = print):
        self.balancer, self.elbv2 = balancer, elbv2
        self.target_group_arns = [target_group_arn] if target_group_arn else list(target_group_arns)
        if not self.target_group_arns:
            raise LoadBalancerError("the controller follows at least one target group")
        self.target_group_arn = self.target_group_arns[0]
        self.address_of, self.routing, self.health_file, self.say = address_of, routing, health_file, say
        self.registered: dict[str, float] = {}  # target -> when it was added
        self.group_of: dict[str, str] = {}  # target -> the target group it is registered in
        self.weights: dict[str, int] = {}  # target -> the HAProxy weight last set (routing only)
        self.was_healthy: set[str] = set()
        self.draining: dict[str, float] = {}  # target -> when its deregistration delay ends
        self._published: dict[str, str] = {}
        self._follower = Follower("load balancer controller", self.sync, interval=self.poll_seconds, say=say)
        self._lock = threading.Lock()

    def registrations(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for group in self.target_group_arns:
            descriptions = self.elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
            for description in descriptions:
                target = description["Target"]["Id"]
                if target in found and self.group_of.get(target) != group:
                    # One HAProxy server per target: ECS never registers a task in both groups at once.
                    raise LoadBalancerError(f"{target} is registered in two target groups; the stand-in serves each target once")
                found[target] = int(description["Target"].get("Port") or self.balancer.settings.port)
                self.group_of[target] = group
        return found

    def sync(self) -> dict[str, str]:
        """One pass: new registrations added as initial, deregistrations drained, drains past their delay removed;
        then HAProxy's checks read once and published. Returns what it published."""
        with self._lock:
            now = time.monotonic()
            registered = self.registrations()
            for target, port in registered.items():
                if target in self.draining:
                    del self.draining[target]
                    self.balancer.ready(target)
                    self.say(f"  load balancer: {target} registered again while draining; back in service")
                elif target not in self.registered:
                    address = self.address_of(target)
                    if address is None:
                        continue  # no host answers for it (yet): an ALB would keep it unhealthy
                    self.balancer.add(target, address, port)
                    self.registered[target] = now
                    self.was_healthy.discard(target)
            for target in [t for t in self.registered if t not in registered and t not in self.draining]:
                self.balancer.drain(target)
                self.draining[target] = now + self.balancer.settings.deregistration_delay_seconds
            for target, until in list(self.draining.items()):
                if now >= until:
                    self.balancer.remove(target)
                    del self.draining[target]
                    self.registered.pop(target, None)
                    self.weights.pop(target, None)
            if self.routing is not None:
                self._route(self.routing())
            self._published = self._observe()
            self._publish(self._published)
            return dict(self._published)

    def states(self) -> dict[str, str]:
        """ALB target states (initial, healthy, unhealthy or draining) as the last `sync` published them: the
        answer the hosts get from describe-target-health now. Wait on this, and assert on this."""
        with self._lock:
            return dict(self._published)

    def states_of(self, target_group_arn: str) -> dict[str, str]:
        """`states`, for the targets of one target group."""
        with self._lock:
            return {target: state for target, state in self._published.items() if self.group_of.get(target) == target_group_arn}

    def _route(self, weights: dict[str, int]) -> None:
        """A listener rule's weighted forward: each group's share (0 to 100) spread over its serving targets, as
        HAProxy server weights (0 to 256); a group at 0 gets no request, and its targets are still checked."""
        for target, weight in route_order(self._weights_for(weights), self.weights):
            self.balancer.weigh(target, weight)
            self.weights[target] = weight

    def _weights_for(self, shares: dict[str, int]) -> dict[str, int]:
        serving = [target for target in self.registered if target not in self.draining]
        wanted = {}
        for target in serving:
            group = self.group_of.get(target, "")
            share = int(shares.get(group, 0))
            members = sum(1 for other in serving if self.group_of.get(other) == group)
            wanted[target] = 0 if share <= 0 else max(1, min(256, round(share * 256 / 100 / members)))
        return wanted

    def _observe(self) -> dict[str, str]:
        servers = self.balancer.servers()
        states = {}
        for target in self.registered:
            status = servers.get(target, "")
            if target in self.draining:
                states[target] = "draining"
            elif status.startswith("UP"):
                self.was_healthy.add(target)
                states[target] = "healthy"
            else:
                states[target] = "unhealthy" if target in self.was_healthy else "initial"
        return states

    def _publish(self, states: dict[str, str]) -> None:
        if self.health_file is None:
            return
        tmp = self.health_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({group: {target: state for target, state in states.items() if self.group_of.get(target) == group}
                                   for group in self.target_group_arns}))
        tmp.replace(self.health_file)

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()


def stop_in_order(*followers) -> None:
    """Stop what watches the load balancer, then the load balancer: each of `followers` that is not None (alarms,
    controller, balancer)."""
    for follower in followers:
        if follower is not None:
            follower.stop()
