"""local/deploy.py: how the harness runs the pinned CDK CLI."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from local import deploy
from local.deploy import QUIET_CDK_CLI, DeployError, cdk_command
from tests.helpers.synth import REPO


def test_the_cdk_cli_is_the_pinned_one_in_node_modules_and_its_absence_says_run_make_setup(monkeypatch, tmp_path):
    command = cdk_command("synth", "--quiet")
    assert command == [str(REPO / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--no-notices"]
    pinned = json.loads((REPO / "package.json").read_text())["devDependencies"]["aws-cdk"]
    version = subprocess.run(cdk_command("--version"), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith(f"{pinned} "), version
    monkeypatch.setattr(deploy, "CDK_CLI", tmp_path / "node_modules" / ".bin" / "cdk")
    with pytest.raises(DeployError, match=r"the pinned CDK CLI is not installed \(.*node_modules/\.bin/cdk is missing\): run `make setup`"):
        cdk_command("synth")


def test_the_harness_runs_the_cdk_cli_without_usage_telemetry():
    # The pinned CLI judges by the same rule before each command's telemetry (its own `cli-telemetry --status`): with
    # it on, every command hands a report for AWS to a detached sender process, and the local world is loopback only.
    status = subprocess.run([str(REPO / "node_modules" / ".bin" / "cdk"), "cli-telemetry", "--status"], cwd=REPO,
                            env={**os.environ, **QUIET_CDK_CLI}, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "CLI Telemetry is disabled" in status.stdout + status.stderr
