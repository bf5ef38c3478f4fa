"""`liftoff` itself on the host boxes under faults (issue 22's "Done when", as the release tool sees it).

The release tool drives the host scripts (`release.cli.main` with `local.hosts.HostsRuntime` as its adapter, as
`make deploy`'s walk does): the State Manager stand-in runs each gate on the hosts when the stack's parameter
changes, and the tool judges from the reports the hosts write. Each fault is shown once, here: besides what
liftoff says and records, each test asserts what the failing host itself reports and runs (the host scripts'
own paths without liftoff are in tests/local/host_boxes_world/test_host_boxes_faults.py). One emulator and one 2-host box world for
the module (production: ec2, activation: slots; tests/conftest.py's `box_world`, the shipped stage with a shorter host
canary), steady load through the load balancer stand-in where a switch happens. The tests run in order:

  stage 1.1.0 on a full disk -> stage again after the repair; activate 1.1.0 with one host's gate killed ->
  activate 1.1.0 again converges it; stage WARMING with the registry down -> again after the repair;
  activate WARMING (ready only after a warm-up) under load; activate 1.0.0 with the database down (and
  database-backed requests beside), then again once it is back; activate a release that answers 5xx (the host
  canary holds it back on the first host, liftoff rolls the stack back) then a good one through the canary;
  status after a reboot and after a killed host.

Each test ends reading back the ledger, the lock and the stack, and checks they agree with the hosts.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time

import pytest

from bench.rollout import ANSWERS_5XX, harmful_image
from local import boxes, images
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.hosts import WOKEN_FOLLOW_INTERVAL_SECONDS, HostsRuntime, StageHosts, StateManagerStandIn
from local.load import PATIENT_CLIENT_SECONDS, LoadRun
from release.pure import decisions as d
from release.adapters.ledger import Ledger
from release.cli import main
from tests.helpers.box_world import (Watch, active_slot, booted_hosts, deployed, on_host, running_containers, running_emulator,
                                    wait_until)
from tests.helpers.clients import failures
from tests.helpers.synth import CDK_JSON, REPO

pytestmark = pytest.mark.cost(minutes=5.5)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

STATE_DIR = REPO / ".local" / "test-liftoff-faulty-hosts"
WARMING = "1.2.0-warmup"
WARM_UP_SECONDS = 10


# --- the world (the fixture shapes of tests/local/host_boxes_world/conftest.py) ---------------


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
    warming = images.release_image(docker_daemon, service_image, WARMING, warm_up_seconds=WARM_UP_SECONDS)
    answers_5xx = harmful_image(docker_daemon, service_image, ANSWERS_5XX)
    with booted_hosts(daemon=docker_daemon, box_image=box_image, emulator=emulator, production=production,
                      state_dir=STATE_DIR, prefix="lq",
                      releases={**release_images, WARMING: warming, ANSWERS_5XX: answers_5xx}) as stage_hosts:
        yield stage_hosts


@pytest.fixture(scope="module")
def state_manager(hosts):
    """The associations, as on AWS: each gate runs on the hosts whenever the stack's parameter changes."""
    following = StateManagerStandIn(hosts, say=lambda _: None, interval=WOKEN_FOLLOW_INTERVAL_SECONDS)  # the runtime wakes it
    following.start()
    try:
        yield following
    finally:
        following.stop()


@pytest.fixture(scope="module")
def runtime(hosts, state_manager, production, emulator):
    return HostsRuntime(hosts=hosts, state_manager=state_manager, service_stack=production.stack_names["service"],
                        registry_stack=production.stack_names["registry"], region=FAKE_ENVIRONMENT["AWS_REGION"],
                        session=EndpointSession(fake_session(), emulator.endpoint))


# --- liftoff and its three records ----------------------------------------------------------------


def liftoff(runtime: HostsRuntime, *argv: str) -> tuple[int, dict, str]:
    """One verb in-process, as `liftoff ... --stage production --json`: (exit code, its JSON document, its stderr)."""
    verb = argv[0]
    options = ["--stage", "production", "--config", str(CDK_JSON), "--json"]
    if verb in ("stage", "activate", "rollback"):
        options += ["--poll-interval", "1"]
    if verb in ("activate", "rollback"):
        options += ["--yes", "--no-watch"] if verb == "activate" else ["--yes"]
    out, err = io.StringIO(), io.StringIO()
    code = main([*argv, *options], stdin=io.StringIO(""), stdout=out, stderr=err, aws=runtime)
    return code, (json.loads(out.getvalue()) if out.getvalue().strip() else {}), err.getvalue()


