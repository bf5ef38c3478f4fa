"""`make local-up`'s promise, followed verbatim: the lines it prints work in a fresh shell, and `liftoff`
run there against the emulator verifies an activation and a rollback the way `make deploy`'s walk does.

`python -m local up` (what `make local-up` runs; the session's synthesized assembly is passed in to
skip the synth) deploys staging into a moto_server it leaves running; the test runs the printed lines
in `env -i bash` (no variable of this process leaks in), then `python -m local down`.
"""
from __future__ import annotations

import pytest

import os
import subprocess
import sys

from local import emulator as emulators
from local.emulator import free_port
from tests.helpers.synth import REPO

pytestmark = pytest.mark.cost(minutes=0.3)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

TARGET = "1.1.0"  # service/VERSION: staged by the walk, the first release active


def test_the_printed_lines_release_by_hand_from_a_fresh_shell(shipped, tmp_path):
    state = tmp_path / "state"
    # No Docker (a DOCKER_HOST nobody answers): the control-plane stand-in this test reads; with Docker the staging walk
    # runs on real tasks (tests/local/test_local_up.py).
    up = subprocess.run([sys.executable, "-m", "local", "up", "--assembly", str(shipped.outdir), "--adapted",
                         str(tmp_path / "adapted"), "--state-dir", str(state)],
                        cwd=REPO, capture_output=True, text=True, timeout=180,
                        env={**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"})
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        printed = [line.strip() for line in up.stdout.splitlines() if line.startswith("  ")]
        export = next(line for line in printed if line.startswith("export "))
        assert "AWS_DEFAULT_REGION=us-east-1" in export and "LIFTOFF_RUNTIME=local.runtime:emulator" in export
        cd = next(line for line in printed if line.startswith("cd "))
        liftoff = [line.split("#")[0].strip() for line in printed if line.startswith(".venv/bin/liftoff ")]
        assert liftoff == [".venv/bin/liftoff status --stage staging", f".venv/bin/liftoff activate {TARGET} --stage staging",
                           ".venv/bin/liftoff rollback --stage staging"]
        # stdin is not a terminal here, so the confirmation is given with --yes (interactively: answer y).
        script = "\n".join(["set -e", export, cd, liftoff[0], liftoff[1] + " --yes", liftoff[2] + " --yes",
                            ".venv/bin/liftoff history --stage staging"])
        shell = subprocess.run(["env", "-i", f"HOME={os.environ.get('HOME', '/root')}", "PATH=/usr/bin:/bin", "bash", "-c", script],
                               capture_output=True, text=True, timeout=120)
        assert shell.returncode == 0, shell.stdout + shell.stderr
        assert f"verified: 1 task(s) run {TARGET}; 1 target(s) healthy" in shell.stdout
        assert f"{TARGET} -> 1.0.0" in shell.stdout and "verified: 1 task(s) run 1.0.0" in shell.stdout
        history = shell.stdout.split("STARTED", 1)[1].splitlines()[1:]
        assert [row.split()[2] for row in history][:2] == ["rollback", "activate"]
        assert all("succeeded" in row for row in history[:2])
    finally:
        subprocess.run([sys.executable, "-m", "local", "down", "--state-dir", str(state)], cwd=REPO, capture_output=True, timeout=60)
    assert emulators.recorded(state) is None
