"""One box world for a test module: moto_server, a stage deployed into it, and real host boxes.

The box suites (tests/local/host_boxes_world/, test_host_boxes_restart.py, test_liftoff_on_faulty_hosts.py) each
boot one world and only differ in the releases they push, how many hosts boot and whether the load balancer
stand-in runs; the pieces are here once, as context managers a module's fixtures wrap, with what the tests read
off a host.
"""
from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pytest

from config import load_config
from local import boxes
from local import emulator as emulators
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.hosts import StageHosts
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import CDK_JSON


def on_host(hosts: StageHosts, box: boxes.Box, *command: str, timeout: float = 300) -> str:
    """`command` on the host; fails the test with its output unless it exits 0."""
    result = boxes.run_on_box(hosts.daemon, box, *command, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} on {box.instance_id}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def activate(hosts: StageHosts, box: boxes.Box, tag: str):
    """The host's own activate gate, its exit code and output left to the caller."""
    return boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", tag, timeout=600)


def active_slot(hosts: StageHosts, box: boxes.Box) -> str:
    return on_host(hosts, box, "cat", "/etc/liftoff/active-slot")


def other_slot(slot: str) -> str:
    return "b" if slot == "a" else "a"


def idle_slot(hosts: StageHosts, box: boxes.Box) -> str:
    return other_slot(active_slot(hosts, box))


def app_container(hosts: StageHosts, box: boxes.Box, slot: str | None = None) -> str:
    """The container of `slot` (the active one by default); the shipped production stage runs two slots."""
    name = f"liftoff-app-{slot or active_slot(hosts, box)}"
    return on_host(hosts, box, "docker", "inspect", "--format", "{{.Id}}", name)


def running_containers(hosts: StageHosts, box: boxes.Box) -> set[str]:
    return set(on_host(hosts, box, "docker", "ps", "--format", "{{.Names}}").split())


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """The first truthy value of `check()`, or fail naming `what` did not happen within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout:.0f} s")
        time.sleep(interval)


class Watch:
    """The load balancer stand-in's target states, sampled while a test runs."""

    def __init__(self, hosts: StageHosts):
        self.hosts, self.seen, self._stop = hosts, set(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self.hosts.controller.states().items())
            time.sleep(0.2)

    def __enter__(self) -> "Watch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def running_emulator(tmp_path_factory) -> Iterator[emulators.Emulator]:
    running = emulators.start(tmp_path_factory.mktemp("emulator"))
    try:
        yield running
    finally:
        emulators.stop(running, tmp_path_factory.getbasetemp())


@contextmanager
def deployed(emulator, assembly: Path, *, config=None, image_tag: str = "1.0.0"):
    """staging (whose registry production shares) then production, as the shipped cdk.json has them."""
    config = config or load_config(CDK_JSON)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_ENVIRONMENT.items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
        deploy_stage(assembly, config.stage("staging"), image_tag=image_tag)
        yield deploy_stage(assembly, config.stage("production"), image_tag=image_tag)


@contextmanager
def booted_hosts(*, daemon, box_image: str, emulator, production, state_dir: Path, prefix: str,
                 releases: Mapping[str, str], capacity: int | None = None, load_balancer: bool = True) -> Iterator[StageHosts]:
    """The stage's hosts booted from the launch template's user data with `releases` in the registry;
    with `load_balancer`, HAProxy in front and every host in service before the tests start."""
    stage_hosts = StageHosts(
        daemon=daemon, session=EndpointSession(fake_session(), emulator.endpoint), emulator_port=emulator.port,
        service_stack=production.stack_names["service"], registry_stack=production.stack_names["registry"],
        state_dir=state_dir, name=f"{prefix}-{uuid.uuid4().hex[:6]}", box_image=box_image, say=lambda _: None)
    try:
        stage_hosts.start()
        stage_hosts.push(dict(releases))
        if capacity is not None:
            stage_hosts.set_capacity(capacity)
        stage_hosts.boot_seconds = stage_hosts.boot()
        if load_balancer:
            stage_hosts.start_load_balancer()
            stage_hosts.wait_in_service()
        yield stage_hosts
    finally:
        stage_hosts.stop()
