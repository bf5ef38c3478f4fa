"""The ec2 mode for real: hosts boot from the synthesized user data in systemd boxes with their own Docker,
pull the real image from a real registry, and the gate scripts switch versions on them.

One emulator (moto_server) and one box world per module: production (ec2, two hosts) deployed from
the shipped synthesis (but for a shorter host canary: tests/conftest.py's `box_world`), the real release images 1.0.0 and 1.1.0 pushed, both hosts booted.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import time

import pytest

from local import boxes, images
from local.hosts import StageHosts, StateManagerStandIn
from tests.helpers.box_world import booted_hosts, deployed, running_emulator, wait_until
from tests.helpers.clients import failures
from tests.helpers.synth import REPO

pytestmark = pytest.mark.cost(minutes=3.5)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

STATE_DIR = REPO / ".local" / "test-boxes"
BROKEN = "1.9.9-broken"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def production(emulator, box_world):
    with deployed(emulator, box_world.outdir) as stage:
        yield stage


@pytest.fixture(scope="module")
def hosts(docker_daemon, box_image, service_image, release_images, emulator, production):
    # BROKEN: a release whose service exits at every start (migrate works, serve never answers).
    broken = images.release_image(docker_daemon, service_image, BROKEN, never_starts=True)
    with booted_hosts(daemon=docker_daemon, box_image=box_image, emulator=emulator, production=production,
                      state_dir=STATE_DIR, prefix="lt", releases={**release_images, BROKEN: broken}) as stage_hosts:
        yield stage_hosts


def on_host(hosts: StageHosts, box: boxes.Box, *command: str) -> str:
    result = boxes.run_on_box(hosts.daemon, box, *command, timeout=120)
    assert result.returncode == 0, f"{' '.join(command)} on {box.instance_id}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def active_slot(hosts: StageHosts, box: boxes.Box) -> str:
    return on_host(hosts, box, "cat", "/etc/liftoff/active-slot")


def app_container(hosts: StageHosts, box: boxes.Box, slot: str | None = None) -> str:
    """The container of `slot` (the active one by default); the shipped production stage runs two slots."""
    name = f"liftoff-app-{slot or active_slot(hosts, box)}"
    return on_host(hosts, box, "docker", "inspect", "--format", "{{.Id}}", name)


def running_containers(hosts: StageHosts, box: boxes.Box) -> set[str]:
    return set(on_host(hosts, box, "docker", "ps", "--format", "{{.Names}}").split())


def test_each_instance_boots_the_active_version_from_the_launch_template_user_data(hosts, production):
    instances = [i["InstanceId"] for i in production.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[production.service_outputs["AutoScalingGroupName"]])["AutoScalingGroups"][0]["Instances"]]
    assert sorted(box.instance_id for box in hosts.hosts) == sorted(instances) and len(instances) == 2
    assert set(hosts.boot_seconds) == set(instances)
    for box in hosts.hosts:
        # cloud-init's stand-in ran the launch template's bytes; liftoff-boot read the active tag from SSM.
        signal = json.loads(on_host(hosts, box, "cat", boxes.SIGNAL_FILE))
        assert signal["status"] == "SUCCESS" and signal["stack"] == production.stack_names["service"]
        assert hosts.serving_version(box) == "1.0.0"
        assert boxes.active_tag(hosts.daemon, box) == "1.0.0"
        # The image came from the registry under the repository's ECR name, pulled by the host's own Docker.
        assert on_host(hosts, box, "docker", "inspect", "--format", "{{.Config.Image}}", "liftoff-app-a").endswith(
            f"/{production.repository_name}:1.0.0")
        # Slot a serves from a loopback port; the load balancer's port is the host proxy's.
        assert active_slot(hosts, box) == "a" and running_containers(hosts, box) == {"liftoff-app-a"}
        assert on_host(hosts, box, "systemctl", "is-active", "liftoff-proxy.service") == "active"


def test_hosts_do_not_see_each_others_containers(hosts):
    first, second = hosts.hosts
    assert app_container(hosts, first) != app_container(hosts, second)
    assert on_host(hosts, first, "docker", "ps", "--quiet", "--no-trunc") == app_container(hosts, first)


def test_a_slot_is_reachable_only_through_the_host_proxy(hosts):
    box = hosts.hosts[0]
    env = hosts.host_environment()
    published = on_host(hosts, box, "docker", "port", "liftoff-app-a")
    assert published.splitlines() == [f"{env['CONTAINER_PORT']}/tcp -> 127.0.0.1:{env['SLOT_A_PORT']}"]
    status, _ = hosts.answer(box, "/healthz")
    assert status == 200


def test_stage_pulls_the_image_and_changes_nothing_else(hosts, production):
    before = {box.instance_id: app_container(hosts, box) for box in hosts.hosts}
    runs = hosts.run_gate("stage", "1.1.0")
    assert [run.exit_code for run in runs] == [0, 0], [run.output for run in runs]
    for box in hosts.hosts:
        on_host(hosts, box, "docker", "image", "inspect", f"{hosts.host_environment()['REPOSITORY_URI']}:1.1.0")
        assert app_container(hosts, box) == before[box.instance_id]
        assert boxes.active_tag(hosts.daemon, box) == "1.0.0"
        assert hosts.serving_version(box) == "1.0.0"


def test_activate_starts_beside_the_old_version_flips_and_keeps_it_warm(hosts):
    before = {box.instance_id: app_container(hosts, box) for box in hosts.hosts}
    # What a start of slot b stopped mid-way left on one host (a `docker run --rm` killed between create and start:
    # a created container --rm never removes); the slot's next start must not fail on its name.
    first = hosts.hosts[0]
    on_host(hosts, first, "docker", "create", "--name", "liftoff-migrate-b", f"{hosts.host_environment()['REPOSITORY_URI']}:1.0.0", "migrate")
    runs = hosts.run_gate("activate", "1.1.0")
    assert [run.exit_code for run in runs] == [0, 0], [run.output for run in runs]
    for run in runs:
        # No drain: the load balancer's target (the host proxy) never left the target group.
        assert "starting 1.1.0 in slot b; 1.0.0 keeps serving from slot a" in run.output, run.output
        assert "deregister" not in run.output and "draining" not in run.output
    assert set(hosts.controller.states().values()) == {"healthy"}
    response = __import__("urllib.request").request.urlopen(f"{hosts.balancer.url}/version", timeout=5)
    assert json.loads(response.read())["version"] == "1.1.0"
    for box in hosts.hosts:
        assert hosts.serving_version(box) == "1.1.0" and active_slot(hosts, box) == "b"
        assert on_host(hosts, box, "cat", "/etc/liftoff/active.env.previous") == "IMAGE_TAG=1.0.0"
        # The previous version is still running, warm, with its retirement scheduled.
        assert running_containers(hosts, box) == {"liftoff-app-a", "liftoff-app-b"}
        assert app_container(hosts, box, "a") == before[box.instance_id]
        assert on_host(hosts, box, "systemctl", "is-active", "liftoff-retire-a.timer") == "active"
    assert "liftoff-migrate-b" not in on_host(hosts, first, "docker", "ps", "--all", "--format", "{{.Names}}").split()
    # Back inside the bake window: a flip to the warm container, nothing pulled or started.
    runs = hosts.run_gate("activate", "1.0.0")
    assert [run.exit_code for run in runs] == [0, 0], [run.output for run in runs]
    for run in runs:
        assert "1.0.0 is still warm in slot a: switching traffic back to it (no pull, no start)" in run.output, run.output
        assert "pulling" not in run.output
    for box in hosts.hosts:
        assert hosts.serving_version(box) == "1.0.0" and active_slot(hosts, box) == "a"
        assert app_container(hosts, box, "a") == before[box.instance_id]
        assert boxes.run_on_box(hosts.daemon, box, "systemctl", "is-active", "liftoff-retire-a.timer").stdout.strip() != "active"
        assert on_host(hosts, box, "systemctl", "is-active", "liftoff-retire-b.timer") == "active"


def test_after_the_bake_window_the_old_slot_stops_and_a_switch_starts_it_again(hosts):
    box = hosts.hosts[0]
    assert active_slot(hosts, box) == "a"
    if "liftoff-app-b" not in running_containers(hosts, box):
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    # What the timer runs when the window closes; it leaves an active slot alone.
    assert "serves again" in boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-retire", "a").stderr
    retired = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-retire", "b")
    assert retired.returncode == 0 and "bake window over: stopping 1.1.0 in slot b" in retired.stderr
    assert running_containers(hosts, box) == {"liftoff-app-a"}
    switched = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
    assert switched.returncode == 0 and "starting 1.1.0 in slot b" in switched.stderr, switched.stderr
    assert "already present, not pulling" in switched.stderr
    back = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    assert back.returncode == 0 and "warm" in back.stderr and hosts.serving_version(box) == "1.0.0"


def test_a_switch_interrupted_between_its_record_and_the_proxy_is_repaired_by_the_next_one(hosts):
    box = hosts.hosts[0]
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")  # 1.1.0 warm in slot b, a serves
    assert active_slot(hosts, box) == "a"
    # As if a switch had died after recording slot a but before telling the running proxy.
    on_host(hosts, box, "bash", "-c", "echo 'set server slots/b state ready; set server slots/a state maint' | "
            "socat - UNIX-CONNECT:/run/liftoff-proxy/admin.sock")
    assert hosts.serving_version(box) == "1.1.0"
    repaired = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    assert repaired.returncode == 0, repaired.stderr
    assert "sends traffic to slot b, not the recorded slot a" in repaired.stderr
    assert "already active and healthy" in repaired.stderr and hosts.serving_version(box) == "1.0.0"


def test_one_host_switches_and_switches_back_under_load_without_a_failed_request(hosts):
    from local.load import PATIENT_CLIENT_SECONDS, LoadRun

    box = hosts.hosts[1]
    port = hosts.host_environment()["CONTAINER_PORT"]
    with LoadRun(f"http://{box.address}:{port}/version", rate=40, duration=120, allowed=[box.address], timeout=PATIENT_CLIENT_SECONDS) as run:
        time.sleep(1)
        run.mark("forward")
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
        time.sleep(1)
        run.mark("back")
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
        time.sleep(1)
        run.stop()
    forward = run.summary(since="forward", until="back")
    whole = run.summary()
    assert whole.sent > 80 and whole.failed == 0, (whole.outcomes, failures(run))
    assert {"1.0.0", "1.1.0"} <= set(forward.versions)
    assert hosts.serving_version(box) == "1.0.0"


def test_activate_of_an_image_the_registry_lacks_fails_before_changing_anything(hosts):
    box = hosts.hosts[0]
    before = app_container(hosts, box)
    result = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "7.7.7")
    assert result.returncode != 0
    assert "7.7.7" in result.stdout + result.stderr
    assert boxes.active_tag(hosts.daemon, box) == "1.0.0"
    assert app_container(hosts, box) == before and hosts.serving_version(box) == "1.0.0"


def test_a_release_that_never_gets_healthy_never_takes_a_request(hosts):
    box = hosts.hosts[0]
    before = app_container(hosts, box)
    result = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", BROKEN)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # Its container exits at every start: the slot's start fails, or systemd restarts it until the gate gives up
    # (3 exits, well inside the 60 s health wait); either way the old version is untouched.
    assert (f"{BROKEN} failed to start in slot b" in output or f"{BROKEN} exited 3 times in a row without answering on /healthz"
            in output), output
    assert "never took a request; 1.0.0 still serves from slot a" in output
    assert boxes.active_tag(hosts.daemon, box) == "1.0.0" and hosts.serving_version(box) == "1.0.0"
    # The serving container was never touched; the failed one is gone.
    assert app_container(hosts, box) == before
    assert running_containers(hosts, box) <= {"liftoff-app-a"}


def test_state_manager_stand_in_runs_a_changed_gate_one_host_at_a_time(hosts, production):
    state_manager = StateManagerStandIn(hosts, say=lambda _: None)
    state_manager.status = {"stage": {"tag": "1.0.0", "status": "Success"}, "activate": {"tag": "1.0.0", "status": "Success"}}
    production.update_service(image_tag="1.0.0", staged_image_tag="1.1.0")
    runs = state_manager.apply_once()
    assert [(run.gate, run.tag, run.exit_code) for run in runs] == [("stage", "1.1.0", 0)] * 2
    assert state_manager.status["stage"] == {"tag": "1.1.0", "status": "Success"}
    assert state_manager.apply_once() == []  # nothing changed since: nothing runs


def test_a_crashed_container_is_restarted_by_systemd(hosts):
    box = hosts.hosts[1]
    slot = active_slot(hosts, box)
    before = app_container(hosts, box)
    on_host(hosts, box, "docker", "kill", f"liftoff-app-{slot}")
    wait_until(lambda: hosts.serving_version(box) == "1.0.0" and app_container(hosts, box) != before, 60,
               "the killed container was not replaced by a serving one")
    # Serving comes before the unit's start-up report (ExecStartPost) finishes and systemd calls it active.
    wait_until(lambda: boxes.run_on_box(hosts.daemon, box, "systemctl", "is-active", f"liftoff-slot@{slot}.service").stdout.strip() == "active",
               30, f"liftoff-slot@{slot}.service did not become active again")


def test_a_rebooted_host_comes_back_on_the_active_version_without_rerunning_user_data(hosts):
    box = hosts.hosts[1]
    hosts.daemon.run("restart", "--time", "60", box.container, timeout=120)
    wait_until(lambda: hosts.serving_version(box) == "1.0.0", 120, f"{box.instance_id} did not serve 1.0.0 after a reboot")
    log = on_host(hosts, box, "cat", "/var/log/cloud-init-output.log")
    assert log.count("liftoff-boot: active tag from") == 1


def test_db_password_is_root_only_and_never_in_docker_inspect_or_the_journal(hosts):
    box = hosts.hosts[0]
    secret = json.loads(hosts.session.client("secretsmanager").get_secret_value(
        SecretId=hosts.host_environment()["DB_SECRET_ARN"])["SecretString"])
    password = secret["password"]
    slot = active_slot(hosts, box)
    assert on_host(hosts, box, "stat", "--format", "%a %U", f"/run/liftoff-slot-{slot}") == "700 root"
    denied = boxes.run_on_box(hosts.daemon, box, "runuser", "-u", "nobody", "--", "cat", f"/run/liftoff-slot-{slot}/db-password")
    assert denied.returncode != 0 and password not in denied.stdout
    assert password not in on_host(hosts, box, "docker", "inspect", f"liftoff-app-{slot}")
    assert password not in on_host(hosts, box, "journalctl", "--no-pager", "--output", "cat")
    # ... and yet the service reaches its database with it.
    assert hosts.answer(box, "/readyz")[0] == 200


def test_container_output_and_unit_events_reach_the_stage_log_group(hosts):
    logs = hosts.session.client("logs")
    group = hosts.host_environment()["LOG_GROUP"]
    streams = [stream["logStreamName"] for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    for box in hosts.hosts:
        unit_stream = f"{box.instance_id}/liftoff-slot@a.service"
        assert unit_stream in streams
        events = [event["message"] for event in logs.get_log_events(logGroupName=group, logStreamName=unit_stream)["events"]]
        assert any(message.startswith("liftoff-slot@a started version=1.0.0") for message in events)
    container_messages = [event["message"] for stream in streams if "/" not in stream
                          for event in logs.get_log_events(logGroupName=group, logStreamName=stream)["events"]]
    assert any('"logger": "liftoff.migrate"' in message for message in container_messages)
    assert any('"logger": "gunicorn.error"' in message for message in container_messages)


def test_a_host_signs_its_event_lines_and_reports_with_curl_under_its_roles_policy(hosts):
    box = hosts.hosts[0]
    group = hosts.host_environment()["LOG_GROUP"]
    stream = f"{box.instance_id}/liftoff-slot@a.service"

    def aws_json(target: str, body: dict) -> subprocess.CompletedProcess:
        # The host scripts' own function, which has nothing to fall back on: curl signs, or it fails.
        script = ". /opt/liftoff/bin/liftoff-common.sh && load_config && aws_json logs " + shlex.join([target, json.dumps(body)])
        return boxes.run_on_box(hosts.daemon, box, "bash", "-c", script, timeout=60)

    line = {"logGroupName": group, "logStreamName": stream, "logEvents": [{"timestamp": int(time.time() * 1000), "message": "signed by curl"}]}
    put = aws_json("Logs_20140328.PutLogEvents", line)
    assert put.returncode == 0, put.stderr
    events = hosts.session.client("logs").get_log_events(logGroupName=group, logStreamName=stream)["events"]
    assert "signed by curl" in [event["message"] for event in events]
    # The emulator holds a curl-signed call to the instance role's policy, as it holds the CLI's.
    refused = aws_json("Logs_20140328.DeleteLogGroup", {"logGroupName": group})
    assert refused.returncode == 1 and "AccessDenied" in refused.stderr and "logs:DeleteLogGroup" in refused.stderr, refused.stderr
    assert group in [g["logGroupName"] for g in hosts.session.client("logs").describe_log_groups()["logGroups"]]


def test_a_host_reads_its_group_and_the_in_service_peers_from_auto_scalings_xml_signed_by_curl(hosts):
    box = hosts.hosts[0]
    # The host scripts' own functions; with `aws` made to fail, curl's signed query (and its XML, read in bash) is
    # the only way they can answer.
    script = (". /opt/liftoff/bin/liftoff-common.sh && load_config && aws() { echo 'the CLI was called' >&2; return 99; } && "
              f"group=$(group_of_instance {box.instance_id}) && echo \"$group\" && in_service_instances \"$group\"")
    read = boxes.run_on_box(hosts.daemon, box, "bash", "-c", script, timeout=60)
    assert read.returncode == 0, read.stderr
    group_name, peers = read.stdout.splitlines()
    groups = hosts.session.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
    in_service = [i["InstanceId"] for i in groups[0]["Instances"] if i["LifecycleState"] == "InService"]
    assert sorted(json.loads(peers)) == sorted(in_service) and box.instance_id in in_service


def test_each_release_has_its_own_digest_in_the_registry_and_the_emulated_ecr(hosts, production):
    details = production.client("ecr").describe_images(repositoryName=production.repository_name)["imageDetails"]
    by_tag = {tag: detail["imageDigest"] for detail in details for tag in detail.get("imageTags", [])}
    assert by_tag["1.0.0"] != by_tag["1.1.0"]


# Last in the module: it changes which instances make up the group.
def test_the_group_stand_in_scales_out_and_drains_each_leaving_host_before_it_stops(hosts, production):
    """2 -> 3 -> 2 hosts under load through the load balancer stand-in, as a target-tracking policy would set it
    (docs/scaling.md): the new host boots the active version, State Manager's gates reach it (the staged version
    is pulled), and it gets requests once healthy; the leaving host drains for the deregistration delay before
    its box stops. No request fails."""
    import threading

    from local.load import PATIENT_CLIENT_SECONDS, LoadRun

    active = production.service_parameters()["ImageTag"]
    state_manager = StateManagerStandIn(hosts, say=lambda _: None)
    # What the associations last ran: the stack's active tag, and a staged release the hosts already pulled.
    state_manager.status = {"stage": {"tag": "1.1.0", "status": "Success"}, "activate": {"tag": active, "status": "Success"}}
    hosts.set_limits(floor=2, ceiling=3)
    seen: dict[str, list[tuple[float, str]]] = {}
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            for target, state in hosts.controller.states().items():
                if not seen.get(target) or seen[target][-1][1] != state:
                    seen.setdefault(target, []).append((time.monotonic(), state))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with LoadRun(f"{hosts.balancer.url}/version", rate=30, duration=300, timeout=PATIENT_CLIENT_SECONDS) as run:
            time.sleep(1)
            out = hosts.scale_to(3, state_manager=state_manager)
            (new,) = out.added
            new_box = hosts.world.boxes[new]
            assert hosts.serving_version(new_box) == active
            assert on_host(hosts, new_box, "docker", "image", "ls", "--format", "{{.Tag}}").split().count("1.1.0") == 1
            assert {(r.gate, r.tag, r.exit_code) for r in out.gate_runs} == {("stage", "1.1.0", 0), ("activate", active, 0)}
            assert [state for _, state in seen[new]][-1] == "healthy" and "unhealthy" not in [s for _, s in seen[new]]
            began = time.monotonic()
            back = hosts.scale_to(2, state_manager=state_manager)
            stopped_at = time.monotonic()
            time.sleep(1)
            run.stop()
    finally:
        watching.set()
        watcher.join(5)
    (gone,) = back.removed
    assert gone not in hosts.world.boxes and len(hosts.hosts) == 2
    states = [state for _, state in seen[gone]]
    assert states[-1] == "draining"  # and then removed from the load balancer, before the box stopped
    drained_at = next(at for at, state in seen[gone] if state == "draining")
    assert began <= drained_at < stopped_at
    assert back.removed[gone] >= hosts.balancer.settings.deregistration_delay_seconds
    whole = run.summary()
    assert whole.sent > 30 and whole.failed == 0, (whole.outcomes, failures(run))
