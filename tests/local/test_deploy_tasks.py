"""`make deploy STAGE=staging` with Docker: the ecs stage's tasks run for real (the ECS stand-in) and the release
walk moves them, blue/green, under steady load; nothing stays behind.

The assembly is the shipped one with a 60 s bake (ECS's shortest: one minute), so each verified activation waits
one minute for the previous tasks to go, as on AWS, instead of five."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest

from tests.helpers.synth import REPO, cdk_context

pytestmark = pytest.mark.cost(minutes=4)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

FIRST, TARGET = "1.0.0", "1.1.0"


def test_staging_walk_runs_on_real_tasks_with_no_failed_request_and_leaves_nothing(synth_variant, tmp_path, docker_daemon,
                                                                                   box_image, service_image):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["staging"]["bake_seconds"] = 60
    assembly = synth_variant(context).outdir
    result = subprocess.run([sys.executable, "-m", "local", "deploy", "--stage", "staging", "--assembly", str(assembly),
                             "--adapted", str(tmp_path / "adapted"), "--state-dir", str(tmp_path / "state")],
                            cwd=REPO, capture_output=True, text=True, timeout=1200, env={**os.environ, "DOCKER_HOST": docker_daemon.host})
    out = result.stdout
    assert result.returncode == 0, out[-5000:] + result.stderr[-2000:]
    assert re.search(r"IAM enforced by the emulator \(local/moto_iam.py\): liftoff ran as "
                     r"arn:aws:iam::\d+:user/liftoff-staging-operator: [1-9]\d* call\(s\), [1-9]\d* action\(s\), 0 refused", out)
    # The tasks' execution role (image pull, secrets, log streams) was held to its synthesized policy too.
    assert re.search(r"and arn:aws:sts::\d+:assumed-role/staging-service-EcsTaskExecutionRole\S+: [1-9]\d* call\(s\), "
                     r"[1-9]\d* action\(s\), 0 refused", out), out[-3000:]
    # The first deployment ran the task definition as a real task, then the walk moved it blue/green and back.
    assert re.search(rf"task [0-9a-f]{{12}} \([0-9.]+, \S+:1\): runs \S+:{FIRST}", out), out[-4000:]
    assert re.search(rf"task [0-9a-f]{{12}} \([0-9.]+, \S+:2\): runs \S+:{TARGET}", out), out[-4000:]
    assert "blue/green deployment of" in out and "100% of production traffic on" in out
    assert f"verified: 1 task(s) run {TARGET}" in out and f"verified: 1 task(s) run {FIRST}" in out
    for step, first_seen in ((f"stage {TARGET}", FIRST), (f"activate {TARGET}", FIRST), ("rollback", TARGET)):
        line = re.search(rf"liftoff {step}: sent (\d+), failed (\d+), longest gap (\d+\.\d+) s, versions (.*)$", out, re.M)
        assert line, f"no load line for {step}"
        assert int(line.group(1)) > 0 and int(line.group(2)) == 0, line.group(0)
        assert first_seen in line.group(4)
    assert "the tasks were real" in out
    world = re.search(r"starting the world (liftoff-staging-\d+):", out).group(1)
    assert docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []
    assert docker_daemon.run("network", "ls", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []
    assert docker_daemon.run("volume", "ls", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []
