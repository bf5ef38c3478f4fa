"""app.py through the real CDK CLI: the CLI and `python -m config` judge cdk.json the same way, and
synth prints a protected stage's plain-HTTP warning once."""
from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys


from local.deploy import QUIET_CDK_CLI
from tests.helpers.synth import CDK_JSON, REPO

pytestmark = pytest.mark.cost(minutes=0.2)  # alone, on 2 cores: the costliest start first (tests/conftest.py)


def cli_synth(tmp_path, desired_count_text: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
    """`cdk synth` and `python -m config` on a copy of cdk.json whose production desired_count is written as given."""
    document = json.loads(CDK_JSON.read_text())
    document["app"] = f"{sys.executable} {REPO / 'app.py'}"
    text = json.dumps(document, indent=1).replace('"desired_count": 2,', f'"desired_count": {desired_count_text},')
    assert desired_count_text in text
    (tmp_path / "cdk.json").write_text(text)
    env = {**os.environ, **QUIET_CDK_CLI}
    env.pop("LIFTOFF_WARNINGS_SHOWN", None)
    synth = subprocess.run([str(REPO / "node_modules" / ".bin" / "cdk"), "synth", "--quiet", "--no-notices", "--output", str(tmp_path / "cdk.out")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    config = subprocess.run([sys.executable, "-m", "config", "production"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=300)
    return synth, config


def test_a_whole_number_with_a_decimal_point_is_accepted_by_both(tmp_path):
    synth, config = cli_synth(tmp_path, "2.0")
    assert synth.returncode == 0, synth.stderr
    assert config.returncode == 0, config.stderr
    template = json.loads((tmp_path / "cdk.out" / "production-service.template.json").read_text())
    (group,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    assert group["Properties"]["DesiredCapacity"] == "2"
    assert "production: ec2, 2 running" in config.stdout
    # The shipped production stage is protected and has no certificate: one warning, not one per stack.
    assert synth.stderr.count("serves plain HTTP") == 1
    assert "liftoff: warning: stage 'production' is protected (deletion_protection: true) but serves plain HTTP" in synth.stderr


def test_a_fraction_is_refused_by_both_with_the_same_message(tmp_path):
    synth, config = cli_synth(tmp_path, "2.5")
    message = "stage 'production': desired_count = 2.5 is not allowed; expected a whole number from 0 to 50"
    assert synth.returncode != 0 and message in synth.stderr
    assert config.returncode == 2 and message in config.stderr
