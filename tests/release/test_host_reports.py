"""The release verbs judge an ec2 stage from what each host reports it holds (release/pure/fleet.py decides,
release/flows/flow.py acts), on the emulated production stage.

The emulator runs no host: `Reporting` is the stand-in runtime (local/runtime.py) on a stack that has the
HostReportPath output (added here where the deployed template does not have it yet), and the tests play
the hosts by writing their reports into moto's SSM parameters, as a host's report script does on AWS.
A host whose gate is asked to run again (`start_association_once`) answers through `on_redrive`; the fleet's
canary host, whose activate gate liftoff runs alone through Run Command, through `on_command`.

`Reporting` shows the stack as deployed before activations ran in waves (no ActivateDocumentName output: one host
at a time, the path liftoff still takes on such a stack); `waves = True` shows the current stack.
"""
from __future__ import annotations

import json

import pytest

from release.pure import decisions as d
from release.pure import fleet
from tests.release.helpers import EmulatedRuntime, FakeTime, ReleaseStage


class Reporting(EmulatedRuntime):
    def __init__(self, emulated, **kwargs):
        super().__init__(emulated, **kwargs)
        self.path = f"/liftoff/{emulated.stack_names['service']}/hosts/"
        self.on_redrive = None
        self.on_activate = None  # called with the stack's ImageTag after an update: the activate association's run
        self.on_command = None  # called with (instance, tag) for a Run Command of the activate document; returns its exit code
        self.commands: list[tuple[str, str, dict]] = []
        self.waves = False

    def stack(self, name):
        stack = super().stack(name)
        if name == self.service_stack:
            outputs = {**stack.outputs, fleet.REPORT_PATH_OUTPUT: stack.outputs.get(fleet.REPORT_PATH_OUTPUT, self.path)}
            if not self.waves:
                outputs.pop(fleet.ACTIVATE_DOCUMENT_OUTPUT, None)
            stack = type(stack)(**{**stack.__dict__, "outputs": outputs})
        return stack

    def send_to_hosts(self, instances, document, parameters, *, timeout, poll, sleep, monotonic):
        results = {}
        for instance in instances:
            self.commands.append((instance, document, parameters))
            code = self.on_command(instance, parameters["ImageTag"][0]) if self.on_command else None
            results[instance] = (code, "", f"host {instance} (test)")
        return results

    def update_parameters(self, name, parameters):
        super().update_parameters(name, parameters)
        if self.on_activate is not None:
            self.on_activate(self.stack(name).parameters["ImageTag"])

    def start_association_once(self, association_id):
        super().start_association_once(association_id)
        if self.on_redrive is not None:
            self.on_redrive(association_id)


@pytest.fixture
def production(deploy_emulated_stage):
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0", "1.1.0"))
    stage = ReleaseStage(deploy_emulated_stage("production", image_tag="1.0.0"))
    runtime = Reporting(stage.emulated)
    return stage, runtime


def instances(stage: ReleaseStage) -> list[str]:
    group = stage.emulated.service_outputs["AutoScalingGroupName"]
    found = stage.emulated.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])
    return [i["InstanceId"] for i in found["AutoScalingGroups"][0]["Instances"]]


def report(stage: ReleaseStage, runtime: Reporting, instance: str, **values) -> None:
    """Write what `instance` reports, as its report script would."""
    value = {"instance": instance, "reported_at": "2026-12-02T10:00:00Z", "active": "1.0.0", "active_slot": "a", "ready": True,
             "staged": "1.0.0", "staged_present": True, "warm": "", "warm_until": "",
             "last_gate": {"gate": "activate", "version": "1.0.0", "result": "succeeded", "reason": "", "at": "2026-12-02T10:00:00Z"},
             **values}
    stage.emulated.client("ssm").put_parameter(Name=runtime.path + instance, Value=json.dumps(value), Type="String", Overwrite=True)


def run(stage, runtime, *argv):
    time = FakeTime()
    return stage.run(*argv, aws=runtime, monotonic=time.monotonic, sleep=time.sleep)


