"""One box world for the modules in this directory, booted once and shared (booting one costs ~50 CPU-s and a minute
on a loaded machine): an emulator, production deployed into it (ec2, two hosts, activation: slots; tests/conftest.py's
`box_world`, the shipped stage with a shorter host canary), the real releases 1.0.0 and 1.1.0, WARMING and BROKEN
pushed, both hosts booted and in service behind the load balancer stand-in.

The fixtures are package-scoped: tests/conftest.py makes this directory one xdist work unit, so its modules run on
one worker, in file order, each on what the one before left: test_host_boot.py only reads the fresh hosts;
test_host_boxes_faults.py's tests and test_host_gates.py's module each leave both hosts serving 1.0.0 (from either
slot) with nothing warm; test_host_migrate.py comes last, since its contract step leaves 1.0.0 behind for good.
"""
from __future__ import annotations

import pytest

from local import images
from tests.helpers.box_world import booted_hosts, deployed, running_emulator
from tests.helpers.synth import REPO
from tests.local.host_boxes_world import BROKEN, WARM_UP_SECONDS, WARMING

STATE_DIR = REPO / ".local" / "test-boxes-world"


@pytest.fixture(scope="package")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="package")
def production(emulator, box_world):
    with deployed(emulator, box_world.outdir) as stage:
        yield stage


@pytest.fixture(scope="package")
def hosts(docker_daemon, box_image, service_image, release_images, emulator, production):
    warming = images.release_image(docker_daemon, service_image, WARMING, warm_up_seconds=WARM_UP_SECONDS)
    broken = images.release_image(docker_daemon, service_image, BROKEN, never_starts=True)
    with booted_hosts(daemon=docker_daemon, box_image=box_image, emulator=emulator, production=production,
                      state_dir=STATE_DIR, prefix="lf", releases={**release_images, WARMING: warming, BROKEN: broken}) as stage_hosts:
        yield stage_hosts
