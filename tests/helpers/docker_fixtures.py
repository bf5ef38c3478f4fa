"""pytest fixtures for real containers: one Docker daemon and one build of each image per session.

- `docker_daemon` (session): the machine's daemon if one answers, else one started for the session
  and stopped (by its pid) at the end; a machine without Docker fails these tests with the install
  hint (README's test prerequisites), never skips them.
- `service_image` (session): `service/Dockerfile` built for real (local.images: the registry's base if
  it can be pulled, else one made from the Debian archive; `LIFTOFF_PYTHON_BASE=auto|registry|local`).
- `release_images` (session): {"1.0.0": image, "1.1.0": image}, the built image as two releases with
  their own digests.
- `box_image` (session): the host box image (local/box/).
"""
from __future__ import annotations

import os

import pytest

from local import docker, images
from tests.helpers.synth import REPO

RELEASES = ("1.0.0", "1.1.0")
STATE_DIR = REPO / ".local" / "test-docker"


@pytest.fixture(scope="session")
def docker_daemon():
    daemon = docker.connect_or_start(STATE_DIR)
    try:
        yield daemon
    finally:
        docker.stop(daemon)


@pytest.fixture(scope="session")
def python_base_image(docker_daemon) -> str:
    return images.python_base(docker_daemon, os.environ.get("LIFTOFF_PYTHON_BASE", "auto"), say=lambda _: None)


@pytest.fixture(scope="session")
def service_image(docker_daemon, python_base_image) -> str:
    return images.build_service_image(docker_daemon, python_base_image)


@pytest.fixture(scope="session")
def release_images(docker_daemon, service_image) -> dict[str, str]:
    return {version: images.release_image(docker_daemon, service_image, version) for version in RELEASES}


@pytest.fixture(scope="session")
def box_image(docker_daemon) -> str:
    return images.box_image(docker_daemon)