def test_the_adapter_reads_every_report_and_marks_an_unreadable_one(production):
    stage, runtime = production
    first, *_ = instances(stage)
    report(stage, runtime, first, active="1.1.0")
    stage.emulated.client("ssm").put_parameter(Name=runtime.path + "i-garbled", Value="{not json", Type="String")
    found = runtime.host_reports(runtime.path)
    assert found[first]["active"] == "1.1.0" and not found[first].get("stand_in")
    assert found["i-garbled"]["instance"] == "i-garbled" and found["i-garbled"]["error"].startswith(f"unreadable report in {runtime.path}i-garbled")
    # The rest of the group's hosts have no report: the stand-in fills them in, labelled.
    assert all(found[i]["stand_in"] for i in instances(stage)[1:])


def test_a_stage_gate_that_failed_on_a_host_fails_the_verb_naming_it_and_stage_again_reruns_it(production):
    stage, runtime = production
    hosts = instances(stage)
    failed = hosts[-1]
    for instance in hosts:
        report(stage, runtime, instance, staged="1.1.0")
    report(stage, runtime, failed, staged="1.0.0", last_gate={"gate": "stage", "version": "1.1.0", "result": "failed",
                                                            "reason": "docker pull: no space left on device", "at": "t"})
    first = run(stage, runtime, "stage", "1.1.0")
    assert first.code == d.EXIT_UNVERIFIED, first.out + first.err
    assert f"NOT STAGED on every host: {failed}: stage gate of 1.1.0 failed: docker pull: no space left on device" in first.out
    assert stage.parameters()["ImageTag"] == "1.0.0"  # nothing switched
    entry = stage.entries()[0]
    assert (entry.gate, entry.result) == ("stage", d.RESULT_FAILED) and "no space left on device" in entry.detail
    assert "nothing switched (ImageTag is still 1.0.0)" in entry.detail
    # The disk is repaired; stage again runs the gate on the hosts (not "nothing to do"), and the host stages it.
    runtime.on_redrive = lambda association: report(stage, runtime, failed, staged="1.1.0")
    again = run(stage, runtime, "stage", "1.1.0")
    assert again.code == 0, again.out + again.err
    assert runtime.associations_started == [stage.emulated.service_outputs["StageAssociationId"]]
    assert f"the stack already names 1.1.0, but 1 of {len(hosts)} host(s) do not hold it: {failed}: stage gate of 1.1.0 failed" in again.out
    assert f"verified: every host in service ({len(hosts)}) reports 1.1.0 staged (image present)" in again.out
    newest = stage.entries()[0]
    assert (newest.gate, newest.from_version, newest.to_version, newest.result) == ("stage", "1.1.0", "1.1.0", d.RESULT_SUCCEEDED)
    assert newest.detail.startswith("re-drive: ")
    assert stage.ledger().read_lock() is None
    # Every host agrees now: only then is it "nothing to do".
    third = run(stage, runtime, "stage", "1.1.0")
    assert third.code == 0 and f"nothing to do: 1.1.0 is already staged on {stage.emulated.stack_names['service']}, and every host in service ({len(hosts)}) reports it" in third.out
    assert len(runtime.associations_started) == 1


def test_activate_of_the_active_version_converges_a_host_that_disagrees(production):
    stage, runtime = production
    hosts = instances(stage)
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    assert run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch").code == 0
    interrupted = hosts[0]
    report(stage, runtime, interrupted, active="1.0.0", staged="1.1.0",
           last_gate={"gate": "activate", "version": "1.1.0", "result": "failed", "reason": "killed", "at": "t"})
    runtime.on_redrive = lambda association: report(stage, runtime, interrupted, active="1.1.0", staged="1.1.0")
    again = run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert again.code == 0, again.out + again.err
    assert runtime.associations_started == [stage.emulated.service_outputs["ActivateAssociationId"]]
    assert f"{interrupted}: activate gate of 1.1.0 failed: killed" in again.out
    assert "verified: every host in service" in again.out
    # The re-drive moved nothing on the stack: a rollback still goes back to 1.0.0, not to 1.1.0 itself.
    assert "rollback goes to 1.0.0" in run(stage, runtime, "status").out


def test_a_redrive_whose_host_stays_behind_ends_unverified_naming_it(production):
    stage, runtime = production
    behind = instances(stage)[0]
    report(stage, runtime, behind, active="0.9.0")
    result = run(stage, runtime, "activate", "1.0.0", "--yes", "--no-watch", "--verify-timeout", "0")
    assert result.code == d.EXIT_UNVERIFIED, result.out + result.err
    assert f"NOT VERIFIED: " in result.out and f"{behind}: serves 0.9.0, not 1.0.0" in result.out
    assert (stage.entries()[0].result, stage.ledger().read_lock()) == (d.RESULT_UNVERIFIED, None)


