"""What the Dockerfile says that the real-container tests cannot show.

The image itself (user, entry point, health check, stop signal, installed versions) is proven by
running it: test_container.py. Here: the registry base the Dockerfile names is the one the harness
pulls (tests may build on a locally made equivalent), and the layout test copies exactly what the
COPY lines take into a bare directory and runs `migrate` and `serve` from there, so a module or data
file the image forgets shows up by name, on any base.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from local.images import REGISTRY_PYTHON_IMAGE
from service_harness import SERVICE_DIR, ServiceProcess, free_port, service_env

DOCKERFILE = SERVICE_DIR / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    parsed = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def test_the_registry_base_is_the_one_the_harness_pulls():
    # local.images pulls this base when the registry answers and makes an equivalent one otherwise;
    # a Dockerfile bumped alone would leave the tests on another Python than production.
    args = dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest)
    assert args["PYTHON_IMAGE"] == REGISTRY_PYTHON_IMAGE
    assert re.fullmatch(r"python:3\.11-slim-\w+", args["PYTHON_IMAGE"])


@pytest.fixture
def image_root(tmp_path):
    """/srv/service as the Dockerfile assembles it."""
    root = tmp_path / "srv-service"
    root.mkdir()
    for keyword, rest in instructions():
        if keyword != "COPY" or rest.startswith("--from"):
            continue
        *sources, destination = rest.split()
        if destination.startswith("/tmp/"):
            continue
        for source in sources:
            target = root / (source if destination in ("./", ".") else destination.lstrip("./"))
            if (SERVICE_DIR / source).is_dir():
                shutil.copytree(SERVICE_DIR / source, target,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(SERVICE_DIR / source, target)
    return root


def test_the_copied_files_are_enough_to_migrate_and_serve(image_root, database):
    assert sorted(p.name for p in image_root.iterdir()) == [
        "VERSION", "liftoff_service", "migrations",
    ]
    env = service_env(database, port=free_port(), version="1.1.0")
    env["PYTHONPATH"] = str(image_root)
    migrate = subprocess.run([sys.executable, "-m", "liftoff_service", "migrate"], env=env,
                             cwd=image_root, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stdout

    service = ServiceProcess(database, version="1.1.0", cwd=image_root,
                             env_overrides={"PYTHONPATH": str(image_root)})
    try:
        service.wait_healthy()
        assert service.request("POST", "/notes", {"body": "from the image layout"}).status == 201
    finally:
        service.stop()
