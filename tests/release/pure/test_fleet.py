"""Pure decisions from the hosts' own reports (release/pure/fleet.py): verified only when every in-service host
holds what the stack asks; a failed host gate is final and named; a report that is missing or unreadable
is never taken for agreement."""
from __future__ import annotations

from datetime import datetime

from release.pure import fleet as f


def report(instance, **values):
    base = {"instance": instance, "reported_at": "2026-12-02T10:00:00Z", "active": "1.0.0", "active_slot": "a", "ready": True,
            "staged": "1.0.0", "staged_present": True, "warm": "", "warm_until": "",
            "last_gate": {"gate": "activate", "version": "1.0.0", "result": "succeeded", "reason": "", "at": "2026-12-02T10:00:00Z"}}
    return {**base, **values}


def hosts(*reports, in_service=None):
    by_id = {r["instance"]: r for r in reports if r is not None}
    return f.truths(in_service or list(by_id), by_id)


def test_stage_is_verified_only_when_every_host_has_the_image():
    fleet = hosts(report("i-1", staged="1.1.0"), report("i-2", staged="1.1.0"))
    verdict = f.judge("stage", "1.1.0", fleet, desired_count=2)
    assert (verdict.verified, verdict.final) == (True, False)
    assert verdict.message == "every host in service (2) reports 1.1.0 staged (image present)"
    gone = hosts(report("i-1", staged="1.1.0"), report("i-2", staged="1.1.0", staged_present=False))
    verdict = f.judge("stage", "1.1.0", gone, desired_count=2)
    assert (verdict.verified, verdict.final, verdict.disagreeing) == (False, False, ("i-2",))
    assert "i-2: 1.1.0 staged but its image is not in the host's Docker" in verdict.message
    # A host's `running` report is made beside its gate's work: it may show the tag before its image is in.
    pulling = hosts(report("i-1", staged="1.1.0"), report("i-2", staged="1.1.0", staged_present=False, last_gate={
        "gate": "stage", "version": "1.1.0", "result": "running", "reason": "", "at": "2026-12-02T10:00:01Z"}))
    verdict = f.judge("stage", "1.1.0", pulling, desired_count=2)
    assert "i-2: 1.1.0 staged but its image is not in the host's Docker (its stage gate is running since 2026-12-02T10:00:01Z)" \
        in verdict.message


def test_a_failed_stage_gate_is_final_and_names_the_host_and_the_reason():
    full = report("i-2", staged="1.0.0", last_gate={"gate": "stage", "version": "1.1.0", "result": "failed",
                                                    "reason": "docker pull: no space left on device", "at": "t"})
    verdict = f.judge("stage", "1.1.0", hosts(report("i-1", staged="1.1.0"), full), desired_count=2)
    assert (verdict.verified, verdict.final) == (False, True)
    assert verdict.message == "i-2: stage gate of 1.1.0 failed: docker pull: no space left on device"
    # A failure for another version is history, not a verdict on this one.
    older = report("i-2", staged="1.0.0", last_gate={"gate": "stage", "version": "0.9.0", "result": "failed", "reason": "x", "at": "t"})
    assert f.judge("stage", "1.1.0", hosts(report("i-1", staged="1.1.0"), older), desired_count=2).final is False


def test_activate_needs_every_host_active_and_ready():
    ready = hosts(report("i-1", active="1.1.0"), report("i-2", active="1.1.0"))
    assert f.judge("activate", "1.1.0", ready, desired_count=2).verified
    not_ready = hosts(report("i-1", active="1.1.0"), report("i-2", active="1.1.0", ready=False))
    verdict = f.judge("rollback", "1.1.0", not_ready, desired_count=2)
    assert not verdict.verified and "i-2: serves 1.1.0 but it does not answer ready" in verdict.message
    running = report("i-2", active="1.0.0", last_gate={"gate": "activate", "version": "1.1.0", "result": "running", "reason": "", "at": "T"})
    verdict = f.judge("activate", "1.1.0", hosts(report("i-1", active="1.1.0"), running), desired_count=2)
    assert verdict.message == ("1 of 2 host(s) report 1.1.0 active and ready; i-2: serves 1.0.0, not 1.1.0 "
                               "(its activate gate is running since T)")
    assert not verdict.final


def test_a_missing_or_unreadable_report_is_never_agreement():
    fleet = f.truths(["i-1", "i-2", "i-3"], {"i-1": report("i-1", active="1.1.0"), "i-2": {"instance": "i-2", "error": "not JSON"}})
    verdict = f.judge("activate", "1.1.0", fleet, desired_count=3)
    assert verdict.disagreeing == ("i-2", "i-3")
    assert "i-2: not JSON" in verdict.message and "i-3: no report from this host yet" in verdict.message


