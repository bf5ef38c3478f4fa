"""The Dockerfile (no docker engine here): its contract, and that the files it copies suffice.

The layout test copies exactly what the Dockerfile's COPY lines take into a bare directory and
runs `migrate` and `serve` from there, so a module or data file the image forgets shows up here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

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


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_multi_stage_slim_pinned_base():
    args = dict(rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG")
    assert re.fullmatch(r"python:3\.11-slim-\w+", args["PYTHON_IMAGE"])
    assert [k for k, _ in instructions()].count("FROM") == 2


def test_runs_as_a_numeric_non_root_user():
    [user] = [rest for keyword, rest in final_stage() if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0


def test_serves_by_default_and_takes_migrate_as_the_argument():
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["python", "-m", "liftoff_service"]
    assert json.loads(stage["CMD"]) == ["serve"]
    assert stage["STOPSIGNAL"] == "SIGTERM"
    assert stage["EXPOSE"] == "8080"


def test_installs_the_pinned_runtime_requirements():
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "pip install -r /tmp/requirements.txt" in runs
    for line in (SERVICE_DIR / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert "==" in line, f"unpinned requirement: {line}"


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
        "VERSION", "liftoff_service", "migrations", "releases.json",
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
