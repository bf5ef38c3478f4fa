"""`make deploy STAGE=production` without Docker: one line says so and the control-plane walk runs as before.

With Docker the same walk runs on booted hosts; `make local-up` runs that walk and keeps the world, and
tests/local/test_local_up.py asserts it there, so the minutes-long walk on hosts runs once per test run."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from local.aws import EMULATED_ACCOUNT, FAKE_ENVIRONMENT
from local.deploy import IAM_CALLS_FILE
from local.emulator import free_port
from local.iam_verdict import Policies, Synthesized, judge
from tests.helpers.synth import REPO

def deploy_production(shipped, tmp_path, **environment) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local", "deploy", "--stage", "production", "--assembly", str(shipped.outdir),
                           "--adapted", str(tmp_path / "adapted"), "--state-dir", str(tmp_path / "state")],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **environment})


def test_without_docker_the_walk_says_so_in_one_line_and_stays_control_plane(shipped, tmp_path):
    result = deploy_production(shipped, tmp_path, DOCKER_HOST=f"tcp://127.0.0.1:{free_port()}")
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert len([line for line in out.splitlines() if "no Docker here" in line]) == 1
    assert "the emulator's stand-in (local/runtime.py)" in out and "signalled SUCCESS" not in out
    # The walk's liftoff ran as the stage's operator, held to liftoff-production-operator, and nothing was refused.
    assert re.search(r"IAM enforced by the emulator \(local/moto_iam.py\): liftoff ran as "
                     r"arn:aws:iam::\d+:user/liftoff-production-operator: [1-9]\d* call\(s\), [1-9]\d* action\(s\), 0 refused", out)
    # The verdict agrees: a real IAM evaluator (iam-simulate) allows every call the operator made, under the
    # synthesized liftoff-production-operator policy, conditions and resource ARNs included.
    calls = json.loads((tmp_path / "adapted" / IAM_CALLS_FILE).read_text())
    synthesized = Synthesized(shipped.templates, account=EMULATED_ACCOUNT, region=FAKE_ENVIRONMENT["AWS_REGION"])
    principal = calls[0]["principal"]
    verdicts = judge(calls, {principal: Policies(principal, (synthesized.managed_policy("liftoff-production-operator"),))})
    assert {v.action for v in verdicts} >= {"cloudformation:UpdateStack", "dynamodb:PutItem", "cloudformation:DescribeStacks"}
    assert [(v.action, v.resource, v.decision, v.reason) for v in verdicts if not v.allowed] == []
