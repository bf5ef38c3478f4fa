"""`activation: restart` for real: one container per host, restarted in place (for hosts without memory
for two). A variant of the shipped production stage, one host, booted from its own user data."""
from __future__ import annotations

import copy
import uuid

import pytest

from config import parse_config
from local import boxes, emulator as emulators, images
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.hosts import StageHosts
from tests.helpers.emulated_stage import deploy_stage
from tests.helpers.synth import REPO, cdk_context, synthesize

STATE_DIR = REPO / ".local" / "test-boxes-restart"
BROKEN = "1.9.9-broken"


@pytest.fixture(scope="module")
def restart_stage(tmp_path_factory):
    context = copy.deepcopy(cdk_context())
    context["liftoff"]["stages"]["production"]["activation"] = "restart"
    synthesis = synthesize(context, tmp_path_factory.mktemp("restart-variant"))
    emulator = emulators.start(tmp_path_factory.mktemp("emulator"))
    try:
        config = parse_config(context["liftoff"])
        with pytest.MonkeyPatch.context() as patch:
            for name, value in FAKE_ENVIRONMENT.items():
                patch.setenv(name, value)
            patch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
            deploy_stage(synthesis.outdir, config.stage("staging"), image_tag="1.0.0")
            yield emulator, deploy_stage(synthesis.outdir, config.stage("production"), image_tag="1.0.0")
    finally:
        emulators.stop(emulator, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def host(docker_daemon, box_image, service_image, release_images, restart_stage):
    emulator, production = restart_stage
    stage_hosts = StageHosts(
        daemon=docker_daemon, session=EndpointSession(fake_session(), emulator.endpoint), emulator_port=emulator.port,
        service_stack=production.stack_names["service"], registry_stack=production.stack_names["registry"],
        state_dir=STATE_DIR, name=f"lr-{uuid.uuid4().hex[:6]}", box_image=box_image, say=lambda _: None)
    try:
        stage_hosts.start()
        stage_hosts.push({**release_images, BROKEN: images.release_image(docker_daemon, service_image, BROKEN, never_starts=True)})
        stage_hosts.set_capacity(1)
        stage_hosts.boot()
        stage_hosts.start_load_balancer()
        stage_hosts.wait_in_service()
        yield stage_hosts
    finally:
        stage_hosts.stop()


def on_host(hosts: StageHosts, *command: str) -> str:
    result = boxes.run_on_box(hosts.daemon, hosts.hosts[0], *command, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def test_one_container_on_the_load_balancers_port_and_no_proxy(host):
    assert host.host_environment()["ACTIVATION"] == "restart"
    assert on_host(host, "docker", "ps", "--format", "{{.Names}}") == "liftoff-app"
    assert on_host(host, "systemctl", "is-active", "liftoff-app.service") == "active"
    assert boxes.run_on_box(host.daemon, host.hosts[0], "systemctl", "is-active", "liftoff-proxy.service").stdout.strip() != "active"
    assert host.serving_version(host.hosts[0]) == "1.0.0"


def test_a_switch_restarts_the_container_in_place_and_back(host):
    before = on_host(host, "docker", "inspect", "--format", "{{.Id}}", "liftoff-app")
    runs = host.run_gate("activate", "1.1.0")
    assert [run.exit_code for run in runs] == [0], [run.output for run in runs]
    assert "no other healthy target to drain to; restarting in place" in runs[0].output
    assert host.serving_version(host.hosts[0]) == "1.1.0"
    assert on_host(host, "docker", "inspect", "--format", "{{.Id}}", "liftoff-app") != before
    runs = host.run_gate("activate", "1.0.0")
    assert [run.exit_code for run in runs] == [0] and host.serving_version(host.hosts[0]) == "1.0.0"


def test_a_release_that_never_gets_healthy_is_rolled_back_on_the_host(host):
    result = boxes.run_on_box(host.daemon, host.hosts[0], "/opt/liftoff/bin/liftoff-activate", BROKEN)
    assert result.returncode == 1, result.stderr
    assert f"activation of {BROKEN} failed and was rolled back; the old version 1.0.0 is serving again" in result.stderr
    assert host.serving_version(host.hosts[0]) == "1.0.0"