def ledger(runtime: HostsRuntime, production) -> Ledger:
    return Ledger(runtime.client("dynamodb"), production.ledger_table)


def stack_parameters(runtime: HostsRuntime, production) -> dict[str, str]:
    return runtime.stack(production.stack_names["service"]).parameters


def assert_records_agree(runtime: HostsRuntime, production, hosts: StageHosts, *, active: str, staged: str,
                         newest: tuple[str, str, str]) -> None:
    """The ledger, the lock and the stack agree (read back, not remembered), and so do the hosts."""
    book = ledger(runtime, production)
    assert book.read_lock() is None, book.read_lock()
    entry = book.entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == newest, entry
    assert entry.finished_at, entry
    parameters = stack_parameters(runtime, production)
    assert (parameters[d.IMAGE_TAG], parameters[d.STAGED_IMAGE_TAG]) == (active, staged)
    reports = hosts.reports()
    for box in hosts.hosts:
        found = reports[box.instance_id]
        assert (found["active"], found["ready"]) == (active, True), found
        assert hosts.serving_version(box) == active


# --- stage under faults ---------------------------------------------------------------------------


def test_stage_on_a_full_disk_fails_naming_the_host_and_stage_again_after_the_repair_reruns_the_gate(
        runtime, hosts, production):
    box = hosts.hosts[0]
    hosts.fill_docker_disk(box)
    try:
        code, doc, err = liftoff(runtime, "stage", "1.1.0")
    finally:
        hosts.free_docker_disk(box)
    assert code == d.EXIT_UNVERIFIED, err
    assert f"{box.instance_id}: stage gate of 1.1.0 failed" in err and "no space left on device" in err, err
    assert "nothing switched: 1.0.0 is still active" in err
    assert doc["result"] == d.RESULT_FAILED and box.instance_id in doc["verification"]["message"]
    # The host's own report: the failed gate with Docker's reason, and what Docker holds (1.1.0 is not there).
    found = hosts.reports()[box.instance_id]
    assert (found["last_gate"]["gate"], found["last_gate"]["result"]) == ("stage", "failed"), found
    assert "no space left on device" in found["last_gate"]["reason"], found
    assert (found["staged"], found["staged_present"], found["active"], found["ready"]) == ("1.1.0", False, "1.0.0", True)
    (entry, *_) = ledger(runtime, production).entries()
    assert (entry.gate, entry.to_version, entry.result) == ("stage", "1.1.0", d.RESULT_FAILED)
    assert "no space left on device" in entry.detail and box.instance_id in entry.detail
    assert stack_parameters(runtime, production)[d.IMAGE_TAG] == "1.0.0"
    assert {hosts.serving_version(each) for each in hosts.hosts} == {"1.0.0"}

    # The stack names 1.1.0 already: the same verb re-runs the stage gate where hosts disagree, not "nothing to do".
    code, doc, err = liftoff(runtime, "stage", "1.1.0")
    assert code == 0, err
    assert "nothing to do" not in err and "do not hold it" in err and "asked State Manager to run" in err, err
    assert doc["result"] == d.RESULT_SUCCEEDED
    for each in hosts.hosts:
        found = hosts.reports()[each.instance_id]
        assert (found["staged"], found["staged_present"], found["last_gate"]["result"]) == ("1.1.0", True, "succeeded")
    entry = ledger(runtime, production).entries()[0]
    assert entry.detail.startswith("re-drive:"), entry.detail
    assert_records_agree(runtime, production, hosts, active="1.0.0", staged="1.1.0",
                         newest=("stage", "1.1.0", d.RESULT_SUCCEEDED))


