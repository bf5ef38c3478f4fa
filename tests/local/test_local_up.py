"""`make local-up` is a living world: it runs `make deploy`'s release walk on booted hosts (asserted here: the
suite runs that walk on hosts once) and keeps the world; from a clean shell with only the printed export line, liftoff drives the
real hosts; the group replaces a killed host; raising desired_count and running `up` again adds a host. On the ecs
stage `up` runs the walk on real tasks (asserted here too), the service's tasks keep running the same way, and a
killed supervisor leaves none behind.

One ec2 world for the ec2 tests (booting it is minutes; the shipped stages with the box worlds' shorter host canary,
tests/helpers/synth.py `box_world_context`); they run in order, each on what the one before left, as a
user's session does. The ecs stage is one test with one `up`/`down` cycle of its own (its walk alone is minutes).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from config import load_config
from local import emulator as emulators
from local import supervisor as supervisors
from local.aws import EndpointSession, fake_session
from local.load import PATIENT_CLIENT_SECONDS, LoadRun
from tests.helpers.box_world import wait_until
from tests.helpers.clients import failures
from tests.helpers.synth import CDK_JSON, REPO, box_world_context, cdk_context

pytestmark = pytest.mark.cost(minutes=3.5)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

FIRST, TARGET = "1.0.0", "1.1.0"
LOAD_RATE = 10.0


def local(command: str, session: dict, *extra: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    stage = session.get("stage", "production")
    return subprocess.run([sys.executable, "-m", "local", command, "--stage", stage, "--state-dir", str(session["state"]),
                           "--adapted", str(session["adapted"]), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DOCKER_HOST": session["docker_host"]})


def second_shell(session: dict, command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`command` in `env -i bash` with nothing but the export line `up` printed (and the checkout to cd into)."""
    script = f"{session['exports']}\ncd {shlex.quote(str(REPO))}\n{command}"
    return subprocess.run(["env", "-i", "bash", "--noprofile", "--norc", "-c", script], capture_output=True, text=True,
                          timeout=timeout)


def supervisor_state(session: dict) -> dict:
    with urllib.request.urlopen(f"{session['control']}/state", timeout=10) as response:
        return json.loads(response.read())


def serves(address: str, timeout: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}:8080/version", timeout=timeout) as response:
            return json.loads(response.read()).get("version", "")
    except (OSError, ValueError):
        return ""


@pytest.fixture(scope="module")
def session(box_world, tmp_path_factory, docker_daemon, box_image, service_image):
    root = tmp_path_factory.mktemp("local-up")
    session = {"state": root / "state", "adapted": root / "adapted", "docker_host": docker_daemon.host, "root": root}
    up = local("up", session, "--assembly", str(box_world.outdir))
    try:
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
        session["up"] = up.stdout
        session["exports"] = next(line.strip() for line in up.stdout.splitlines() if line.strip().startswith("export "))
        session["balancer"] = re.search(r"^load balancer: (http://127\.0\.0\.1:\d+)$", up.stdout, re.M).group(1)
        session["control"] = re.search(r"LIFTOFF_LOCAL_CONTROL=(\S+)", session["exports"]).group(1)
        session["record"] = supervisors.recorded(session["state"])
        yield session
    finally:
        down = local("down", session, timeout=300)
        session["down"] = down
        assert down.returncode == 0, down.stdout + down.stderr


def test_up_prints_the_load_balancer_a_curl_and_a_watch_line_and_the_supervisor_keeps_the_hosts(session):
    out = session["up"]
    assert f"curl -s {session['balancer']}/version" in out and f"watch -n 0.5 curl -s {session['balancer']}/version" in out
    record = session["record"]
    assert record is not None and supervisors.is_ours(record) and record.balancer_url == session["balancer"]
    # The walk's last rollback left the first release active: the load balancer answers with it.
    with urllib.request.urlopen(f"{session['balancer']}/version", timeout=5) as response:
        assert json.loads(response.read())["version"] == FIRST
    state = supervisor_state(session)
    assert len(state["hosts"]) == 2 and set(state["targets"].values()) == {"healthy"}


def test_up_walks_the_release_on_the_booted_hosts_with_timings_per_host(session):
    # `up` runs `make deploy`'s walk (local/deploy.py's run) and keeps the world: the walk is asserted here, once.
    out = session["up"]
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
    assert "the hosts were real" in out and "removing the hosts" not in out  # `up` keeps them for the supervisor