def test_activate_is_verified_only_when_every_host_reports_it_ready(production):
    stage, runtime = production
    hosts = instances(stage)
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    report(stage, runtime, hosts[0], active="1.1.0", ready=False)
    result = run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch", "--verify-timeout", "0")
    assert result.code == d.EXIT_UNVERIFIED
    assert f"{hosts[0]}: serves 1.1.0 but it does not answer ready" in result.out


def test_status_shows_each_hosts_truth_and_warm_only_where_a_host_reports_it(production):
    stage, runtime = production
    hosts = instances(stage)
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    assert run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch").code == 0
    report(stage, runtime, hosts[0], active="1.1.0", active_slot="b", staged="1.1.0", warm="1.0.0", warm_until="2026-12-02T10:05:00Z",
           last_gate={"gate": "activate", "version": "1.1.0", "result": "succeeded", "reason": "", "at": "t"})
    status = run(stage, runtime, "status")
    assert status.code == 0, status.err
    assert (f"reports active 1.1.0 (slot b, ready); staged 1.1.0; warm 1.0.0 until 2026-12-02T10:05:00Z; "
            "last gate activate 1.1.0 succeeded; reported ") in status.out
    if len(hosts) > 1:
        assert f"warm     1.0.0 on 1 of {len(hosts)} host(s) ({hosts[0]} until 2026-12-02T10:05:00Z): a rollback to it now is a traffic flip on those hosts" in status.out
        assert "[stand-in: made up by local/runtime.py" in status.out  # the hosts nobody wrote a report for
    for instance in hosts:
        report(stage, runtime, instance, active="1.1.0", staged="1.1.0")  # a reboot: nothing warm anywhere
    status = run(stage, runtime, "status")
    assert "warm     nothing reported warm by the hosts; a rollback to 1.0.0 starts it again" in status.out
    assert "a traffic flip" not in status.out
    doc = run(stage, runtime, "status", "--json").json
    assert {h["instance"] for h in doc["host_reports"]} == set(hosts) and doc["warm"] is None


# --- a canary on the hosts (activation: slots) holds a version back ------------------------------

CANARY_REASON = "the new slot answered 6 of 30 requests with errors (20%), the old slot 1 of 270 (0%)"
CANARY_SEEN = {"version": "1.1.0", "verdict": "bad", "reason": CANARY_REASON, "requests": 30, "errors": 6,
               "new_ms": 41, "old_ms": 38}


def held_back_on(stage, runtime, canary_host, bad="1.1.0", good="1.0.0"):
    """The activate association as State Manager runs it, one host at a time: hosts before `canary_host` switch
    to `bad` (keeping `good` warm), `canary_host`'s canary judges it bad and its gate fails (MaxErrors 0 ends the
    run there: the rest never start it). Activating `good` again puts every host back on it."""
    hosts = instances(stage)

    def activate(tag):
        if tag == bad:
            for instance in hosts[:hosts.index(canary_host)]:
                report(stage, runtime, instance, active=bad, active_slot="b", staged=bad, warm=good,
                       warm_until="2026-12-02T10:05:00Z",
                       last_gate={"gate": "activate", "version": bad, "result": "succeeded", "reason": "", "at": "t"})
            report(stage, runtime, canary_host, active=good, staged=bad, canary=CANARY_SEEN,
                   last_gate={"gate": "activate", "version": bad, "result": "failed", "reason": "canary: " + CANARY_REASON,
                              "at": "t"})
        elif tag == good:
            for instance in hosts:
                report(stage, runtime, instance, active=good, staged=bad, canary=CANARY_SEEN if instance == canary_host else {},
                       last_gate={"gate": "activate", "version": good, "result": "succeeded", "reason": "", "at": "t"})

    for instance in hosts:
        report(stage, runtime, instance, active=good, staged=bad)
    runtime.on_activate = activate
    return hosts


def watched(stage, runtime, *argv):
    """A run whose clocks only move when it sleeps, so a bake window it wrongly watched would end, not hang."""
    fake = FakeTime()
    return stage.run(*argv, aws=runtime, clock=fake.monotonic, monotonic=fake.monotonic, sleep=fake.sleep)


