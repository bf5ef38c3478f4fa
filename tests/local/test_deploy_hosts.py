"""`make deploy STAGE=production` with Docker: the ec2 hosts boot as boxes and the release walk runs on them;
without Docker, one line says so and the control-plane walk runs as before."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from local.aws import EMULATED_ACCOUNT, FAKE_ENVIRONMENT
from local.deploy import IAM_CALLS_FILE
from local.emulator import free_port
from local.iam_verdict import Policies, Synthesized, judge
from tests.helpers.synth import REPO

pytestmark = pytest.mark.cost(minutes=5)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

FIRST, TARGET = "1.0.0", "1.1.0"


def deploy_production(shipped, tmp_path, **environment) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "local", "deploy", "--stage", "production", "--assembly", str(shipped.outdir),
                           "--adapted", str(tmp_path / "adapted"), "--state-dir", str(tmp_path / "state")],
                          cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **environment})


def test_production_walk_runs_on_booted_hosts_with_timings_per_host(shipped, tmp_path, docker_daemon, box_image, service_image):
    result = deploy_production(shipped, tmp_path, DOCKER_HOST=docker_daemon.host)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    assert re.search(r"IAM enforced by the emulator \(local/moto_iam.py\): liftoff ran as "
                     r"arn:aws:iam::\d+:user/liftoff-production-operator: [1-9]\d* call\(s\), [1-9]\d* action\(s\), 0 refused", out)
    # The hosts called AWS as the instance profile's role (their metadata service hands out its credentials), held to it.
    assert re.search(r"and arn:aws:sts::\d+:assumed-role/production-service-Ec2HostRole\S+: [1-9]\d* call\(s\), "
                     r"[1-9]\d* action\(s\), 0 refused", out), out[-3000:]
    booted = re.findall(r"host (i-[0-9a-f]+) signalled SUCCESS (\d+\.\d) s after boot", out)
    assert len(booted) == 2
    hosts = [instance for instance, _ in booted]
    for instance in hosts:
        # Booted on the first release, switched host by host to the target, then rolled back.
        assert re.search(rf"host {instance} \(.*\): active {FIRST}, answers /version with {FIRST}", out)
        assert re.search(rf"host {instance}: stage {TARGET} -> exit 0 in \d+\.\d s", out)
        assert re.search(rf"host {instance}: activate {TARGET} -> exit 0 in \d+\.\d s", out)
        assert re.search(rf"host {instance} \(.*\): active {TARGET}, answers /version with {TARGET}", out)
        assert re.search(rf"host {instance}: activate {FIRST} -> exit 0 in \d+\.\d s", out)
    # In waves: the first host is the fleet's canary, its gate run alone (Run Command) before the stack moves;
    # then the association, a quarter of the fleet at a time (one of two), finds it already active.
    canary = re.search(rf"host (i-[0-9a-f]+): activate {TARGET} \(Run Command, 1 host\(s\)\) -> exit 0", out)
    assert canary and canary.group(1) == hosts[0], out[-4000:]
    activations = re.findall(rf"host (i-[0-9a-f]+): activate {TARGET} -> exit 0", out)
    assert activations == hosts and out.index(canary.group(0)) < out.index(f"host {hosts[0]}: activate {TARGET} -> exit 0")
    assert f"activate {TARGET}: 2 host(s), MaxConcurrency 25%," in out
    # The rollback right after is to the version both hosts hold warm: one wave, both flipped at once through
    # Run Command before the stack moves; the association then finds each already there (100%, one wave).
    assert f"every host holds {FIRST} warm: all 2 flip at once (Run Command), then the stack follows" in out
    flips = re.findall(rf"host (i-[0-9a-f]+): activate {FIRST} \(Run Command, 2 host\(s\)\) -> exit 0", out)
    assert sorted(flips) == sorted(hosts), out[-4000:]
    assert f"activate {FIRST}: 2 host(s), MaxConcurrency 100%," in out
    assert out.index(f"every host serves {FIRST} again") < out.index(f"activate {FIRST}: 2 host(s), MaxConcurrency 100%,")
    # Verified from each host's own report (no stand-in: the boxes wrote them), and by the load balancer stand-in.
    assert f"verified: every host in service (2) reports {TARGET} active and ready; 2 target(s) healthy" in out
    assert f"verified: every host in service (2) reports {FIRST} active and ready; 2 target(s) healthy" in out
    # Steady load through the load balancer stand-in during each step: with two hosts, each drained
    # before it restarts, no request fails.
    for step, first_seen in ((f"stage {TARGET}", FIRST), (f"activate {TARGET}", FIRST), ("rollback", TARGET)):
        line = re.search(rf"liftoff {step}: sent (\d+), failed (\d+), longest gap (\d+\.\d+) s, versions (.*)$", out, re.M)
        assert line, f"no load line for {step}"
        assert int(line.group(1)) > 0 and int(line.group(2)) == 0, line.group(0)
        assert first_seen in line.group(4)
    assert "the hosts were real" in out and "removing the hosts, the stand-ins and their network" in out
    world = re.search(r"starting the hosts' world (liftoff-production-\d+):", out).group(1)
    left = docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split()
    assert left == []
    assert docker_daemon.run("network", "ls", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []


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