def test_stage_with_the_registry_unreachable_fails_naming_the_host_and_succeeds_after_the_repair(
        runtime, hosts, production):
    box = hosts.hosts[0]
    hosts.stop_registry()
    try:
        code, doc, err = liftoff(runtime, "stage", WARMING)
    finally:
        hosts.start_registry()
    assert code == d.EXIT_UNVERIFIED, err
    assert f"{box.instance_id}: stage gate of {WARMING} failed" in err, err
    reason = doc["verification"]["message"]
    assert "dkr.ecr" in reason and ("timeout" in reason or "connect" in reason), reason
    # The host reports the failed gate in ECR's name (not the stand-in registry's), and what Docker holds.
    found = hosts.reports()[box.instance_id]
    assert found["last_gate"]["result"] == "failed" and hosts.world.registry_host not in found["last_gate"]["reason"]
    assert (found["staged"], found["staged_present"]) == (WARMING, False) and hosts.serving_version(box) == "1.0.0"
    entry = ledger(runtime, production).entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("stage", WARMING, d.RESULT_FAILED)
    assert stack_parameters(runtime, production)[d.IMAGE_TAG] == "1.0.0"

    code, doc, err = liftoff(runtime, "stage", WARMING)
    assert code == 0, err
    assert "nothing to do" not in err and "asked State Manager to run" in err, err
    assert_records_agree(runtime, production, hosts, active="1.0.0", staged=WARMING,
                         newest=("stage", WARMING, d.RESULT_SUCCEEDED))


# --- a killed gate, converged by activate ---------------------------------------------------------


def test_a_host_whose_activate_gate_was_killed_is_converged_by_activate_of_the_version_the_stack_names(
        runtime, hosts, production):
    # 1.1.0 was staged (stage after the full disk); staged again now, so activate needs no --force.
    code, _, err = liftoff(runtime, "stage", "1.1.0")
    assert code == 0, err
    second = hosts.hosts[1]
    idle = "b" if active_slot(hosts, second) == "a" else "a"
    outcome: dict = {}

    def first_activate() -> None:
        # Verification waits a bounded time: the killed gate's own last report says "running" forever. The same bound
        # is the fleet's canary host's whole gate (its canary included), which takes over 30 s on loaded cores.
        outcome["run"] = liftoff(runtime, "activate", "1.1.0", "--verify-timeout", "120")

    activating = threading.Thread(target=first_activate)
    activating.start()
    # The second host's gate, killed (SIGKILL: no trap runs) once its new slot's container runs.
    # Or the activation ended first (the canary host held 1.1.0 back, say): then what it said is the failure.
    seen = wait_until(lambda: "slot started" if f"liftoff-app-{idle}" in running_containers(hosts, second)
                      else "activate ended" if not activating.is_alive() else None,
                      300, "the second host's gate never started its slot")
    assert seen == "slot started", f"liftoff activate ended before the second host's gate started its slot: {outcome['run']}"
    pid = on_host(hosts, second, "pgrep", "-o", "-f", "/opt/liftoff/bin/liftoff-activate 1.1.0")
    on_host(hosts, second, "kill", "-KILL", pid)
    activating.join(600)
    code, doc, err = outcome["run"]
    assert code == d.EXIT_UNVERIFIED, err
    assert f"{second.instance_id}: serves 1.0.0, not 1.1.0" in err, err
    entry = ledger(runtime, production).entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("activate", "1.1.0", d.RESULT_UNVERIFIED)
    assert hosts.serving_version(second) == "1.0.0" and hosts.serving_version(hosts.hosts[0]) == "1.1.0"

    # The stack already names 1.1.0: activate re-drives the gate on the hosts, under steady load, nothing failing.
    with Watch(hosts) as watch, LoadRun(f"{hosts.balancer.url}/version", rate=20, duration=600, timeout=PATIENT_CLIENT_SECONDS) as load:
        time.sleep(1)
        code, doc, err = liftoff(runtime, "activate", "1.1.0")
        time.sleep(1)
        load.stop()
    assert code == 0, err
    assert "nothing to do" not in err and "do not hold it" in err, err
    assert f"{second.instance_id}: serves 1.0.0, not 1.1.0" in err and "asked State Manager to run" in err, err
    whole = load.summary()
    assert whole.sent > 20 and whole.failed == 0, (whole.outcomes, failures(load))
    assert {state for _, state in watch.seen} == {"healthy"}, watch.seen
    # What the interrupted gate left (1.1.0 started in the idle slot, never switched to) is not a stray any more: the
    # re-driven gate switched to it once ready, and 1.0.0 beside it is warm with its retirement scheduled.
    assert running_containers(hosts, second) == {"liftoff-app-a", "liftoff-app-b"}
    found = hosts.reports()[second.instance_id]
    assert (found["active_slot"], found["warm"], found["last_gate"]["result"]) == (idle, "1.0.0", "succeeded"), found
    assert found["warm_until"] > found["reported_at"], found
    assert_records_agree(runtime, production, hosts, active="1.1.0", staged="1.1.0",
                         newest=("activate", "1.1.0", d.RESULT_SUCCEEDED))


# --- no flip before ready -------------------------------------------------------------------------


