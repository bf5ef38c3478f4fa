"""The gate scripts on real hosts: stage pulls and changes nothing else; activate starts the new version in the idle
slot beside the old one, flips the host proxy and keeps the old one warm for the bake window; what an interrupted or
failing switch leaves; systemd keeps a crashed or rebooted host serving; the group stand-in scales out and in.

The world is this directory's (conftest.py), after test_host_boxes_faults.py: both hosts serve 1.0.0 from either slot
(a slot is named here as the host reports it, active or idle), nothing warm beside it; the group may have replaced
a host. The tests run in order, each on what the one before left; the module leaves both hosts on 1.0.0 with nothing
warm again, for test_host_migrate.py.
"""
from __future__ import annotations

import json
import time

import pytest

from local import boxes
from local.hosts import StageHosts, StateManagerStandIn
from tests.helpers.box_world import active_slot, app_container, on_host, other_slot, running_containers, wait_until
from tests.helpers.clients import failures
from tests.local.host_boxes_world import BROKEN, UNIT_MINUTES, back_on_1_0_0

pytestmark = pytest.mark.cost(minutes=UNIT_MINUTES)


@pytest.fixture(scope="module", autouse=True)
def leaves_the_hosts_on_1_0_0(hosts: StageHosts):
    yield
    back_on_1_0_0(hosts)


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
    old = {box.instance_id: active_slot(hosts, box) for box in hosts.hosts}
    new = {instance: other_slot(slot) for instance, slot in old.items()}
    # What a start of the idle slot stopped mid-way left on one host (a `docker run --rm` killed between create and
    # start: a created container --rm never removes); the slot's next start must not fail on its name.
    first = hosts.hosts[0]
    stray = f"liftoff-migrate-{new[first.instance_id]}"
    on_host(hosts, first, "docker", "create", "--name", stray, f"{hosts.host_environment()['REPOSITORY_URI']}:1.0.0", "migrate")
    runs = hosts.run_gate("activate", "1.1.0")
    assert [run.exit_code for run in runs] == [0, 0], [run.output for run in runs]
    for run in runs:
        # No drain: the load balancer's target (the host proxy) never left the target group.
        assert (f"starting 1.1.0 in slot {new[run.instance_id]}; 1.0.0 keeps serving from slot {old[run.instance_id]}"
                in run.output), run.output
        assert "deregister" not in run.output and "draining" not in run.output
    assert set(hosts.controller.states().values()) == {"healthy"}
    response = __import__("urllib.request").request.urlopen(f"{hosts.balancer.url}/version", timeout=5)
    assert json.loads(response.read())["version"] == "1.1.0"
    for box in hosts.hosts:
        was, now = old[box.instance_id], new[box.instance_id]
        assert hosts.serving_version(box) == "1.1.0" and active_slot(hosts, box) == now
        assert on_host(hosts, box, "cat", "/etc/liftoff/active.env.previous") == "IMAGE_TAG=1.0.0"
        # The previous version is still running, warm, with its retirement scheduled.
        assert running_containers(hosts, box) == {"liftoff-app-a", "liftoff-app-b"}
        assert app_container(hosts, box, was) == before[box.instance_id]
        assert on_host(hosts, box, "systemctl", "is-active", f"liftoff-retire-{was}.timer") == "active"
    assert stray not in on_host(hosts, first, "docker", "ps", "--all", "--format", "{{.Names}}").split()
    # Back inside the bake window: a flip to the warm container, nothing pulled or started.
    runs = hosts.run_gate("activate", "1.0.0")
    assert [run.exit_code for run in runs] == [0, 0], [run.output for run in runs]
    for run in runs:
        assert (f"1.0.0 is still warm in slot {old[run.instance_id]}: switching traffic back to it (no pull, no start)"
                in run.output), run.output
        assert "pulling" not in run.output
    for box in hosts.hosts:
        was, now = old[box.instance_id], new[box.instance_id]
        assert hosts.serving_version(box) == "1.0.0" and active_slot(hosts, box) == was
        assert app_container(hosts, box, was) == before[box.instance_id]
        assert boxes.run_on_box(hosts.daemon, box, "systemctl", "is-active", f"liftoff-retire-{was}.timer").stdout.strip() != "active"
        assert on_host(hosts, box, "systemctl", "is-active", f"liftoff-retire-{now}.timer") == "active"


