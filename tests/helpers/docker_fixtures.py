"""pytest fixtures for real containers: one Docker daemon and one build of each image per run.

- `docker_daemon` (session): the machine's daemon if one answers, else one started for the run and
  stopped (by its pid) at the end; a machine without Docker fails these tests with the install hint
  (README's test prerequisites), never skips them. Under pytest-xdist every worker shares that one
  daemon: the first worker to need it starts it (under a lock), and the controller stops it when the
  whole run ends (`stop_the_runs_daemon`), since a worker that finishes early must not pull it from
  under the others.
- `service_image` (session): `service/Dockerfile` built for real (local.images: the registry's base if
  it can be pulled, else one made from the Debian archive; `LIFTOFF_PYTHON_BASE=auto|registry|local`).
- `release_images` (session): {"1.0.0": image, "1.1.0": image}, the built image as two releases with
  their own digests.
- `box_image` (session): the host box image (local/box/).
Images are tagged by their inputs, so a worker that finds one built by another reuses it. Each line of
images has its own lock (the service's: base, build, releases; the box's), so two workers never build (or
mmdebstrap) the same thing at once, while a worker that needs only the service image (the ECS worlds) never
waits for the box's root filesystem, and on a fresh machine the two mmdebstraps run side by side.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from typing import Iterator

import pytest

from local import docker, images
from tests.helpers.synth import REPO

RELEASES = ("1.0.0", "1.1.0")
STATE_DIR = REPO / ".local" / "test-docker"


@contextmanager
def held(name: str) -> Iterator[None]:
    """An exclusive lock between the processes of this run (xdist workers), released when the holder exits."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def docker_daemon(request):
    with held("daemon"):
        daemon = docker.connect_or_start(STATE_DIR)
    try:
        yield daemon
    finally:
        if not hasattr(request.config, "workerinput"):  # an xdist worker leaves it to the controller
            docker.stop(daemon)


def stop_the_runs_daemon() -> None:
    """The controller's part: stop the daemon a worker started for this run, by the pid dockerd recorded."""
    pid = docker.recorded_daemon(STATE_DIR)
    if pid is not None:
        docker.stop(docker.Daemon(host=docker.DEFAULT_HOST, pid=pid))


@pytest.fixture(scope="session")
def python_base_image(docker_daemon) -> str:
    with held("service-images"):
        return images.python_base(docker_daemon, os.environ.get("LIFTOFF_PYTHON_BASE", "auto"), say=lambda _: None)


@pytest.fixture(scope="session")
def service_image(docker_daemon, python_base_image) -> str:
    with held("service-images"):
        return images.build_service_image(docker_daemon, python_base_image)


@pytest.fixture(scope="session")
def release_images(docker_daemon, service_image) -> dict[str, str]:
    with held("service-images"):
        return {version: images.release_image(docker_daemon, service_image, version) for version in RELEASES}


@pytest.fixture(scope="session")
def box_image(docker_daemon) -> str:
    with held("box-image"):
        return images.box_image(docker_daemon)
