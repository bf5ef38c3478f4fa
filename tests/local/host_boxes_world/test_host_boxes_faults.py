"""The ec2 mode's bad days on the host boxes, as the host scripts themselves see them (issue 22): each host reports
what it booted and serves, and the proxy (not a file) says which slot serves; an interrupted gate is repaired; a
replacement host joins what the fleet serves.

The faults `liftoff` drives the hosts through (a full disk, the registry or the database down, a killed gate, a
release ready only after a warm-up, a reboot, a killed host) are in tests/local/test_liftoff_on_faulty_hosts.py,
which asserts what each host reports there too: one world per fault, not two.

The world is this directory's (conftest.py), as test_host_boot.py found it: fresh hosts (it only reads them). The tests
run in order and each leaves both hosts serving 1.0.0 (from either slot), nothing warm beside it.
"""
from __future__ import annotations

import time

import pytest

from local import boxes
from local.hosts import HostsRuntime, StageHosts, StateManagerStandIn
from local.load import PATIENT_CLIENT_SECONDS, LoadRun
from tests.helpers.box_world import activate, active_slot, idle_slot, on_host, running_containers, wait_until
from tests.helpers.clients import failures
from tests.local.host_boxes_world import UNIT_MINUTES, WARMING, back_on_1_0_0

pytestmark = pytest.mark.cost(minutes=UNIT_MINUTES)


def report(hosts: StageHosts, box: boxes.Box) -> dict:
    return hosts.reports()[box.instance_id]


# --- reports ---------------------------------------------------------------------------------


def test_each_host_reports_what_it_booted_and_serves(hosts, production):
    path = production.service_outputs["HostReportPath"]
    assert path == f"/liftoff/{production.stack_names['service']}/hosts/"
    reports = hosts.reports()
    assert sorted(reports) == sorted(box.instance_id for box in hosts.hosts)
    for box in hosts.hosts:
        found = reports[box.instance_id]
        assert (found["instance"], found["active"], found["active_slot"], found["ready"]) == (box.instance_id, "1.0.0", "a", True)
        assert (found["warm"], found["warm_until"]) == ("", "")
        assert found["last_gate"]["gate"] == "boot" and found["last_gate"]["result"] == "succeeded"
        assert found["last_gate"]["version"] == "1.0.0"


def test_after_a_switch_the_report_shows_the_warm_version_until_it_retires(hosts):
    box = hosts.hosts[0]
    assert activate(hosts, box, "1.1.0").returncode == 0
    found = report(hosts, box)
    assert (found["active"], found["active_slot"], found["ready"], found["warm"]) == ("1.1.0", "b", True, "1.0.0")
    assert found["warm_until"] > found["reported_at"]
    assert found["last_gate"]["result"] == "succeeded" and found["last_gate"]["version"] == "1.1.0"
    # The proxy, not a file, says which slot serves: flipped by hand, the next report follows it.
    on_host(hosts, box, "bash", "-c", "echo 'set server slots/a state ready; set server slots/b state maint' | "
            "socat - UNIX-CONNECT:/run/liftoff-proxy/admin.sock")
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-retire", "a")  # slot a is not the recorded active slot
    found = report(hosts, box)
    # Nothing serves; 1.1.0 runs in the slot the proxy does not route to, with no retirement scheduled.
    assert (found["active"], found["active_slot"], found["ready"]) == ("", "", False)
    assert (found["warm"], found["warm_until"]) == ("1.1.0", "")
    assert activate(hosts, box, "1.0.0").returncode == 0  # the proxy put back in step, 1.0.0 started again
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-retire", "b")
    found = report(hosts, box)
    assert (found["active"], found["ready"], found["warm"]) == ("1.0.0", True, "")
    back_on_1_0_0(hosts)


# --- an interrupted gate ------------------------------------------------------------------------


def kill_gate_after_its_start(hosts: StageHosts, box: boxes.Box, tag: str) -> None:
    """liftoff-activate TAG, killed (SIGKILL: no trap runs) once its new slot's container runs."""
    idle = idle_slot(hosts, box)
    pid = on_host(hosts, box, "bash", "-c", f"/opt/liftoff/bin/liftoff-activate {tag} >/tmp/gate.log 2>&1 & echo $!")
    wait_until(lambda: f"liftoff-app-{idle}" in running_containers(hosts, box), 120, "the gate's new slot never ran")
    on_host(hosts, box, "kill", "-KILL", pid)
    wait_until(lambda: boxes.run_on_box(hosts.daemon, box, "kill", "-0", pid).returncode != 0, 30, "the gate did not die")