def test_a_warming_release_activated_by_liftoff_takes_no_request_before_it_is_ready(runtime, hosts, production,
                                                                                   state_manager):
    code, _, err = liftoff(runtime, "stage", WARMING)
    assert code == 0, err
    runs_before, commands_before = len(state_manager.runs), len(runtime.command_runs)
    with Watch(hosts) as watch, LoadRun(f"{hosts.balancer.url}/version", rate=20, duration=600, timeout=PATIENT_CLIENT_SECONDS) as load:
        time.sleep(1)
        code, doc, err = liftoff(runtime, "activate", WARMING)
        time.sleep(1)
        load.stop()
    assert code == 0, err
    # On each host the gate that switched it (the canary host's through Run Command, then the association's on the
    # other) waited for readiness, not liveness (which came within a second or two).
    gates = runtime.command_runs[commands_before:] + [run for run in state_manager.runs[runs_before:] if run.gate == "activate"]
    waited = {gate.instance_id for gate in gates if f"waiting for {WARMING} in slot" in gate.output
              and f"{WARMING} is ready in slot" in gate.output and gate.seconds >= WARM_UP_SECONDS - 2}
    assert waited == {box.instance_id for box in hosts.hosts}, [(gate, gate.output) for gate in gates]
    whole = load.summary()
    assert whole.sent > 100 and whole.failed == 0, (whole.outcomes, failures(load))
    assert set(whole.versions) == {"1.1.0", WARMING}
    assert {state for _, state in watch.seen} == {"healthy"}, watch.seen
    assert f"verified: every host in service (2) reports {WARMING} active and ready; 2 target(s) healthy" in err
    assert_records_agree(runtime, production, hosts, active=WARMING, staged=WARMING,
                         newest=("activate", WARMING, d.RESULT_SUCCEEDED))


# --- the database outage --------------------------------------------------------------------------


def set_ready_timeout(hosts: StageHosts, box: boxes.Box, seconds: int) -> None:
    on_host(hosts, box, "sed", "-i", f"s/^READY_TIMEOUT_SECONDS=.*/READY_TIMEOUT_SECONDS={seconds}/", "/etc/liftoff/host.env")


def test_a_database_outage_during_activate_ends_with_liftoffs_result_matching_what_runs(runtime, hosts, production):
    code, _, err = liftoff(runtime, "stage", "1.0.0")
    assert code == 0, err
    first = hosts.hosts[0]
    set_ready_timeout(hosts, first, 10)  # the stack's is 180 s: the outage would outlast nothing
    try:
        with Watch(hosts) as watch, \
                LoadRun(f"{hosts.balancer.url}/notes", rate=10, duration=600, timeout=PATIENT_CLIENT_SECONDS) as notes, \
                LoadRun(f"{hosts.balancer.url}/version", rate=20, duration=600, timeout=PATIENT_CLIENT_SECONDS) as version:
            time.sleep(2)
            hosts.stop_database()
            down_at = time.monotonic()
            try:
                code, doc, err = liftoff(runtime, "activate", "1.0.0")
                # 30 s down in all: longer than the health checks took to drop both hosts before issue 22.
                time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
            finally:
                hosts.start_database()
            time.sleep(3)
            version.stop()
            notes.stop()
    finally:
        set_ready_timeout(hosts, first, 180)
    # The fleet's canary host failed it alone, so the stack never moved: liftoff says so, names the host and why,
    # and records it.
    assert code == d.EXIT_ROLLED_BACK, err
    assert f"the fleet's canary host: {first.instance_id}: activate gate of 1.0.0 failed" in err, err
    assert "failed to start in slot" in err or "is live but not ready" in err, err
    entry = ledger(runtime, production).entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("activate", "1.0.0", d.RESULT_FAILED)
    assert f"the stack was not updated (ImageTag is still {WARMING})" in entry.detail, entry.detail
    assert ledger(runtime, production).read_lock() is None
    assert stack_parameters(runtime, production)[d.IMAGE_TAG] == WARMING
    # What runs is what liftoff said: no host switched, and status reads the same from the hosts.
    assert {hosts.serving_version(box) for box in hosts.hosts} == {WARMING}
    # The canary host's failed gate left nothing running beside what serves, and its report says so.
    assert running_containers(hosts, first) == {f"liftoff-app-{active_slot(hosts, first)}"}
    found = hosts.reports()[first.instance_id]
    assert (found["last_gate"]["result"], found["last_gate"]["version"], found["active"], found["warm"]) == (
        "failed", "1.0.0", WARMING, ""), found
    code, status, err = liftoff(runtime, "status")
    assert code == 0, err
    # (Whether it answered ready is as of its last report: one written while the database was down says not ready.)
    assert {r["active"] for r in status["host_reports"]} == {WARMING}, status["host_reports"]
    # No host left the load balancer; nothing that needs no database failed.
    assert {state for _, state in watch.seen} == {"healthy"}, watch.seen
    whole = version.summary()
    assert whole.sent > 400 and whole.failed == 0, (whole.outcomes, failures(version))
    assert notes.summary().sent > 200

    # The database is back: the same verb switches the fleet, its canary host first (the other host: the first one's
    # last report, written while the database was down, says not ready). The first host's failure from the outage is
    # not this switch's verdict: liftoff waits for its gate to run again. The canary must be a host whose last report
    # says ready; the other host's may have been written during the outage too (a gate's late report, under load:
    # seen once), and then liftoff rightly takes no canary. So that host reports again (liftoff-report, as at a
    # restart) until its report says what it holds now: ready.
    other = hosts.hosts[1]
    wait_until(lambda: on_host(hosts, other, "/opt/liftoff/bin/liftoff-report") is not None
               and hosts.reports()[other.instance_id]["ready"], 120, f"{other.instance_id} never reported ready again")
    with LoadRun(f"{hosts.balancer.url}/version", rate=20, duration=600, timeout=PATIENT_CLIENT_SECONDS) as load:
        time.sleep(1)
        code, doc, err = liftoff(runtime, "activate", "1.0.0")
        time.sleep(1)
        load.stop()
    assert code == 0, err
    assert re.search(r"i-[0-9a-f]+: passed alone, serves 1\.0\.0 ready", err), err
    assert load.summary().failed == 0, (load.summary().outcomes, failures(load))
    assert_records_agree(runtime, production, hosts, active="1.0.0", staged="1.0.0",
                         newest=("activate", "1.0.0", d.RESULT_SUCCEEDED))


