"""local/deploy.py: how the harness runs the pinned CDK CLI."""
from __future__ import annotations

import os
import subprocess

from local.deploy import QUIET_CDK_CLI
from tests.helpers.synth import REPO


def test_the_harness_runs_the_cdk_cli_without_usage_telemetry():
    # The pinned CLI judges by the same rule before each command's telemetry (its own `cli-telemetry --status`): with
    # it on, every command hands a report for AWS to a detached sender process, and the local world is loopback only.
    status = subprocess.run([str(REPO / "node_modules" / ".bin" / "cdk"), "cli-telemetry", "--status"], cwd=REPO,
                            env={**os.environ, **QUIET_CDK_CLI}, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    assert "CLI Telemetry is disabled" in status.stdout + status.stderr
