"""pipeline/install.sh, as the workflows' jobs run it: liftoff and boto3 into a fresh Python, without the CDK."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.synth import REPO

# installs: a fresh virtualenv from the package registries (`make test`, not `make check`); cost: alone, on 2 cores,
# the costliest start first (tests/conftest.py)
pytestmark = [pytest.mark.installs, pytest.mark.cost(minutes=0.35)]


def test_install_gives_a_working_liftoff_without_the_cdk(tmp_path):
    venv = tmp_path / "runner"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    environment = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    environment.pop("PYTHONPATH", None)
    had_build = (REPO / "build").exists()
    result = subprocess.run([str(REPO / "pipeline" / "install.sh")], env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (REPO / "build").exists() == had_build, "install.sh leaves no build/ directory in the checkout"
    # Run outside the checkout: the installed package, not the source tree, must answer.
    help_text = subprocess.run([str(venv / "bin" / "liftoff"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert help_text.returncode == 0 and "exit codes (" in help_text.stdout
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import boto3, config, release.cli; import aws_cdk"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert "No module named 'aws_cdk'" in probe.stderr, probe.stderr
    # Every verb reads the stage from cdk.json first: config's AWS data (cfn-lint's, moto's) must be there.
    judged = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys, pathlib, config; "
                             "print(config.__file__, config.load_config(pathlib.Path(sys.argv[1])).stage_names)",
                             str(REPO / "cdk.json")], capture_output=True, text=True, cwd=tmp_path)
    assert judged.returncode == 0, judged.stderr
    assert str(venv) in judged.stdout and "production" in judged.stdout, judged.stdout