def test_a_second_shell_stages_activates_rolls_back_and_reads_the_hosts(session):
    staged = second_shell(session, f".venv/bin/liftoff stage {TARGET} --stage production")
    assert staged.returncode == 0, staged.stdout + staged.stderr
    hosts = sorted(supervisor_state(session)["hosts"])
    # The walk left it staged: read from each host's own report through the supervisor, there is nothing to do.
    assert f"{TARGET} is already staged on production-service, and every host in service (2) reports it" in staged.stdout, \
        staged.stdout
    migrated = second_shell(session, f".venv/bin/liftoff migrate --version {TARGET} --stage production --yes")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    said = migrated.stdout + migrated.stderr
    assert "(SSM Run Command, document" in said and f"migrate of {TARGET} exited 0" in said, said
    with LoadRun(f"{session['balancer']}/version", rate=LOAD_RATE, duration=600, timeout=PATIENT_CLIENT_SECONDS) as run:
        try:
            activated = second_shell(session, f".venv/bin/liftoff activate {TARGET} --stage production --yes --no-watch")
        finally:
            run.stop()
    assert activated.returncode == 0, activated.stdout + activated.stderr
    assert f"verified: every host in service (2) reports {TARGET} active and ready" in activated.stdout, activated.stdout
    summary = run.summary()
    assert summary.sent > 0 and summary.failed == 0, (summary, failures(run))
    assert TARGET in summary.versions
    for address in supervisor_state(session)["hosts"].values():
        assert serves(address) == TARGET

    rolled = second_shell(session, ".venv/bin/liftoff rollback --stage production --yes")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"every host holds {FIRST} warm: all 2 flip at once (Run Command)" in rolled.stdout, rolled.stdout
    status = second_shell(session, ".venv/bin/liftoff status --stage production")
    assert status.returncode == 0, status.stdout + status.stderr
    for host in hosts:  # each host's own report, none made up
        assert re.search(rf"{host}.*{FIRST}", status.stdout), status.stdout
    assert "[stand-in:" not in status.stdout  # no report made up
    assert "schema   not recorded" not in status.stdout  # the migrate above recorded it
    # The gates ran in the supervisor, as State Manager and Run Command run them on AWS (the walk left 1.1.0
    # warm on both hosts, so the activation above flipped them at once too).
    log = Path(session["record"].log).read_text()
    assert re.search(rf"host i-[0-9a-f]+: activate {TARGET} -> exit 0", log), log[-3000:]  # the association followed
    assert re.search(rf"activate {FIRST} \(Run Command, 2 host\(s\)\) -> exit 0", log), log[-3000:]


def test_the_group_replaces_a_killed_host_with_one_on_the_active_version(session, docker_daemon):
    before = supervisor_state(session)["hosts"]
    victim = sorted(before)[0]
    container = json.loads((session["state"] / "boxes.json").read_text())["boxes"][victim]["container"]
    docker_daemon.run("kill", container)
    state = wait_until(lambda: (lambda s: s if victim not in s["hosts"] and len(s["hosts"]) == 2
                                and set(s["targets"].values()) == {"healthy"} and len(s["targets"]) == 2 else None)(
        supervisor_state(session)), 400, "the group to replace the killed host", interval=2)
    assert [item[0] for item in state["replaced"]] == [victim]
    assert "EC2 status checks failed" in state["replaced"][0][1]
    (new,) = set(state["hosts"]) - set(before)
    assert serves(state["hosts"][new]) == FIRST  # the active version, staged one pulled by its gates
    status = second_shell(session, ".venv/bin/liftoff status --stage production")
    assert new in status.stdout and victim not in status.stdout.split("last releases:")[0], status.stdout