def test_after_the_bake_window_the_old_slot_stops_and_a_switch_starts_it_again(hosts):
    box = hosts.hosts[0]
    serving = active_slot(hosts, box)
    idle = other_slot(serving)
    if f"liftoff-app-{idle}" not in running_containers(hosts, box):
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
        on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    # What the timer runs when the window closes; it leaves an active slot alone.
    assert "serves again" in boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-retire", serving).stderr
    retired = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-retire", idle)
    assert retired.returncode == 0 and f"bake window over: stopping 1.1.0 in slot {idle}" in retired.stderr
    assert running_containers(hosts, box) == {f"liftoff-app-{serving}"}
    switched = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
    assert switched.returncode == 0 and f"starting 1.1.0 in slot {idle}" in switched.stderr, switched.stderr
    assert "already present, not pulling" in switched.stderr
    back = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    assert back.returncode == 0 and "warm" in back.stderr and hosts.serving_version(box) == "1.0.0"


def test_a_switch_interrupted_between_its_record_and_the_proxy_is_repaired_by_the_next_one(hosts):
    box = hosts.hosts[0]
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.1.0")
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")  # 1.1.0 warm in the idle slot
    serving = active_slot(hosts, box)
    warm = other_slot(serving)
    # As if a switch had died after recording its slot but before telling the running proxy.
    on_host(hosts, box, "bash", "-c", f"echo 'set server slots/{warm} state ready; set server slots/{serving} state maint' | "
            "socat - UNIX-CONNECT:/run/liftoff-proxy/admin.sock")
    assert hosts.serving_version(box) == "1.1.0"
    repaired = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", "1.0.0")
    assert repaired.returncode == 0, repaired.stderr
    assert f"sends traffic to slot {warm}, not the recorded slot {serving}" in repaired.stderr
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
    serving = active_slot(hosts, box)
    result = boxes.run_on_box(hosts.daemon, box, "/opt/liftoff/bin/liftoff-activate", BROKEN)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # Its container exits at every start: the slot's start fails, or systemd restarts it until the gate gives up
    # (3 exits, well inside the 60 s health wait); either way the old version is untouched.
    assert (f"{BROKEN} failed to start in slot {other_slot(serving)}" in output
            or f"{BROKEN} exited 3 times in a row without answering on /healthz" in output), output
    assert f"never took a request; 1.0.0 still serves from slot {serving}" in output
    assert boxes.active_tag(hosts.daemon, box) == "1.0.0" and hosts.serving_version(box) == "1.0.0"
    # The serving container was never touched; the failed one is gone.
    assert app_container(hosts, box) == before
    assert running_containers(hosts, box) <= {f"liftoff-app-{serving}"}


def test_state_manager_stand_in_runs_a_changed_gate_one_host_at_a_time(hosts, production):
    state_manager = StateManagerStandIn(hosts, say=lambda _: None)
    # What the associations last ran differs from what the stack names (moto, as CloudFormation, refuses an update
    # that changes nothing: test_host_boxes_faults.py may have left these very tags).
    state_manager.status = {"stage": {"tag": "1.0.0", "status": "Success"}, "activate": {"tag": "1.0.0", "status": "Success"}}
    named = production.service_parameters()
    if (named["ImageTag"], named["StagedImageTag"]) != ("1.0.0", "1.1.0"):
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
    # The same address, as an instance keeps its private IP, though boxes have come and gone since this one booted
    # (test_host_boxes_faults.py's replacement): the load balancer stand-in and the harness reach it where they did.
    assert boxes._address(hosts.daemon, box.container, hosts.world.network) == box.address
    wait_until(lambda: hosts.serving_version(box) == "1.0.0", 120, f"{box.instance_id} did not serve 1.0.0 after a reboot")
    log = on_host(hosts, box, "cat", "/var/log/cloud-init-output.log")
    assert log.count("liftoff-boot: active tag from") == 1


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