def test_an_interrupted_gate_leaves_no_stray_and_activate_converges_the_host(hosts):
    box = hosts.hosts[1]
    kill_gate_after_its_start(hosts, box, WARMING)
    # The gate's last report (at its start) says it never finished; a fresh look (liftoff-report, as after a
    # restart) finds what it left: the host serves 1.0.0, and WARMING runs beside it with no retirement set.
    found = report(hosts, box)
    assert found["last_gate"]["result"] == "running" and found["last_gate"]["version"] == WARMING
    on_host(hosts, box, "/opt/liftoff/bin/liftoff-report")
    found = report(hosts, box)
    assert found["last_gate"]["result"] == "running"
    assert found["active"] == "1.0.0" and found["warm"] == WARMING and found["warm_until"] == ""
    # Activating the version the host serves removes what the interrupted gate left behind.
    result = activate(hosts, box, "1.0.0")
    assert result.returncode == 0 and "(left by an interrupted gate): stopping it" in result.stderr, result.stderr
    assert running_containers(hosts, box) == {f"liftoff-app-{active_slot(hosts, box)}"}
    assert report(hosts, box)["warm"] == ""
    # Killed again; activating the version the stack names converges the host without a failed request.
    kill_gate_after_its_start(hosts, box, WARMING)
    port = hosts.host_environment()["CONTAINER_PORT"]
    with LoadRun(f"http://{box.address}:{port}/version", rate=30, duration=600, allowed=[box.address], timeout=PATIENT_CLIENT_SECONDS) as run:
        time.sleep(1)
        result = activate(hosts, box, WARMING)
        time.sleep(1)
        run.stop()
    assert result.returncode == 0, result.stderr
    whole = run.summary()
    assert whole.sent > 30 and whole.failed == 0, (whole.outcomes, failures(run))
    found = report(hosts, box)
    assert (found["active"], found["ready"], found["last_gate"]["result"]) == (WARMING, True, "succeeded")
    back_on_1_0_0(hosts)


# --- the State Manager stand-in and the runtime ---------------------------------------------------


def test_start_association_once_runs_the_gates_again_and_keeps_each_hosts_result(hosts, production):
    state_manager = StateManagerStandIn(hosts, say=lambda _: None)
    runtime = HostsRuntime(hosts=hosts, state_manager=state_manager, service_stack=production.stack_names["service"],
                           registry_stack=production.stack_names["registry"], session=hosts.session)
    association = production.service_outputs["ActivateAssociationId"]
    runtime.start_association_once(association)
    assert set(state_manager.instance_results) == {"activate"}  # its own gate only: each association id is its own
    for box in hosts.hosts:
        assert state_manager.instance_results["activate"][box.instance_id]["status"] == "Success"
        assert state_manager.instance_results["activate"][box.instance_id]["tag"] == "1.0.0"
    with pytest.raises(boxes.BoxError, match="association 'no-such-association' is not one of"):
        runtime.start_association_once("no-such-association")


# Late in the module: it changes which instances make up the group.
def test_a_replacement_after_an_unverified_activation_boots_what_the_fleet_serves(hosts, production):
    # What an activation that ended unverified leaves: the stack (and the active-tag parameter) names 1.1.0,
    # while the hosts still serve 1.0.0 (no gate ran here).
    production.update_service(image_tag="1.1.0", staged_image_tag="1.1.0")
    try:
        hosts.set_limits(floor=2, ceiling=3)
        out = hosts.scale_to(3)
        (new,) = out.added
        new_box = hosts.world.boxes[new]
        assert hosts.serving_version(new_box) == "1.0.0"
        boot_log = on_host(hosts, new_box, "cat", "/var/log/cloud-init-output.log")
        assert "every ready peer serves 1.0.0, not 1.1.0" in boot_log, boot_log[-3000:]
        found = report(hosts, new_box)
        assert (found["active"], found["last_gate"]["gate"], found["last_gate"]["version"]) == ("1.0.0", "boot", "1.0.0")
        hosts.scale_to(2)
    finally:
        production.update_service(image_tag="1.0.0", staged_image_tag="1.1.0")