def test_fewer_hosts_than_desired_is_not_verified_and_reports_of_gone_hosts_do_not_vote():
    by_id = {"i-1": report("i-1", active="1.1.0"), "i-dead": report("i-dead", active="1.0.0")}
    fleet = f.truths(["i-1"], by_id)
    assert [h.instance for h in fleet] == ["i-1"]
    verdict = f.judge("activate", "1.1.0", fleet, desired_count=2)
    assert not verdict.verified and verdict.message == "1 of 2 host(s) in service report 1.1.0 active and ready"


def test_redrive_names_the_hosts_that_disagree():
    fleet = hosts(report("i-1", active="1.1.0"), report("i-2", active="1.0.0"))
    assert [h.instance for h in f.disagreeing("activate", "1.1.0", fleet)] == ["i-2"]
    assert f.redrive_message("activate", "1.1.0", fleet) == ("the stack already names 1.1.0, but 1 of 2 host(s) do not hold it: "
                                                             "i-2: serves 1.0.0, not 1.1.0")
    assert f.disagreeing("activate", "1.0.0", hosts(report("i-1"), report("i-2"))) == []


def test_warm_is_only_where_a_host_reports_it_and_ages_read_on_the_readers_clock():
    fleet = hosts(report("i-1", active="1.1.0", warm="1.0.0", warm_until="2026-12-02T10:05:00Z"), report("i-2", active="1.1.0"))
    assert [h.instance for h in f.warm_hosts(fleet, "1.0.0")] == ["i-1"]
    assert f.warm_hosts(fleet, None) == []
    assert f.age_seconds("2026-12-02T10:00:00Z", 1796205630.0) == 30.0
    assert f.age_seconds("not a time", 0.0) is None


def test_a_stand_in_is_said_wherever_its_verdict_is_shown():
    fleet = hosts(report("emulated-host-0", active="1.1.0", stand_in="derived from the stack's record"))
    assert f.judge("activate", "1.1.0", fleet, desired_count=1).message.endswith("[stand-in: derived from the stack's record]")


def test_a_canary_verdict_is_a_failed_activate_gate_for_the_tag_whose_reason_says_canary():
    bad = {"gate": "activate", "version": "1.1.0", "result": "failed", "at": "t",
           "reason": "canary: the new slot answered 4 of 20 requests with errors (20%), the old slot 0 of 180 (0%)"}
    fleet = hosts(report("i-1", active="1.1.0"), report("i-2", last_gate=bad), report("i-3", last_gate={**bad, "reason": "canary: x"}))
    assert f.canary_verdict("1.1.0", fleet) == (
        "i-2", "the new slot answered 4 of 20 requests with errors (20%), the old slot 0 of 180 (0%)")
    # The same verdict is final for the fleet's judgement too, named with the host.
    assert f.judge("activate", "1.1.0", fleet, desired_count=3).final


def test_no_canary_verdict_from_another_failure_another_version_a_stage_gate_or_a_canary_block_alone():
    failed = {"gate": "activate", "version": "1.1.0", "result": "failed", "reason": "readiness: /readyz never answered 200", "at": "t"}
    assert f.canary_verdict("1.1.0", hosts(report("i-1", last_gate=failed))) is None
    older = {**failed, "version": "1.0.9", "reason": "canary: bad"}
    assert f.canary_verdict("1.1.0", hosts(report("i-1", last_gate=older))) is None
    staged = {**failed, "gate": "stage", "reason": "canary: bad"}
    assert f.canary_verdict("1.1.0", hosts(report("i-1", last_gate=staged))) is None
    # A report's canary block is what the judge measured; only the gate's own result is the verdict.
    measured = {"version": "1.1.0", "verdict": "bad", "reason": "x", "requests": 20, "errors": 4, "new_ms": 12, "old_ms": 10}
    assert f.canary_verdict("1.1.0", hosts(report("i-1", active="1.1.0", canary=measured))) is None
    assert f.canary_verdict("1.1.0", hosts(None, in_service=["i-1"])) is None  # no report: nothing known, no verdict


def test_a_reports_canary_block_is_read_as_text_and_is_absent_on_older_hosts():
    measured = {"version": "1.1.0", "verdict": "good", "reason": "", "requests": 42, "errors": 0, "new_ms": 12, "old_ms": 11}
    [host] = hosts(report("i-1", canary=measured))
    assert host.canary == {"version": "1.1.0", "verdict": "good", "reason": "", "requests": "42", "errors": "0",
                           "new_ms": "12", "old_ms": "11"}
    assert hosts(report("i-1"))[0].canary == {}