def test_a_killed_supervisor_comes_back_with_up_on_the_same_load_balancer(session, box_world):
    record = supervisors.recorded(session["state"])
    # Killed between gate runs (a run cut short is rightly run again by the next supervisor).
    wait_until(lambda: all(association["status"] != "InProgress"
                           for association in supervisor_state(session)["associations"].values()),
               300, "the associations to settle")
    os.kill(record.pid, signal.SIGKILL)  # a crash: nothing of it runs its shutdown
    wait_until(lambda: not supervisors.is_ours(record), 30, "the supervisor to die")
    with pytest.raises(OSError):
        supervisor_state(session)  # a second shell's liftoff now refuses (tests/local/test_runtime.py)
    again = local("up", session, "--assembly", str(box_world.outdir))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
    assert "the supervisor is not running (killed, or the machine restarted): starting it again" in again.stdout
    restarted = supervisors.recorded(session["state"])
    assert restarted.pid != record.pid and supervisors.is_ours(restarted)
    assert restarted.balancer_url == session["balancer"]  # the address already printed still serves
    assert not Path(f"/proc/{record.balancer_pid}").exists() or b"haproxy" not in Path(f"/proc/{record.balancer_pid}/cmdline").read_bytes()
    session["control"] = restarted.control_url
    session["exports"] = next(line.strip() for line in again.stdout.splitlines() if line.strip().startswith("export "))
    with urllib.request.urlopen(f"{session['balancer']}/version", timeout=5) as response:
        assert json.loads(response.read())["version"] == FIRST
    # Seeded with what the associations last ran: no gate ran again at its start.
    since_restart = Path(restarted.log).read_text().rsplit(f"(HAProxy pid {restarted.balancer_pid})", 1)[1]
    assert " -> exit " not in since_restart, since_restart


def test_raising_desired_count_and_up_again_adds_a_host_on_the_active_version(session, synth_variant):
    context = box_world_context()["liftoff"]
    stages = context["stages"]
    production = {**stages["production"], "desired_count": 3}
    variant = synth_variant({**context, "stages": {**stages, "production": production}})
    with LoadRun(f"{session['balancer']}/version", rate=LOAD_RATE, duration=600, timeout=PATIENT_CLIENT_SECONDS) as run:
        try:
            again = local("up", session, "--assembly", str(variant.outdir))
            assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
            assert "updating stage production in place" in again.stdout
            state = wait_until(lambda: (lambda s: s if len(s["hosts"]) == 3 and len(s["targets"]) == 3
                                        and set(s["targets"].values()) == {"healthy"} else None)(supervisor_state(session)),
                               400, "a third host in service", interval=2)
            time.sleep(2)  # load on the three
        finally:
            run.stop()
    summary = run.summary()
    assert summary.sent > 0 and summary.failed == 0, (summary, failures(run))
    assert all(serves(address) == FIRST for address in state["hosts"].values())
    # The stack kept its versions: ImageTag was not touched by the update.
    status = second_shell(session, ".venv/bin/liftoff status --stage production")
    assert status.returncode == 0 and len(re.findall(rf"i-[0-9a-f]+.*{FIRST}", status.stdout)) >= 3, status.stdout