def test_a_canary_that_judges_the_version_bad_rolls_the_stage_back_automatically_and_says_so(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    canary_host = instances(stage)[-1]
    held_back_on(stage, runtime, canary_host)
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_AUTO_ROLLED_BACK, result.out + result.err
    said = f"CANARY: {canary_host} held back 1.1.0: {CANARY_REASON}"
    assert said in result.out and "rolling back to 1.0.0 automatically" in result.out
    assert result.out.index(said) < result.out.index("rolling back to 1.0.0 automatically")
    assert f"(automatic: the canary on {canary_host} held 1.1.0 back)" in result.out
    assert "bake window" not in result.out and "NOT VERIFIED" not in result.out  # held back: nothing to watch
    # The ledger, the lock and the stack agree: the activation switched the stack and was never verified; the
    # automatic rollback put it back and is verified on every host's own report.
    rollback, activate = stage.entries()[:2]
    assert (activate.gate, activate.from_version, activate.to_version, activate.result) == (
        "activate", "1.0.0", "1.1.0", d.RESULT_UNVERIFIED)
    assert f"{canary_host}: activate gate of 1.1.0 failed: canary: {CANARY_REASON}" in activate.detail
    assert (rollback.gate, rollback.from_version, rollback.to_version, rollback.result) == (
        "rollback", "1.1.0", "1.0.0", d.RESULT_SUCCEEDED)
    assert rollback.detail.startswith(f"automatic rollback: the canary on {canary_host} judged 1.1.0 bad: {CANARY_REASON}")
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.ledger().read_lock() is None
    assert "automatic rollback: the canary on" in run(stage, runtime, "history").out
    status = run(stage, runtime, "status")
    assert (f"canary 1.1.0 bad: {CANARY_REASON} (new slot 30 requests, 6 errors, 41 ms; old slot 38 ms)") in status.out


class AssociationFailsTheUpdate(Reporting):
    """As on AWS: the activate association waits for success (WaitForSuccessTimeoutSeconds), so the canary's failed
    gate fails the stack update and CloudFormation rolls the parameter back itself."""

    def update_parameters(self, name, parameters):
        if self.on_activate is not None:
            self.on_activate(next(p["ParameterValue"] for p in parameters if p["ParameterKey"] == "ImageTag"))
        self._injected = [
            ("UPDATE_IN_PROGRESS", name, "AWS::CloudFormation::Stack", "User Initiated"),
            ("UPDATE_FAILED", "ActivateAssociation", "AWS::SSM::Association", "Association failed on 1 instance(s)"),
            ("UPDATE_ROLLBACK_COMPLETE", name, "AWS::CloudFormation::Stack", ""),
        ]

    def _events(self, name):
        injected = [{"EventId": f"injected-{i}", "LogicalResourceId": logical, "ResourceType": kind, "ResourceStatus": status,
                     "ResourceStatusReason": reason, "Timestamp": None}
                    for i, (status, logical, kind, reason) in enumerate(getattr(self, "_injected", []))]
        return list(reversed(injected)) + super()._events(name)

    def stack(self, name):
        stack = super().stack(name)
        if getattr(self, "_injected", None) and name == self.service_stack:
            stack = type(stack)(**{**stack.__dict__, "status": "UPDATE_ROLLBACK_COMPLETE"})
        return stack


def test_where_cloudformation_rolls_back_on_the_canarys_failure_the_ledger_keeps_the_canarys_reason(production):
    stage, reporting = production
    assert run(stage, reporting, "stage", "1.1.0").code == 0
    runtime = AssociationFailsTheUpdate(stage.emulated)
    canary_host = instances(stage)[0]
    held_back_on(stage, runtime, canary_host)
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_ROLLED_BACK, result.out + result.err
    assert f"CANARY: {canary_host} held back 1.1.0: {CANARY_REASON}" in result.out
    entry = stage.entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("activate", "1.1.0", d.RESULT_ROLLED_BACK)
    assert entry.detail.startswith(f"the canary on {canary_host} judged 1.1.0 bad: {CANARY_REASON}; ActivateAssociation")
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.ledger().read_lock() is None


def test_json_carries_the_canary_and_the_automatic_rollback(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    canary_host = instances(stage)[0]  # the first host: nothing switched anywhere before the canary said no
    held_back_on(stage, runtime, canary_host)
    result = watched(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch", "--json")
    assert result.code == d.EXIT_AUTO_ROLLED_BACK, result.out + result.err
    doc = result.json
    assert doc["canary"] == {"host": canary_host, "reason": CANARY_REASON}
    assert (doc["result"], doc["exit_code"], doc["ok"]) == (d.RESULT_UNVERIFIED, d.EXIT_AUTO_ROLLED_BACK, False)
    assert (doc["auto_rollback"]["result"], doc["auto_rollback"]["to"]) == (d.RESULT_SUCCEEDED, "1.0.0")
    assert f"CANARY: {canary_host} held back 1.1.0" in result.err  # progress goes to stderr under --json


def test_a_rollback_held_back_by_a_canary_is_not_undone_in_turn(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    assert run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch").code == 0
    canary_host = instances(stage)[0]
    held_back_on(stage, runtime, canary_host, bad="1.0.0", good="1.1.0")  # 1.0.0 is no longer warm: a real activation
    result = watched(stage, runtime, "rollback", "--yes")
    assert result.code == d.EXIT_UNVERIFIED, result.out + result.err
    assert f"NOT VERIFIED: {canary_host}: activate gate of 1.0.0 failed: canary: {CANARY_REASON}" in result.out
    assert "automatically" not in result.out and "CANARY:" not in result.out
    assert [(e.gate, e.result) for e in stage.entries()[:2]] == [("rollback", d.RESULT_UNVERIFIED), ("activate", d.RESULT_SUCCEEDED)]
    assert stage.ledger().read_lock() is None


def test_a_gate_that_failed_for_another_reason_is_not_a_canary_verdict(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts = instances(stage)
    runtime.on_activate = lambda tag: report(stage, runtime, hosts[0], staged="1.1.0", last_gate={
        "gate": "activate", "version": "1.1.0", "result": "failed", "reason": "readiness: /readyz never answered 200", "at": "t"})
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_UNVERIFIED, result.out + result.err
    assert "readiness: /readyz never answered 200" in result.out and "automatically" not in result.out
    assert stage.parameters()["ImageTag"] == "1.1.0" and stage.entries()[0].result == d.RESULT_UNVERIFIED


def test_a_redrive_held_back_by_a_canary_rolls_back_to_the_version_the_ledger_says_it_replaced(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    assert run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch").code == 0
    behind = instances(stage)[0]
    # A host that was replaced booted 1.0.0 and disagrees; the gate run again on it meets its canary.
    report(stage, runtime, behind, active="1.0.0", staged="1.1.0")
    runtime.on_redrive = lambda association: report(stage, runtime, behind, active="1.0.0", staged="1.1.0", last_gate={
        "gate": "activate", "version": "1.1.0", "result": "failed", "reason": "canary: " + CANARY_REASON, "at": "t"})
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_AUTO_ROLLED_BACK, result.out + result.err
    assert f"CANARY: {behind} held back 1.1.0: {CANARY_REASON}" in result.out
    assert "rolling back to 1.0.0 automatically" in result.out
    redrive = stage.entries()[1]
    assert (redrive.from_version, redrive.to_version, redrive.result) == ("1.1.0", "1.1.0", d.RESULT_UNVERIFIED)
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.ledger().read_lock() is None


# --- the fleet's canary: one host alone through Run Command, then the rest in waves ------------------------

def fleet_on(stage, runtime, tag="1.1.0"):
    """Every host reports 1.0.0 ready; the stack is the current one (waves). Returns the hosts and a log of what
    ran, in order: ("command", host) for the canary's Run Command, ("association", tag) for the stack's run."""
    runtime.waves = True
    hosts = instances(stage)
    for instance in hosts:
        report(stage, runtime, instance, active="1.0.0", staged=tag)
    ran = []

    def switched(instance):
        report(stage, runtime, instance, active=tag, active_slot="b", staged=tag, warm="1.0.0",
               warm_until="2026-12-02T10:05:00Z",
               last_gate={"gate": "activate", "version": tag, "result": "succeeded", "reason": "", "at": "t"})

    def association(value):
        ran.append(("association", value))
        for instance in hosts:
            switched(instance)

    def command(instance, value):
        ran.append(("command", instance))
        switched(instance)
        return 0

    runtime.on_activate, runtime.on_command = association, command
    return hosts, ran


def test_an_activation_on_a_fleet_runs_the_canary_host_alone_first_then_the_rest_a_quarter_at_a_time(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)
    result = run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == 0, result.out + result.err
    assert ran == [("command", hosts[0]), ("association", "1.1.0")]  # the stack moved only after the canary passed
    document = stage.emulated.service_outputs[fleet.ACTIVATE_DOCUMENT_OUTPUT]
    assert runtime.commands == [(hosts[0], document, {"ImageTag": ["1.1.0"]})]
    assert stage.parameters()[d.ACTIVATE_CONCURRENCY] == d.IN_WAVES
    assert f"{hosts[0]} is the fleet's canary: its gate runs alone first, then the rest 25% of the fleet at a time" in result.out
    assert f"{hosts[0]}: passed alone, serves 1.1.0 ready" in result.out
    assert f"verified: every host in service ({len(hosts)}) reports 1.1.0 active and ready" in result.out
    assert stage.entries()[0].result == d.RESULT_SUCCEEDED


def test_a_release_the_fleets_canary_judges_bad_never_reaches_the_stack(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)

    def judged_bad(instance, tag):
        ran.append(("command", instance))
        report(stage, runtime, instance, active="1.0.0", staged=tag, canary=CANARY_SEEN,
               last_gate={"gate": "activate", "version": tag, "result": "failed", "reason": "canary: " + CANARY_REASON, "at": "t"})
        return 4

    runtime.on_command = judged_bad
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_AUTO_ROLLED_BACK, result.out + result.err
    assert ran == [("command", hosts[0])]  # no association ran: the other hosts never started it
    assert f"CANARY: {hosts[0]} held back 1.1.0: {CANARY_REASON}" in result.out
    assert "rolling back" not in result.out and "bake window" not in result.out  # nothing moved, nothing to undo
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.parameters()[d.ACTIVATE_CONCURRENCY] == d.ONE_HOST_AT_A_TIME
    activate, staged = stage.entries()[:2]
    assert (activate.gate, activate.to_version, activate.result) == ("activate", "1.1.0", d.RESULT_ROLLED_BACK)
    assert activate.detail.startswith(f"the canary on {hosts[0]} judged 1.1.0 bad: {CANARY_REASON}; the stack was not "
                                      "updated (ImageTag is still 1.0.0): 1.0.0 serves on every host")
    assert staged.gate == "stage" and stage.ledger().read_lock() is None


def test_a_canary_host_whose_gate_fails_for_another_reason_stops_the_release_before_the_stack(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)
    runtime.on_command = lambda instance, tag: (report(stage, runtime, instance, active="1.0.0", staged=tag, last_gate={
        "gate": "activate", "version": tag, "result": "failed", "reason": "readiness: /readyz never answered 200", "at": "t"}), 1)[1]
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_ROLLED_BACK, result.out + result.err
    assert "CANARY:" not in result.out and ran == []
    assert (f"NOT SWITCHED: the activate gate of 1.1.0 failed on the fleet's canary host: {hosts[0]}: activate gate of "
            "1.1.0 failed: readiness: /readyz never answered 200; the stack was not updated") in result.out
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.entries()[0].result == d.RESULT_FAILED


def test_a_canary_host_left_serving_the_tag_without_a_passed_gate_is_recorded_as_such(production):
    """Its gate timed out after the flip (no answer from Run Command): the host runs 1.1.0, the stack names 1.0.0."""
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, _ = fleet_on(stage, runtime)
    runtime.on_command = lambda instance, tag: report(stage, runtime, instance, active=tag, staged=tag, last_gate={
        "gate": "activate", "version": tag, "result": "running", "reason": "", "at": "t"})
    result = watched(stage, runtime, "activate", "1.1.0", "--yes")
    assert result.code == d.EXIT_UNVERIFIED, result.out + result.err
    entry = stage.entries()[0]
    assert entry.result == d.RESULT_FAILED and f"{hosts[0]}, the fleet's canary host, serves 1.1.0" in entry.detail
    assert "`liftoff activate 1.0.0 --stage production` converges it" in entry.detail
    assert stage.parameters()["ImageTag"] == "1.0.0"


def activated_in_waves(stage, runtime) -> tuple[list[str], list]:
    """1.1.0 activated on the fleet (its canary host first): every host serves it with 1.0.0 warm."""
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)
    assert run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch").code == 0
    ran.clear()
    runtime.commands.clear()
    return hosts, ran


def told_after(stage, runtime, serving: dict[str, str]) -> dict:
    """After a failure path: the lock is free, and `status` shows what each host itself reports serving."""
    assert stage.ledger().read_lock() is None
    doc = run(stage, runtime, "status", "--json").json
    assert doc["lock"] is None
    assert {host["instance"]: host["active"] for host in doc["host_reports"]} == serving
    return doc


def flipped_back(stage, runtime, instance: str) -> None:
    report(stage, runtime, instance, active="1.0.0", active_slot="a", staged="1.1.0", warm="1.1.0",
           warm_until="2026-12-02T10:10:00Z",
           last_gate={"gate": "activate", "version": "1.0.0", "result": "succeeded", "reason": "", "at": "t"})


def test_a_warm_rollback_flips_every_host_at_once_through_run_command_before_the_stack_moves(production):
    stage, runtime = production
    hosts, ran = activated_in_waves(stage, runtime)

    def flip(instance, tag):
        ran.append(("command", instance))
        flipped_back(stage, runtime, instance)
        return 0

    runtime.on_command, runtime.on_activate = flip, lambda tag: ran.append(("association", tag))
    result = run(stage, runtime, "rollback", "--yes")
    assert result.code == 0, result.out + result.err
    # No fleet canary (going back to what served a moment ago); every host flipped, then the stack followed.
    assert ran == [*(("command", host) for host in hosts), ("association", "1.0.0")]
    document = stage.emulated.service_outputs[fleet.ACTIVATE_DOCUMENT_OUTPUT]
    assert runtime.commands == [(host, document, {"ImageTag": ["1.0.0"]}) for host in hosts]
    assert stage.parameters()["ImageTag"] == "1.0.0" and stage.parameters()[d.ACTIVATE_CONCURRENCY] == d.EVERY_HOST_AT_ONCE
    assert f"every host holds 1.0.0 warm: all {len(hosts)} flip at once (Run Command), then the stack follows" in result.out
    assert "every host serves 1.0.0 again" in result.out
    assert f"verified: every host in service ({len(hosts)}) reports 1.0.0 active and ready" in result.out
    entry = stage.entries()[0]
    assert (entry.gate, entry.to_version, entry.result) == ("rollback", "1.0.0", d.RESULT_SUCCEEDED)


def test_a_host_whose_warm_flip_fails_runs_its_gate_with_the_stack_one_host_at_a_time(production):
    stage, runtime = production
    hosts, ran = activated_in_waves(stage, runtime)
    stuck = hosts[-1]

    def flip(instance, tag):
        if instance != stuck:
            flipped_back(stage, runtime, instance)
            return 0
        report(stage, runtime, instance, active="1.1.0", active_slot="b", staged="1.1.0", warm="1.0.0", last_gate={
            "gate": "activate", "version": "1.0.0", "result": "failed", "reason": "1.0.0 is live but not ready", "at": "t"})
        return 1

    def association(tag):
        ran.append(("association", tag))
        flipped_back(stage, runtime, stuck)  # its gate, run again, started 1.0.0 the ordinary way

    runtime.on_command, runtime.on_activate = flip, association
    result = run(stage, runtime, "rollback", "--yes")
    assert result.code == 0, result.out + result.err
    assert f"{stuck}: its warm flip did not pass (exit 1: host {stuck} (test)); its gate runs again with the stack" in result.out
    # The stack follows one host at a time: the host that did not flip starts the version, others find it there.
    assert stage.parameters()[d.ACTIVATE_CONCURRENCY] == d.ONE_HOST_AT_A_TIME
    assert f"{d.ACTIVATE_CONCURRENCY} {d.IN_WAVES} -> {d.ONE_HOST_AT_A_TIME}" in result.out
    assert ran == [("association", "1.0.0")] and stage.entries()[0].result == d.RESULT_SUCCEEDED
    assert told_after(stage, runtime, {host: "1.0.0" for host in hosts})["active"] == "1.0.0"


def test_a_rollback_stopped_during_its_warm_flip_records_the_hosts_and_the_unmoved_stack(production):
    stage, runtime = production
    hosts, ran = activated_in_waves(stage, runtime)

    def interrupted(instance, tag):
        raise KeyboardInterrupt

    runtime.on_command = interrupted
    result = run(stage, runtime, "rollback", "--yes")
    assert result.code == 130, result.out + result.err
    said = result.out + result.err
    assert f"ImageTag is still 1.1.0, but {', '.join(hosts)} (every host) were flipping back to the warm 1.0.0" in said
    entry = stage.entries()[0]
    assert entry.result == d.RESULT_INTERRUPTED and f"the stack was not updated, but {', '.join(hosts)}" in entry.detail
    assert "`liftoff activate 1.1.0 --stage production` converges them" in entry.detail
    assert stage.parameters()["ImageTag"] == "1.1.0" and ran == [] and stage.ledger().read_lock() is None
    # Nothing flipped (the command never reached a host): every host says so, and history shows the interruption.
    assert told_after(stage, runtime, {host: "1.1.0" for host in hosts})["active"] == "1.1.0"
    assert "interrupted" in run(stage, runtime, "history").out


def test_an_update_refused_after_the_warm_flip_says_which_hosts_already_serve_the_version(production):
    from botocore.exceptions import ClientError

    stage, runtime = production
    hosts, _ = activated_in_waves(stage, runtime)
    runtime.on_command = lambda instance, tag: (flipped_back(stage, runtime, instance), 0)[1]

    def refused(name, parameters):
        raise ClientError({"Error": {"Code": "ValidationError", "Message": "Stack is in UPDATE_IN_PROGRESS state"}},
                          "UpdateStack")

    runtime.update_parameters = refused
    result = run(stage, runtime, "rollback", "--yes")
    assert result.code == d.EXIT_AWS, result.out + result.err
    entry = stage.entries()[0]
    assert entry.result == d.RESULT_FAILED and "nothing changed" not in entry.detail
    assert (f"the stack is unchanged, but {', '.join(hosts)} already serve 1.0.0 (flipped back first): "
            "`liftoff activate 1.1.0 --stage production` puts them back") in entry.detail
    # The stack still names 1.1.0; each host's own report says it serves 1.0.0.
    assert told_after(stage, runtime, {host: "1.0.0" for host in hosts})["active"] == "1.1.0"


def test_an_update_refused_after_the_canary_host_passed_says_that_host_already_serves_it(production):
    from botocore.exceptions import ClientError

    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)

    def refused(name, parameters):
        raise ClientError({"Error": {"Code": "ValidationError", "Message": "Stack is in UPDATE_IN_PROGRESS state"}},
                          "UpdateStack")

    runtime.update_parameters = refused
    result = run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == d.EXIT_AWS, result.out + result.err
    assert ran == [("command", hosts[0])]
    entry = stage.entries()[0]
    assert entry.result == d.RESULT_FAILED and "nothing changed" not in entry.detail
    assert (f"the stack is unchanged, but {hosts[0]} (the fleet's canary host) already serves 1.1.0: "
            "`liftoff activate 1.0.0 --stage production` puts it back") in entry.detail


def test_a_release_stopped_while_the_canary_host_runs_alone_records_that_host_and_the_unmoved_stack(production):
    stage, runtime = production
    assert run(stage, runtime, "stage", "1.1.0").code == 0
    hosts, ran = fleet_on(stage, runtime)

    def interrupted(instance, tag):
        report(stage, runtime, instance, active="1.0.0", staged=tag, last_gate={
            "gate": "activate", "version": tag, "result": "running", "reason": "", "at": "t"})
        raise KeyboardInterrupt

    runtime.on_command = interrupted
    result = run(stage, runtime, "activate", "1.1.0", "--yes", "--no-watch")
    assert result.code == 130, result.out + result.err
    said = result.out + result.err
    assert f"ImageTag is still 1.0.0, but {hosts[0]} (the fleet's canary host) was running the activate gate of 1.1.0 alone" in said
    entry = stage.entries()[0]
    assert entry.result == d.RESULT_INTERRUPTED and f"the stack was not updated, but {hosts[0]}" in entry.detail
    assert stage.parameters()["ImageTag"] == "1.0.0" and ran == [] and stage.ledger().read_lock() is None
