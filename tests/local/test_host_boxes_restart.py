"""`activation: restart` for real: one container per host, restarted in place (for hosts without memory
for two). A variant of the shipped production stage, one host, booted from its own user data."""
from __future__ import annotations

import copy

import pytest

from config import parse_config
from local import boxes, images
from local.hosts import StageHosts
from tests.helpers.box_world import booted_hosts, deployed, running_emulator, wait_until
from tests.helpers.synth import REPO, cdk_context, synthesize

pytestmark = pytest.mark.cost(minutes=1.7)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

STATE_DIR = REPO / ".local" / "test-boxes-restart"
BROKEN = "1.9.9-broken"


@pytest.fixture(scope="module")
def restart_stage(tmp_path_factory):
    context = copy.deepcopy(cdk_context())
    context["liftoff"]["stages"]["production"]["activation"] = "restart"
    synthesis = synthesize(context, tmp_path_factory.mktemp("restart-variant"))
    with running_emulator(tmp_path_factory) as emulator:
        with deployed(emulator, synthesis.outdir, config=parse_config(context["liftoff"])) as production:
            yield emulator, production


@pytest.fixture(scope="module")
def host(docker_daemon, box_image, service_image, release_images, restart_stage):
    emulator, production = restart_stage
    broken = images.release_image(docker_daemon, service_image, BROKEN, never_starts=True)
    with booted_hosts(daemon=docker_daemon, box_image=box_image, emulator=emulator, production=production,
                      state_dir=STATE_DIR, prefix="lr", releases={**release_images, BROKEN: broken}, capacity=1) as stage_hosts:
        yield stage_hosts


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
    assert f"activation of {BROKEN} failed and was rolled back; the old version 1.0.0 is serving again" in result.stderr, \
        result.stderr
    # Its container exits at every start: the gate gave up once systemd had restarted it 3 times, not after the
    # whole health wait (the host served nothing meanwhile: one container, restarted in place).
    assert f"ERROR: {BROKEN} exited 3 times in a row without answering on /healthz" in result.stderr, result.stderr
    assert host.serving_version(host.hosts[0]) == "1.0.0"


def test_a_migrate_container_left_by_a_start_stopped_mid_way_does_not_hold_the_next_start(host):
    """A `docker run --rm` killed between create and start (systemd stopping the unit during its migrate, as a
    rollback's restart does while the bad release starts) leaves a created container that --rm never removes;
    its name held, every later start of the unit failed until someone removed it by hand."""
    image = f"{host.host_environment()['REPOSITORY_URI']}:1.0.0"
    on_host(host, "docker", "create", "--name", "liftoff-migrate", image, "migrate")
    on_host(host, "systemctl", "restart", "liftoff-app.service")
    wait_until(lambda: host.serving_version(host.hosts[0]) == "1.0.0", 60, "1.0.0 did not serve after the restart")
    assert "liftoff-migrate" not in on_host(host, "docker", "ps", "--all", "--format", "{{.Names}}").split()