def test_local_down_stops_everything_and_says_so_when_run_again(session, docker_daemon):
    record = supervisors.recorded(session["state"])
    world = json.loads((session["state"] / "boxes.json").read_text())["name"]
    down = local("down", session, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped the supervisor (pid {record.pid})" in down.stdout and f"stopped the hosts' world {world}" in down.stdout
    assert not supervisors.is_ours(record)
    assert docker_daemon.run("ps", "--all", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []
    assert docker_daemon.run("network", "ls", "--quiet", "--filter", f"label=liftoff.harness={world}").stdout.split() == []
    again = local("down", session, timeout=300)
    assert again.returncode == 0 and "no emulator recorded; nothing to stop" in again.stdout, again.stdout + again.stderr
    assert "stopped" not in again.stdout


def assert_the_walk_ran_on_real_tasks(out: str) -> None:
    """`up` runs `make deploy`'s walk (local/deploy.py's run) on the ecs stage's real tasks: asserted here, once."""
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


@pytest.mark.cost(minutes=2)  # a unit of its own (no module world), measured alone: the ec2 world's mark is the module's
def test_local_up_staging_keeps_the_tasks_running_and_a_killed_supervisor_leaves_none_behind(synth_variant, tmp_path,
                                                                                            docker_daemon, box_image,
                                                                                            service_image):
    context = copy.deepcopy(cdk_context()["liftoff"])
    # No bake: each of the walk's verified switches would wait it out (ECS verifies once the previous tasks are gone), and
    # the bake window itself (a rollback inside it is a flip) is tests/local/test_ecs_stage.py's.
    context["stages"]["staging"]["bake_seconds"] = 0
    assembly = str(synth_variant(context).outdir)
    stage = load_config(CDK_JSON).stage("staging")
    session = {"state": tmp_path / "state", "adapted": tmp_path / "adapted", "docker_host": docker_daemon.host, "stage": "staging"}
    emulator = world = record = None
    try:
        up = local("up", session, "--assembly", assembly)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
        assert_the_walk_ran_on_real_tasks(up.stdout)
        session["exports"] = next(line.strip() for line in up.stdout.splitlines() if line.strip().startswith("export "))
        assert "LIFTOFF_RUNTIME=local.runtime:emulator_tasks" in session["exports"], session["exports"]
        balancer = re.search(r"^load balancer: (http://127\.0\.0\.1:\d+)$", up.stdout, re.M).group(1)
        emulator, record = emulators.recorded(session["state"]), supervisors.recorded(session["state"])
        world = json.loads((session["state"] / "boxes.json").read_text())["name"]
        clients = EndpointSession(fake_session(), emulator.endpoint)
        outputs = {output["OutputKey"]: output["OutputValue"] for output in
                   clients.client("cloudformation").describe_stacks(StackName=stage.service_stack_name)["Stacks"][0]["Outputs"]}
        cluster, service = outputs["ClusterName"], outputs["EcsServiceName"]
        ecs = clients.client("ecs")
        desired = ecs.describe_services(cluster=cluster, services=[service])["services"][0]["desiredCount"]

        def running_tasks() -> set[str]:
            """What the emulator's ECS API lists RUNNING for the service (from the kept stand-in's publication)."""
            arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="RUNNING")["taskArns"]
            described = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []
            return {task["taskArn"].rsplit("/", 1)[-1] for task in described if task["lastStatus"] == "RUNNING"}

        def task_containers() -> set[str]:
            """The tasks whose containers run in the world, whoever started them."""
            shown = docker_daemon.run("ps", "--filter", f"label=liftoff.harness={world}", "--filter", "label=liftoff.ecs.task",
                                      "--format", '{{.Label "liftoff.ecs.task"}}').stdout
            return set(shown.split())

        def exactly_the_desired_tasks() -> set[str]:
            running = running_tasks()
            return running if len(running) == desired and task_containers() == running else set()

        kept = wait_until(exactly_the_desired_tasks, 60, f"{desired} running task(s), and only their containers")
        with urllib.request.urlopen(f"{balancer}/version", timeout=5) as response:
            assert json.loads(response.read())["version"] == FIRST  # the walk ended on a rollback to the first release
        status = second_shell(session, ".venv/bin/liftoff status --stage staging")
        assert status.returncode == 0, status.stdout + status.stderr
        for task in kept:
            assert re.search(rf"task {task} RUNNING \S+:{FIRST}", status.stdout), status.stdout

        os.kill(record.pid, signal.SIGKILL)  # a crash: its tasks go on running, nobody stops them
        wait_until(lambda: not supervisors.is_ours(record), 30, "the supervisor to die")
        assert task_containers() == kept
        again = local("up", session, "--assembly", assembly)
        assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-3000:]
        assert "the supervisor is not running (killed, or the machine restarted): starting it again" in again.stdout
        record = supervisors.recorded(session["state"])
        assert supervisors.is_ours(record) and record.balancer_url == balancer
        replaced = wait_until(exactly_the_desired_tasks, 60, f"{desired} running task(s), and only their containers")
        assert not replaced & kept  # the dead supervisor's tasks were removed, not counted twice
        # The log holds both supervisors' lines: the restarted one's are the last.
        cleared = re.findall(r"removed what an earlier ECS stand-in left: (\d+) task container\(s\)", Path(record.log).read_text())
        assert int(cleared[-1]) >= 2 * len(kept), cleared  # each task's app and the pause container holding its network
        with urllib.request.urlopen(f"{balancer}/version", timeout=5) as response:
            assert json.loads(response.read())["version"] == FIRST
    finally:
        down = local("down", session, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped the supervisor (pid {record.pid})" in down.stdout and f"stopped the tasks' world {world}" in down.stdout
    assert not supervisors.is_ours(record) and not emulators.is_ours(emulator)
    for kind in ("ps", "network", "volume"):
        listed = docker_daemon.run(*(["ps", "--all"] if kind == "ps" else [kind, "ls"]), "--quiet",
                                   "--filter", f"label=liftoff.harness={world}").stdout.split()
        assert listed == [], f"{kind}: {listed}"