def test_one_wave_only_where_every_host_in_service_reports_the_target_warm():
    warm = report("i-1", active="1.1.0", warm="1.0.0")
    assert f.one_wave("rollback", "1.0.0", hosts(warm, report("i-2", active="1.1.0", warm="1.0.0")))
    assert f.one_wave("activate", "1.0.0", hosts(warm))
    # One host that would have to start it (or pull it), or says nothing, keeps one host at a time.
    assert not f.one_wave("rollback", "1.0.0", hosts(warm, report("i-2", active="1.1.0")))
    assert not f.one_wave("rollback", "1.0.0", [*hosts(warm), f.parse_report("i-2", None)])
    assert not f.one_wave("rollback", "1.0.0", [])
    assert not f.one_wave("rollback", "1.0.0", None)
    assert not f.one_wave("stage", "1.0.0", hosts(warm))


def test_the_fleets_canary_is_the_first_ready_host_not_holding_the_tag_on_a_fleet_that_reports_for_itself():
    fleet = hosts(report("i-1"), report("i-2"), report("i-3"))
    assert f.fleet_canary("activate", "1.1.0", fleet, canary_on=True) == "i-1"
    # A host already on the tag (a retry) or not ready is not the canary: the next one is.
    assert f.fleet_canary("activate", "1.1.0", hosts(report("i-1", active="1.1.0"), report("i-2", ready=False),
                                                     report("i-3")), canary_on=True) == "i-3"
    assert f.fleet_canary("activate", "1.1.0", hosts(report("i-1", active="1.1.0"), report("i-2", active="1.1.0")),
                          canary_on=True) is None


def test_no_fleet_canary_where_the_rest_could_not_follow_in_waves_safely():
    two = hosts(report("i-1"), report("i-2"))
    assert f.fleet_canary("activate", "1.1.0", hosts(report("i-1")), canary_on=True) is None  # one host: its own canary
    assert f.fleet_canary("activate", "1.1.0", two, canary_on=False) is None  # no host canary: one at a time
    assert f.fleet_canary("rollback", "1.1.0", two, canary_on=True) is None  # a known version: one at a time, or one wave
    assert f.fleet_canary("stage", "1.1.0", two, canary_on=True) is None
    assert f.fleet_canary("activate", "1.1.0", None, canary_on=True) is None
    # A host that says nothing, or a harness answering for one, leaves the fleet unknown: one at a time.
    assert f.fleet_canary("activate", "1.1.0", [*hosts(report("i-1")), f.parse_report("i-2", None)], canary_on=True) is None
    assert f.fleet_canary("activate", "1.1.0", hosts(report("i-1"), report("i-2", stand_in="emulator")), canary_on=True) is None


def test_a_failure_from_before_this_switch_is_not_final_one_after_it_is():
    """The host failed 1.1.0 in an earlier attempt (10:00); this switch began at 10:05 and its gate has not run
    there yet: waiting, not a verdict. A failure at 10:06 is this switch's own: final."""
    began = datetime.fromisoformat("2026-12-02T10:05:00+00:00").timestamp()
    canary = {"gate": "activate", "version": "1.1.0", "result": "failed", "reason": "canary: 5xx", "at": "2026-12-02T10:00:00Z"}
    earlier = hosts(report("i-1", last_gate=canary), report("i-2", active="1.1.0"))
    verdict = f.judge("activate", "1.1.0", earlier, desired_count=2, since=began)
    assert (verdict.verified, verdict.final) == (False, False)
    assert "i-1: its activate gate of 1.1.0 failed at 2026-12-02T10:00:00Z, before this switch; waiting for it" in verdict.message
    assert f.canary_verdict("1.1.0", earlier, since=began) is None
    assert f.judge("activate", "1.1.0", earlier, desired_count=2).final  # without `since`: every failure counts
    now = hosts(report("i-1", last_gate={**canary, "at": "2026-12-02T10:06:00Z"}), report("i-2", active="1.1.0"))
    assert f.judge("activate", "1.1.0", now, desired_count=2, since=began).final
    assert f.canary_verdict("1.1.0", now, since=began) == ("i-1", "5xx")
    # Within the clocks' allowed skew, and with an unreadable time, the failure counts.
    skewed = hosts(report("i-1", last_gate={**canary, "at": "2026-12-02T10:04:57Z"}))
    assert f.judge("activate", "1.1.0", skewed, desired_count=1, since=began).final
    assert f.judge("activate", "1.1.0", hosts(report("i-1", last_gate={**canary, "at": "t"})), desired_count=1, since=began).final