# --- the host canary ------------------------------------------------------------------------------


def test_a_release_answering_5xx_is_held_back_by_the_fleets_canary_host_and_never_reaches_the_stack(
        runtime, hosts, production, state_manager):
    code, _, err = liftoff(runtime, "stage", ANSWERS_5XX)
    assert code == 0, err
    runs_before, commands_before = len(state_manager.runs), len(runtime.command_runs)
    with Watch(hosts) as watch, LoadRun(f"{hosts.balancer.url}/version", rate=40, duration=600, timeout=PATIENT_CLIENT_SECONDS) as load:
        time.sleep(2)
        load.mark("command")
        code, doc, err = liftoff(runtime, "activate", ANSWERS_5XX)
        load.mark("done")
        time.sleep(2)
        load.stop()
    first = hosts.hosts[0]
    assert code == d.EXIT_AUTO_ROLLED_BACK, err
    assert f"CANARY: {first.instance_id} held back {ANSWERS_5XX}" in err, err
    # The first host is the fleet's canary, its gate run alone through Run Command: no association ran, and the
    # second host never started the bad version.
    assert f"{first.instance_id} is the fleet's canary" in err, err
    assert [run.instance_id for run in runtime.command_runs[commands_before:]] == [first.instance_id]
    assert "starting " in runtime.command_runs[-1].output and runtime.command_runs[-1].exit_code == 4
    assert not [run for run in state_manager.runs[runs_before:] if run.gate == "activate"]
    # A few requests for a few seconds: the canary's share until the judge's minimum, nothing like the alarm's minutes.
    during = load.summary(since="command", until="done")
    failed = [record for record in load.records if record.failed]
    assert 0 < during.failed <= max(20, during.sent // 50), (during.outcomes, failures(load))
    assert max(r.ended for r in failed) - min(r.ended for r in failed) <= 15, [r.ended for r in failed]
    assert {state for _, state in watch.seen} == {"healthy"}, watch.seen
    # The stack, the ledger and the hosts agree on the version that served throughout: the stack never moved, so
    # one entry says it all and there is nothing to roll back.
    activate = ledger(runtime, production).entries()[0]
    assert (activate.gate, activate.to_version, activate.result) == ("activate", ANSWERS_5XX, d.RESULT_ROLLED_BACK)
    assert activate.detail.startswith(f"the canary on {first.instance_id} judged {ANSWERS_5XX} bad"), activate.detail
    assert "the stack was not updated (ImageTag is still 1.0.0): 1.0.0 serves on every host" in activate.detail
    assert stack_parameters(runtime, production)[d.IMAGE_TAG] == "1.0.0"
    assert {hosts.serving_version(box) for box in hosts.hosts} == {"1.0.0"}
    assert hosts.reports()[first.instance_id]["canary"]["verdict"] == "bad"

    # A good release passes the same canary on each host, with nothing failed.
    code, _, err = liftoff(runtime, "stage", "1.1.0")
    assert code == 0, err
    with LoadRun(f"{hosts.balancer.url}/version", rate=40, duration=600, timeout=PATIENT_CLIENT_SECONDS) as load:
        time.sleep(1)
        code, doc, err = liftoff(runtime, "activate", "1.1.0")
        time.sleep(1)
        load.stop()
    assert code == 0, err
    assert load.summary().failed == 0, (load.summary().outcomes, failures(load))
    # In waves: the canary host alone first, then the stack, a quarter of the fleet at a time.
    assert f"{first.instance_id}: passed alone, serves 1.1.0 ready" in err, err
    assert stack_parameters(runtime, production)[d.ACTIVATE_CONCURRENCY] == d.IN_WAVES
    assert {report["canary"]["verdict"] for report in hosts.reports().values()} == {"good"}
    assert_records_agree(runtime, production, hosts, active="1.1.0", staged="1.1.0",
                         newest=("activate", "1.1.0", d.RESULT_SUCCEEDED))


# --- status tells each host's truth ---------------------------------------------------------------


def test_status_after_a_reboot_and_after_a_killed_host_tells_each_hosts_truth(runtime, hosts, production):
    active = stack_parameters(runtime, production)[d.IMAGE_TAG]
    code, doc, err = liftoff(runtime, "status")
    assert code == 0, err
    back = doc["rollback_target"]
    before = {report["instance"]: report for report in doc["host_reports"]}
    # Right after a switch, the version before it is warm on both hosts; status counts a host warm for the rollback
    # target only where that host reports it.
    warm_before = {report["warm"] for report in before.values()}
    assert len(warm_before) == 1 and "" not in warm_before, before
    expected = sorted(instance for instance, report in before.items() if report["warm"] == back)
    assert (sorted(doc["warm"]["hosts"]) if doc["warm"] else []) == expected, (doc["warm"], before)

    rebooted = hosts.hosts[1]
    hosts.daemon.run("restart", "--time", "60", rebooted.container, timeout=120)
    wait_until(lambda: hosts.serving_version(rebooted) == active, 180, f"{rebooted.instance_id} did not serve {active} after a reboot")
    wait_until(lambda: hosts.reports()[rebooted.instance_id]["reported_at"] > before[rebooted.instance_id]["reported_at"],
               180, "no report after the reboot")
    hosts.wait_in_service()
    code, doc, err = liftoff(runtime, "status")
    assert code == 0, err
    reports = {report["instance"]: report for report in doc["host_reports"]}
    # Nothing warm survived the reboot (nor its retire timer), and status does not claim it did; the last gate did.
    assert (reports[rebooted.instance_id]["active"], reports[rebooted.instance_id]["warm"]) == (active, "")
    after = hosts.reports()[rebooted.instance_id]
    assert (after["ready"], after["warm_until"], after["last_gate"]) == (True, "", before[rebooted.instance_id]["last_gate"])
    assert doc["warm"] is None or rebooted.instance_id not in doc["warm"]["hosts"], doc["warm"]
    assert "a rollback to it now is a traffic flip on each host" not in err, err

    killed = hosts.hosts[0]
    hosts.daemon.run("kill", killed.container, timeout=60)
    code, doc, err = liftoff(runtime, "status")
    assert code == 0, err
    health = {host["instance"]: (host["state"], host["health"]) for host in doc["hosts"]}
    assert health[killed.instance_id] != ("InService", "Healthy"), health
    assert health[rebooted.instance_id] == ("InService", "Healthy"), health
    assert f"host {killed.instance_id} InService Healthy" not in err
    # The records still agree: status wrote nothing, and the stack names what the living host serves.
    book = ledger(runtime, production)
    assert book.read_lock() is None
    entry = book.entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("activate", active, d.RESULT_SUCCEEDED)
    assert stack_parameters(runtime, production)[d.IMAGE_TAG] == active == hosts.serving_version(rebooted)
