"""liftoff-migrate, the host side of `liftoff migrate` on an ec2 stage, with the stand-in commands of
test_ec2_host.py (docker, aws) first on PATH. The real run on a host box: tests/local/host_boxes_world/test_host_migrate.py."""
from __future__ import annotations

import json
import os
import stat

import pytest

from tests.components.test_ec2_host import BIN, FAKES, INSTANCE_ID, Host, ref


@pytest.fixture
def host(tmp_path) -> Host:
    h = Host(tmp_path)
    h.config.mkdir()
    h.state.mkdir()
    (h.state / "instance_id").write_text(INSTANCE_ID)
    (h.state / "secret_string").write_text(json.dumps({"username": "liftoff", "password": "s3cret pw"}))
    h.host_env()
    (tmp_path / "run").mkdir()
    return h


def migrate(host: Host, *args: str):
    return host.run("liftoff-migrate", *args, env={"LIFTOFF_MIGRATE_DIR": str(host.root / "run")})


def test_runs_the_image_migrate_with_the_allowed_contract_steps_and_its_own_credentials(host):
    host.has_images("1.2.0")
    result = migrate(host, "1.2.0", "0003_require_note_title", "0005_drop_x")
    assert result.returncode == 0, result.stderr
    (run,) = [call for call in host.calls("docker") if call[1] == "run"]
    assert run[-6:] == [ref("1.2.0"), "migrate", "--allow-contract", "0003_require_note_title", "--allow-contract", "0005_drop_x"]
    assert "--env" in run and "DB_PASSWORD_FILE=/run/secrets/db-password" in run and "DB_HOST=db.internal" in run
    assert not any("s3cret" in part for part in run)  # the password is a mounted file, never an argument
    # Its own 0700 credentials directory, gone afterwards; the unit's is never touched.
    assert list((host.root / "run").iterdir()) == []
    assert not (host.root / "run" / "liftoff").exists()
    assert host.calls("docker")[0][1:3] == ["image", "inspect"]  # present: not pulled again
    assert "migrate of 1.2.0 exited 0" in result.stderr


def test_pulls_an_image_the_host_lacks_and_runs_without_contract_steps(host):
    result = migrate(host, "1.2.0")
    assert result.returncode == 0, result.stderr
    assert ["docker", "pull", "--quiet", ref("1.2.0")] in host.calls("docker")
    (run,) = [call for call in host.calls("docker") if call[1] == "run"]
    assert run[-2:] == [ref("1.2.0"), "migrate"]


def test_returns_the_migrate_exit_code(host, tmp_path):
    # The docker stand-in exits with what the test asks: a migrate that found its release left behind (4).
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "docker").write_text('#!/usr/bin/env bash\n[[ "$1" == run ]] && exit 4\nexec "$REAL_DOCKER" "$@"\n')
    (fake / "docker").chmod(0o755)
    host.has_images("1.0.0")
    result = host.run("liftoff-migrate", "1.0.0", env={"LIFTOFF_MIGRATE_DIR": str(host.root / "run"),
                                                        "PATH": f"{fake}{os.pathsep}{FAKES}{os.pathsep}{os.environ['PATH']}",
                                                        "REAL_DOCKER": str(FAKES / "docker")})
    assert result.returncode == 4 and "migrate of 1.0.0 exited 4" in result.stderr
    assert list((host.root / "run").iterdir()) == []


@pytest.mark.parametrize("args, says", [
    ((), "usage: liftoff-migrate TAG [CONTRACT_ID ...]"),
    (("latest",), "refusing image tag 'latest'"),
    (("1.2.0", "x;rm -rf /"), "refusing contract step 'x;rm -rf /'"),
    (("1.2.0", "--allow-contract"), "refusing contract step '--allow-contract'"),
])
def test_bad_arguments_exit_2_before_anything_runs(host, args, says):
    result = migrate(host, *args)
    assert result.returncode == 2 and says in result.stderr
    assert host.calls("docker") == [] and host.calls("aws") == []


def test_is_executable_and_strict():
    path = BIN / "liftoff-migrate"
    assert path.stat().st_mode & stat.S_IXUSR and "set -euo pipefail" in path.read_text()
