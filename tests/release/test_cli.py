"""Every verb of `liftoff` against the staging stage deployed in moto from the app's own templates.

The stage starts with 1.0.0 active and staged, images 1.0.0 and 1.1.0 pushed and scanned (moto's
default scan result: one HIGH finding). Where moto cannot show a behaviour the adapter stand-ins in
helpers.py say what they replace; the decisions, the ledger and the lock always run for real.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import pytest

from release.pure import decisions as d
from release.adapters.aws import Aws
from tests.helpers.synth import REPO
from release.adapters.ledger import Ledger
from tests.release.helpers import Busy, EmulatedRuntime, FakeTime, RollsBack, Tty

RELEASE = ("stage", "activate", "rollback")


def push(stage, tag, *, scan=True):
    """Push an image with its own layer (so its digest differs from the others) and scan it."""
    layer = "sha256:" + hashlib.sha256(tag.encode()).hexdigest()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2, "digest": layer}]}
    stage.emulated.client("ecr").put_image(repositoryName=stage.emulated.repository_name, imageManifest=json.dumps(manifest), imageTag=tag)
    if scan:
        stage.scan(tag)


def critical_scan(stage, tag):
    """moto's hook for a custom scan result (the Moto API's ecr scan-finding-results)."""
    from moto.ecr.models import ecr_backends

    ecr_backends["123456789012"][stage.emulated.region].scan_finding_results.append({
        "repositoryName": stage.emulated.repository_name, "imageId": {"imageTag": tag},
        "imageScanStatus": {"status": "COMPLETE"},
        "imageScanFindings": {"findingSeverityCounts": {"CRITICAL": 1, "MEDIUM": 2}},
    })


OTHER_JOB = "arn:aws:sts::123456789012:assumed-role/ci/other-job"


def hold_lock(stage, *, lease=60.0, holder=OTHER_JOB, activity="waiting for CloudFormation"):
    stage.ledger().create_lock(d.Lock(holder=holder, release_id="other", gate="stage", version="1.1.0",
                                      acquired_at="2026-01-01T00:00:00.000Z", record_version="v0", lease_seconds=lease,
                                      activity=activity), epoch=1_800_000_000)


def heartbeat(stage):
    """Another release's heartbeat: a new record version, as its lease thread writes it."""
    beats = iter(range(1, 1_000_000))
    return lambda: stage.ledger().heartbeat("other", record_version=f"v{next(beats)}", at="2026-01-01T00:00:20.000Z", epoch=0)


def released(stage, *tags):
    """Walk 1.0.0 -> each tag through stage + activate."""
    for tag in tags:
        assert stage.run("stage", tag).code == 0
        assert stage.run("activate", tag, "--yes").code == 0


class TestVersions:
    def test_lists_release_images_with_their_marks(self, released_staging):
        run = released_staging.run("versions")
        assert run.code == 0
        lines = {line.split()[0]: line for line in run.out.splitlines()[1:]}
        assert lines["1.0.0"].endswith("ACTIVE STAGED")
        assert "HIGH 1" in lines["1.1.0"] and "ACTIVE" not in lines["1.1.0"]

    def test_previous_is_marked_after_an_activation(self, released_staging):
        released(released_staging, "1.1.0")
        images = {row["tag"]: row for row in released_staging.run("versions", "--json").json["images"]}
        assert images["1.0.0"]["marks"] == ["PREVIOUS"]
        assert images["1.1.0"]["marks"] == ["ACTIVE", "STAGED"]

    def test_json_shape(self, released_staging):
        push(released_staging, "1.2.0")
        doc = released_staging.run("versions", "--json").json
        assert {k: doc[k] for k in ("ok", "exit_code", "command", "stage", "active", "staged", "previous")} == {
            "ok": True, "exit_code": 0, "command": "versions", "stage": "staging", "active": "1.0.0", "staged": "1.0.0", "previous": None,
        }
        assert [row["tag"] for row in doc["images"]] == ["1.2.0", "1.1.0", "1.0.0"]  # newest version first
        row = doc["images"][0]
        assert set(row) == {"tag", "digest", "pushed_at", "size_bytes", "scan_status", "scan_findings", "marks"}
        assert row["digest"].startswith("sha256:") and row["scan_status"] == "COMPLETE" and row["scan_findings"] == {"HIGH": 1}


class TestStage:
    def test_sets_only_the_staged_tag_prints_events_and_records_it(self, released_staging):
        before = released_staging.parameters()
        run = released_staging.run("stage", "1.1.0")
        assert run.code == 0, run.err
        assert released_staging.parameters() == {**before, "StagedImageTag": "1.1.0"}
        assert "StagedImageTag 1.0.0 -> 1.1.0" in run.out
        assert "staging-service UPDATE_COMPLETE" in run.out  # the stack events, as they came
        (entry,) = released_staging.entries()
        assert (entry.gate, entry.from_version, entry.to_version, entry.result) == ("stage", "1.0.0", "1.1.0", d.RESULT_SUCCEEDED)
        assert entry.who.startswith("arn:aws:") and entry.digest.startswith("sha256:") and entry.duration_seconds is not None
        assert released_staging.ledger().read_lock() is None  # released in `finally`

    def test_staging_the_staged_version_is_a_noop_and_recorded(self, released_staging):
        before = released_staging.parameters()
        run = released_staging.run("stage", "1.0.0")
        assert run.code == 0 and "already staged" in run.out
        (entry,) = released_staging.entries()
        assert (entry.gate, entry.to_version, entry.result) == ("stage", "1.0.0", d.RESULT_NOOP)
        assert released_staging.parameters() == before

    @pytest.mark.parametrize("tag, code, says", [
        ("latest", d.EXIT_USAGE, "mutable"),
        ("1.2", d.EXIT_USAGE, "not a release tag"),
        ("1.1.1", d.EXIT_USAGE, "nearest existing tags: 1.1.0"),
    ])
    def test_bad_versions_are_refused_without_a_change(self, released_staging, tag, code, says):
        before = released_staging.parameters()
        run = released_staging.run("stage", tag)
        assert run.code == code and says in run.err
        assert released_staging.parameters() == before
        # A malformed tag is the user's typing (never reaches the stage); an unknown version is asked of the stage and recorded.
        assert [(e.to_version, e.result) for e in released_staging.entries()] == ([(tag, d.RESULT_REFUSED)] if tag == "1.1.1" else [])

    def test_a_critical_finding_is_refused(self, released_staging):
        push(released_staging, "1.2.0", scan=False)
        critical_scan(released_staging, "1.2.0")
        released_staging.scan("1.2.0")
        run = released_staging.run("stage", "1.2.0")
        assert run.code == d.EXIT_REFUSED and "1 CRITICAL" in run.err
        assert released_staging.parameters()["StagedImageTag"] == "1.0.0"
        (entry,) = released_staging.entries()
        assert entry.result == d.RESULT_REFUSED and "1 CRITICAL" in entry.detail and entry.who.startswith("arn:aws:")

    def test_the_severity_threshold_is_an_option(self, released_staging):
        run = released_staging.run("stage", "1.1.0", "--fail-severity", "HIGH")
        assert run.code == d.EXIT_REFUSED and "1 HIGH" in run.err

    def test_an_unscanned_image_is_refused(self, released_staging):
        push(released_staging, "1.2.0", scan=False)
        run = released_staging.run("stage", "1.2.0")
        assert run.code == d.EXIT_REFUSED and "no completed scan" in run.err and "start-image-scan" in run.err

    def test_a_busy_stack_is_refused(self, released_staging):
        run = released_staging.run("stage", "1.1.0", aws=Busy(released_staging.emulated))
        assert run.code == d.EXIT_AWS and "busy (UPDATE_IN_PROGRESS)" in run.err
        assert [e.result for e in released_staging.entries()] == [d.RESULT_REFUSED]
        assert released_staging.ledger().read_lock() is None

    def test_a_live_lock_is_refused_recorded_and_left_alone(self, released_staging):
        hold_lock(released_staging)
        time = FakeTime(on_sleep=heartbeat(released_staging))  # its holder renews it while we watch
        run = released_staging.run("stage", "1.1.0", monotonic=time.monotonic, sleep=time.sleep)
        assert run.code == d.EXIT_REFUSED and "ci/other-job" in run.err and "waiting for CloudFormation" in run.err
        assert released_staging.ledger().read_lock().release_id == "other"
        assert released_staging.parameters()["StagedImageTag"] == "1.0.0"
        (entry,) = released_staging.entries()  # the collision is in the ledger: who, what was asked, why refused
        assert (entry.gate, entry.to_version, entry.result) == ("stage", "1.1.0", d.RESULT_REFUSED)
        assert "lock held" in entry.detail and "ci/other-job" in entry.detail

    @pytest.mark.parametrize("skew", [-3600, 3600])
    def test_a_client_whose_clock_is_an_hour_off_cannot_take_a_live_lock(self, released_staging, skew):
        import time as wall

        hold_lock(released_staging, lease=60)
        time = FakeTime(on_sleep=heartbeat(released_staging))
        run = released_staging.run("activate", "1.1.0", "--yes", "--force", clock=lambda: wall.time() + skew,
                                   monotonic=time.monotonic, sleep=time.sleep)
        assert run.code == d.EXIT_REFUSED and "another release holds the lock" in run.err
        assert released_staging.ledger().read_lock().release_id == "other"
        assert released_staging.parameters()["ImageTag"] == "1.0.0"

    def test_a_lock_unchanged_for_a_full_lease_is_taken_over_and_said_so(self, released_staging):
        hold_lock(released_staging, lease=45)  # its holder died: no heartbeat comes
        time = FakeTime()
        run = released_staging.run("stage", "1.1.0", monotonic=time.monotonic, sleep=time.sleep)
        assert run.code == 0, run.err
        assert "took over the lock of release other" in run.out and "ci/other-job" in run.out
        # It watched one whole lease (on its own clock) before taking it, not less.
        assert 45 <= time.slept < 47
        assert released_staging.ledger().read_lock() is None
        assert released_staging.parameters()["StagedImageTag"] == "1.1.0"

    def test_the_lock_is_checked_before_nothing_to_do(self, released_staging):
        # Another release is switching to 1.0.0's neighbour and may fail: "already staged" must wait for it.
        hold_lock(released_staging)
        time = FakeTime(on_sleep=heartbeat(released_staging))
        run = released_staging.run("stage", "1.0.0", monotonic=time.monotonic, sleep=time.sleep)
        assert run.code == d.EXIT_REFUSED and "nothing to do" not in run.out


class TestConcurrentReleases:
    def test_a_release_started_while_another_runs_is_refused_by_the_lock_and_recorded(self, released_staging):
        """The second release starts from inside the first one's CloudFormation call, while it holds the lock
        and its heartbeat thread renews the lease (real time: a 1.5 s lease, a beat every 0.5 s)."""
        import time as real

        second = {}

        class StartsAnotherRelease(EmulatedRuntime):
            def update_parameters(self, name, parameters):
                second["run"] = released_staging.run("activate", "1.1.0", "--yes", "--force", sleep=real.sleep)
                super().update_parameters(name, parameters)

        first = released_staging.run("stage", "1.1.0", "--lease-seconds", "1.5", aws=StartsAnotherRelease(released_staging.emulated))
        assert first.code == 0, first.err
        assert second["run"].code == d.EXIT_REFUSED and "another release holds the lock: stage 1.1.0" in second["run"].err
        # One release went through; the refused one is recorded as refused; the lock is free again.
        assert [(e.gate, e.result) for e in released_staging.entries()] == [("activate", d.RESULT_REFUSED), ("stage", d.RESULT_SUCCEEDED)]
        assert released_staging.parameters()["ImageTag"] == "1.0.0"
        assert released_staging.ledger().read_lock() is None


class TestActivate:
    def test_switches_the_running_version_and_verifies_it(self, released_staging):
        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", "--yes")
        assert run.code == 0, run.err
        assert released_staging.parameters()["ImageTag"] == "1.1.0"
        assert "verified: 1 task(s) run 1.1.0; 1 target(s) healthy" in run.out
        newest = released_staging.entries()[0]
        assert (newest.gate, newest.from_version, newest.to_version, newest.result, newest.forced) == (
            "activate", "1.0.0", "1.1.0", d.RESULT_SUCCEEDED, False)

    def test_an_unstaged_version_is_refused(self, released_staging):
        run = released_staging.run("activate", "1.1.0", "--yes")
        assert run.code == d.EXIT_REFUSED and "liftoff stage 1.1.0" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.0.0"
        assert [(e.gate, e.result) for e in released_staging.entries()] == [("activate", d.RESULT_REFUSED)]

    def test_force_activates_an_unstaged_version_and_records_it(self, released_staging):
        run = released_staging.run("activate", "1.1.0", "--yes", "--force")
        assert run.code == 0, run.err
        (entry,) = released_staging.entries()
        assert (entry.forced, entry.result, entry.to_version) == (True, d.RESULT_SUCCEEDED, "1.1.0")
        assert "activate (forced)" in released_staging.run("history").out and entry.detail.startswith("forced: not staged; 1 task(s) run 1.1.0")
        parameters = released_staging.parameters()
        assert (parameters["ImageTag"], parameters["StagedImageTag"]) == ("1.1.0", "1.0.0")

    def test_a_refusal_whose_message_names_nothing_still_names_the_call_and_the_caller(self, released_staging):
        from botocore.exceptions import ClientError

        class Refuses(EmulatedRuntime):
            def update_parameters(self, name, parameters):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "UpdateStack")

        run = released_staging.run("stage", "1.1.0", aws=Refuses(released_staging.emulated))
        assert run.code == d.EXIT_AWS
        caller = Refuses(released_staging.emulated).caller_arn()
        assert (f"access denied: {caller} may not call UpdateStack (AWS did not name the action) on a resource AWS did not "
                "name (AccessDenied)") in run.err

    def test_force_on_a_staged_version_is_not_recorded_as_forced(self, released_staging):
        released_staging.run("stage", "1.1.0")
        assert released_staging.run("activate", "1.1.0", "--yes", "--force").code == 0
        assert released_staging.entries()[0].forced is False

    def test_an_update_cloudformation_refuses_is_recorded_as_failed(self, released_staging):
        from botocore.exceptions import ClientError

        principal = "arn:aws:sts::123456789012:assumed-role/staging-deploy/gha"
        stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/staging-service/1a2b"

        class Refuses(EmulatedRuntime):
            def update_parameters(self, name, parameters):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": (
                    f"User: {principal} is not authorized to perform: cloudformation:UpdateStack on resource: {stack} "
                    "because no identity-based policy allows the cloudformation:UpdateStack action")}}, "UpdateStack")

        run = released_staging.run("stage", "1.1.0", aws=Refuses(released_staging.emulated))
        assert run.code == d.EXIT_AWS
        assert f"access denied: {principal} may not call cloudformation:UpdateStack on {stack} (AccessDenied)" in run.err
        assert "grant cloudformation:UpdateStack on the resource to the principal that ran this" in run.err
        (entry,) = released_staging.entries()
        assert entry.result == d.RESULT_FAILED and "AccessDenied" in entry.detail
        assert released_staging.ledger().read_lock() is None
        assert released_staging.parameters()["StagedImageTag"] == "1.0.0"

    def test_non_interactive_without_yes_is_refused(self, released_staging):
        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0")  # stdin is a StringIO: not a terminal
        assert run.code == d.EXIT_USAGE and "--yes" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.0.0"

    @pytest.mark.parametrize("answer, code, active", [("y\n", 0, "1.1.0"), ("n\n", d.EXIT_USAGE, "1.0.0"), ("", d.EXIT_USAGE, "1.0.0")])
    def test_an_interactive_confirmation(self, released_staging, answer, code, active):
        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", stdin=Tty(answer))
        assert run.code == code and "1.0.0 -> 1.1.0? [y/N]" in run.err
        assert released_staging.parameters()["ImageTag"] == active

    def test_a_cloudformation_rollback_exits_5_shows_why_and_keeps_the_old_version(self, released_staging):
        released_staging.run("stage", "1.1.0")
        failing = RollsBack(released_staging.emulated)
        run = released_staging.run("activate", "1.1.0", "--yes", "--json", aws=failing)
        assert run.code == d.EXIT_ROLLED_BACK
        # It really asked for ImageTag=1.1.0 with every other parameter explicit...
        assert {p["ParameterKey"]: p["ParameterValue"] for p in failing.updated_with}["ImageTag"] == "1.1.0"
        # ...and says the old version is still active, and why it is.
        assert "rolled staging-service back; 1.0.0 is still active" in run.err
        assert f"EcsService5196398A (AWS::ECS::Service) UPDATE_FAILED: {RollsBack.REASON}" in run.err
        doc = run.json
        assert (doc["ok"], doc["exit_code"], doc["result"]) == (False, 5, d.RESULT_ROLLED_BACK)
        assert (doc["gate"], doc["from"], doc["to"], doc["forced"]) == ("activate", "1.0.0", "1.1.0", False)
        assert doc["digest"].startswith("sha256:") and doc["seq"] == 2
        assert [e["LogicalResourceId"] for e in doc["failing_events"]] == ["EcsService5196398A"]
        assert released_staging.parameters()["ImageTag"] == "1.0.0"
        newest = released_staging.entries()[0]
        assert newest.result == d.RESULT_ROLLED_BACK and RollsBack.REASON in newest.detail
        assert released_staging.ledger().read_lock() is None
        # A rolled-back activation is not a "previous" version: rollback has nowhere to go.
        assert released_staging.run("rollback", "--yes").code == d.EXIT_USAGE

    def test_an_unhealthy_new_version_is_not_reported_as_success(self, released_staging):
        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", "--yes", "--verify-timeout", "0",
                                   aws=EmulatedRuntime(released_staging.emulated, healthy=False))
        assert run.code == d.EXIT_UNVERIFIED
        assert "NOT VERIFIED: targets not healthy: 10.0.0.0 unhealthy" in run.out and "liftoff rollback" in run.out
        assert released_staging.entries()[0].result == d.RESULT_UNVERIFIED
        # The stack did take the new version: the ledger says so, and rollback can return to 1.0.0.
        assert released_staging.parameters()["ImageTag"] == "1.1.0"



class TestRollback:
    def test_to_previous(self, released_staging):
        released(released_staging, "1.1.0")
        run = released_staging.run("rollback", "--yes")
        assert run.code == 0, run.err
        assert released_staging.parameters()["ImageTag"] == "1.0.0"
        newest = released_staging.entries()[0]
        assert (newest.gate, newest.from_version, newest.to_version, newest.result) == ("rollback", "1.1.0", "1.0.0", d.RESULT_SUCCEEDED)

    def test_to_a_named_version(self, released_staging):
        push(released_staging, "1.2.0")
        released(released_staging, "1.1.0", "1.2.0")
        run = released_staging.run("rollback", "--to", "1.0.0", "--yes")
        assert run.code == 0, run.err
        assert released_staging.parameters()["ImageTag"] == "1.0.0"

    def test_refuses_a_version_whose_image_is_gone(self, released_staging):
        released(released_staging, "1.1.0")
        released_staging.emulated.client("ecr").batch_delete_image(
            repositoryName=released_staging.emulated.repository_name, imageIds=[{"imageTag": "1.0.0"}])
        run = released_staging.run("rollback", "--yes")
        assert run.code == d.EXIT_REFUSED and "image for 1.0.0 is gone" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.1.0"

    def test_without_history_asks_for_a_version(self, released_staging):
        run = released_staging.run("rollback", "--yes")
        assert run.code == d.EXIT_USAGE and "--to VERSION" in run.err


class TestRollbackSemantics:
    def test_after_an_unverified_activation_rollback_returns_to_what_served_before(self, released_staging):
        released_staging.run("stage", "1.1.0")
        unverified = released_staging.run("activate", "1.1.0", "--yes", "--verify-timeout", "0",
                                          aws=EmulatedRuntime(released_staging.emulated, healthy=False))
        assert unverified.code == d.EXIT_UNVERIFIED and "`liftoff rollback --stage staging` returns to 1.0.0" in unverified.out
        run = released_staging.run("rollback", "--yes")
        assert run.code == 0, run.err
        assert "plan: rollback staging: ImageTag 1.1.0 -> 1.0.0 (undo the last release)" in run.out
        assert released_staging.parameters()["ImageTag"] == "1.0.0"

    def test_two_rollbacks_walk_back_twice_and_a_third_stops_at_the_start(self, released_staging):
        push(released_staging, "1.2.0")
        push(released_staging, "1.3.0")
        released(released_staging, "1.1.0", "1.2.0", "1.3.0")
        for expected in ("1.2.0", "1.1.0", "1.0.0"):
            run = released_staging.run("rollback", "--yes")
            assert run.code == 0, run.err
            assert released_staging.parameters()["ImageTag"] == expected
        run = released_staging.run("rollback", "--yes")
        assert run.code == d.EXIT_USAGE and "no version before 1.0.0" in run.err
        assert [e.result for e in released_staging.entries()][0] == d.RESULT_REFUSED

    def test_the_plan_shown_before_the_confirmation_is_the_target_used(self, released_staging):
        push(released_staging, "1.2.0")
        released(released_staging, "1.1.0", "1.2.0")
        run = released_staging.run("rollback", stdin=Tty("y\n"))
        assert run.code == 0, run.err
        assert "ImageTag 1.2.0 -> 1.1.0" in run.out and "1.2.0 -> 1.1.0? [y/N]" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.1.0"

    def test_rollback_to_an_unstaged_version_that_never_ran_needs_force(self, released_staging):
        push(released_staging, "1.2.0")
        released(released_staging, "1.1.0")
        run = released_staging.run("rollback", "--to", "1.2.0", "--yes")
        assert run.code == d.EXIT_REFUSED and "never ran" in run.err and "--force" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.1.0"
        assert released_staging.entries()[0].result == d.RESULT_REFUSED
        run = released_staging.run("rollback", "--to", "1.2.0", "--yes", "--force")
        assert run.code == 0, run.err
        newest = released_staging.entries()[0]
        assert (newest.gate, newest.to_version, newest.forced, newest.result) == ("rollback", "1.2.0", True, d.RESULT_SUCCEEDED)

    def test_rollback_to_passes_the_scan_gate(self, released_staging):
        push(released_staging, "1.2.0", scan=False)
        critical_scan(released_staging, "1.2.0")
        released_staging.scan("1.2.0")
        run = released_staging.run("rollback", "--to", "1.2.0", "--yes", "--force")
        assert run.code == d.EXIT_REFUSED and "1 CRITICAL" in run.err


class TestTheTruthAfterAFailure:
    def test_an_aws_error_after_the_update_was_accepted_reports_and_records_the_switch(self, released_staging):
        from botocore.exceptions import EndpointConnectionError

        class LosesTheConnection(EmulatedRuntime):
            """CloudFormation took the update; then the network went (the first event poll fails)."""
            updated = False

            def update_parameters(self, name, parameters):
                super().update_parameters(name, parameters)
                self.updated = True

            def new_stack_events(self, name, seen):
                if self.updated:
                    self.updated = False
                    raise EndpointConnectionError(endpoint_url="https://cloudformation.us-east-1.amazonaws.com/")
                return super().new_stack_events(name, seen)

        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", "--yes", "--json", aws=LosesTheConnection(released_staging.emulated))
        assert run.code == d.EXIT_UNVERIFIED, run.err
        assert "nothing changed" not in run.err
        assert "ImageTag is now 1.1.0: the switch happened" in run.err and "recorded as unverified" in run.err
        doc = run.json
        assert (doc["ok"], doc["result"], doc["switched"], doc["value_now"]) == (False, d.RESULT_UNVERIFIED, True, "1.1.0")
        newest = released_staging.entries()[0]
        assert (newest.to_version, newest.result) == ("1.1.0", d.RESULT_UNVERIFIED) and "Could not connect" in newest.detail
        assert released_staging.ledger().read_lock() is None
        # ...and rollback knows where to go.
        assert released_staging.run("rollback", "--yes").code == 0
        assert released_staging.parameters()["ImageTag"] == "1.0.0"

    def test_an_outcome_that_cannot_be_written_keeps_the_lock_for_the_next_release_to_close(self, released_staging):
        from botocore.exceptions import EndpointConnectionError

        class LedgerGoesAway(Ledger):
            def finish(self, entry, **kwargs):
                raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")

        class Runtime(EmulatedRuntime):
            def ledger(self, table_name):
                return LedgerGoesAway(self.client("dynamodb"), table_name)

        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", "--yes", aws=Runtime(released_staging.emulated))
        # It verified the switch; only the record is missing, and it says what happens to it.
        assert run.code == 0 and "ImageTag is now 1.1.0: the switch happened, verified" in run.err
        assert "the lock stays held, naming it and carrying the outcome (succeeded)" in run.err
        assert "the next release takes the lock over after its lease (60 s) and records it" in run.err
        assert released_staging.entries()[0].result == d.RESULT_IN_PROGRESS
        held = released_staging.ledger().read_lock()
        assert held is not None and held.entry_key and held.activity.startswith("outcome succeeded: ")
        # The next release, once the lease passed unchanged, takes over and closes the entry from the stack.
        time = FakeTime()
        follow = released_staging.run("history", "--limit", "1")
        assert "in_progress" in follow.out
        nxt = released_staging.run("stage", "1.1.0", monotonic=time.monotonic, sleep=time.sleep)
        assert nxt.code == 0 and "took over the lock" in nxt.out
        closed = next(e for e in released_staging.entries() if e.gate == "activate")
        # The run's own verified outcome, carried in the lock, is recorded: the stack agrees it switched.
        assert closed.result == d.RESULT_SUCCEEDED and "its run's own outcome, which the ledger had refused" in closed.detail
        assert released_staging.ledger().read_lock() is None

    def test_a_ctrl_c_while_waiting_records_what_the_stack_says(self, released_staging):
        class CtrlCWhileWaiting(EmulatedRuntime):
            def stack(self, name):
                stack = super().stack(name)
                if getattr(self, "armed", False):
                    self.armed = False
                    raise KeyboardInterrupt
                return stack

            def update_parameters(self, name, parameters):
                super().update_parameters(name, parameters)
                self.armed = True

        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", "--yes", aws=CtrlCWhileWaiting(released_staging.emulated))
        assert run.code == 130 and "interrupted by SIGINT" in run.err and "Traceback" not in run.err
        assert "ImageTag is now 1.1.0" in run.err
        assert released_staging.entries()[0].result == d.RESULT_UNVERIFIED
        assert released_staging.ledger().read_lock() is None

    def test_a_ctrl_c_at_the_confirmation_changes_nothing(self, released_staging):
        class CtrlC(Tty):
            def readline(self):
                raise KeyboardInterrupt

        released_staging.run("stage", "1.1.0")
        run = released_staging.run("activate", "1.1.0", stdin=CtrlC(""))
        assert run.code == 130 and "before anything changed" in run.err
        assert released_staging.parameters()["ImageTag"] == "1.0.0"
        assert released_staging.ledger().read_lock() is None

    def test_a_closed_stdout_is_a_quiet_end_and_never_stops_a_release(self, released_staging):
        class Closed(io.StringIO):
            def write(self, _text):
                raise BrokenPipeError(32, "Broken pipe")

        run = released_staging.run("stage", "1.1.0", stdout=Closed())
        assert run.code == 0 and run.err == ""
        assert released_staging.parameters()["StagedImageTag"] == "1.1.0"
        assert released_staging.run("status", stdout=Closed()).code == 0


class TestLockVerbs:
    def test_lock_shows_holder_activity_and_since_when(self, released_staging):
        assert "is free" in released_staging.run("lock").out
        hold_lock(released_staging, activity="verifying 1.1.0 runs")
        run = released_staging.run("lock")
        assert run.code == 0
        for expected in ("held by   " + OTHER_JOB, "release   other: stage 1.1.0", "doing     verifying 1.1.0 runs (since",
                         "liftoff unlock --stage staging"):
            assert expected in run.out
        assert released_staging.run("lock", "--json").json["lock"]["activity"] == "verifying 1.1.0 runs"

    def test_unlock_needs_confirmation(self, released_staging):
        hold_lock(released_staging)
        run = released_staging.run("unlock")
        assert run.code == d.EXIT_USAGE and "--yes" in run.err
        assert released_staging.ledger().read_lock().release_id == "other"

    def test_unlock_breaks_the_lock_records_it_and_closes_the_orphaned_entry(self, released_staging):
        # A release that died after CloudFormation took ImageTag=1.1.0 left its lock and an in_progress entry.
        released_staging.run("stage", "1.1.0")
        ledger = released_staging.ledger()
        orphan = ledger.start(d.Entry(release_id="other", gate="activate", from_version="1.0.0", to_version="1.1.0",
                                      who=OTHER_JOB, started_at="2026-01-01T00:00:00.000Z"), "staging")
        hold_lock(released_staging)
        from release.adapters.ledger import entry_key
        ledger.heartbeat("other", record_version="v1", at="x", epoch=0, entry_key=entry_key(orphan))
        released_staging.emulated.update_service(image_tag="1.1.0", staged_image_tag="1.1.0")
        run = released_staging.run("unlock", stdin=Tty("y\n"))
        assert run.code == 0, run.err
        assert ledger.read_lock() is None
        unlock, closed, *_ = released_staging.entries()
        assert (unlock.gate, unlock.result) == ("unlock", d.RESULT_SUCCEEDED) and "broke the lock of release other" in unlock.detail
        assert unlock.who.startswith("arn:aws:")
        assert (closed.release_id, closed.result) == ("other", d.RESULT_UNVERIFIED)
        assert "broken by" in closed.detail and "ImageTag is 1.1.0" in closed.detail
        assert "unlock" in released_staging.run("history").out

    def test_unlock_without_a_lock_says_so(self, released_staging):
        run = released_staging.run("unlock", "--yes")
        assert run.code == 0 and "free" in run.out and released_staging.entries() == []


class TestBoundedInput:
    @pytest.mark.parametrize("argv, says", [
        (("stage", "1.1.0", "--timeout", "inf"), "--timeout 'inf' is not allowed"),
        (("stage", "1.1.0", "--timeout", "nan"), "--timeout 'nan' is not allowed"),
        (("activate", "1.1.0", "--verify-timeout", "-1"), "--verify-timeout '-1' is not allowed"),
        (("stage", "1.1.0", "--lease-seconds", "0"), "--lease-seconds '0' is not allowed"),
        (("history", "--limit", "0"), "--limit '0' is not allowed"),
        (("history", "--limit", "-3"), "--limit '-3' is not allowed"),
        (("status", "--timeout", "inf"), "--timeout 'inf' is not allowed"),
    ])
    def test_unbounded_or_senseless_values_are_refused_naming_them(self, released_staging, argv, says):
        before = released_staging.parameters()
        run = released_staging.run(*argv)
        assert run.code == d.EXIT_USAGE
        assert says in run.err and "Traceback" not in run.err and run.out == ""  # no --json: no document
        assert released_staging.parameters() == before and released_staging.entries() == []

    def test_history_keeps_one_line_per_entry_whatever_a_detail_contains(self, released_staging):
        from botocore.exceptions import ClientError

        class RefusesWithALongMessage(EmulatedRuntime):
            def update_parameters(self, name, parameters):
                raise ClientError({"Error": {"Code": "ValidationError", "Message": "line one\nline two\r\nline three"}}, "UpdateStack")

        released_staging.run("stage", "1.1.0", aws=RefusesWithALongMessage(released_staging.emulated))
        released_staging.run("stage", "1.1.0")
        run = released_staging.run("history")
        assert len(run.out.splitlines()) == 1 + 2
        assert "line one line two line three" in run.out
        assert len(released_staging.run("history", "--limit", "1").out.splitlines()) == 2


class TestStatusAndHistory:
    def test_status(self, released_staging):
        released(released_staging, "1.1.0")
        run = released_staging.run("status")
        assert run.code == 0
        for expected in ("staging-service UPDATE_COMPLETE", "active   1.1.0", "staged   1.1.0", "previous 1.0.0",
                         "desired count 1 (ecs", "1 healthy", "RUNNING", "last releases:"):
            assert expected in run.out

    def test_status_json_shape(self, released_staging):
        released(released_staging, "1.1.0")
        doc = released_staging.run("status", "--json").json
        assert set(doc) >= {"stack", "compute", "active", "staged", "previous", "desired_count", "targets", "tasks", "lock", "releases"}
        assert (doc["stack"]["status"], doc["compute"], doc["previous"], doc["desired_count"], doc["lock"]) == ("UPDATE_COMPLETE", "ecs", "1.0.0", 1, None)
        assert [r["gate"] for r in doc["releases"]] == ["activate", "stage"]

    def test_status_shows_the_stages_firing_alarms(self, released_staging):
        import boto3

        cloudwatch = boto3.client("cloudwatch")
        for name, description in (("staging-service-AlarmsHttp5xxShareC5645C0A-ABC123", "liftoff staging: more than 5% of requests answered 5xx"),
                                  ("staging-service-AlarmsLatencyP997701F6EF-DEF456", "liftoff staging: p99 above 1000 ms"),
                                  ("production-service-AlarmsHttp5xxShareC5645C0A-GHI789", "another stage's alarm")):
            cloudwatch.put_metric_alarm(AlarmName=name, AlarmDescription=description, MetricName="RequestCount",
                                        Namespace="AWS/ApplicationELB", Statistic="Sum", Period=60, EvaluationPeriods=1,
                                        Threshold=1, ComparisonOperator="GreaterThanThreshold")
        assert "alarms   none firing" in released_staging.run("status").out
        cloudwatch.set_alarm_state(AlarmName="staging-service-AlarmsHttp5xxShareC5645C0A-ABC123", StateValue="ALARM", StateReason="3 of 5 datapoints above 5")
        cloudwatch.set_alarm_state(AlarmName="production-service-AlarmsHttp5xxShareC5645C0A-GHI789", StateValue="ALARM", StateReason="x")
        run = released_staging.run("status")
        assert "alarms   1 firing" in run.out
        assert "staging-service-AlarmsHttp5xxShareC5645C0A-ABC123 since " in run.out
        assert "more than 5% of requests answered 5xx" in run.out
        assert "production-service" not in run.out.split("alarms", 1)[1]
        doc = released_staging.run("status", "--json").json
        (alarm,) = doc["alarms_firing"]
        assert alarm["name"] == "staging-service-AlarmsHttp5xxShareC5645C0A-ABC123" and alarm["reason"] == "3 of 5 datapoints above 5"

    def test_history(self, released_staging):
        released(released_staging, "1.1.0")
        released_staging.run("rollback", "--yes")
        run = released_staging.run("history")
        header, *rows = run.out.splitlines()
        assert header.split()[:4] == ["STARTED", "WHO", "GATE", "FROM"]
        assert [row.split()[2] for row in rows] == ["rollback", "activate", "stage"]
        doc = released_staging.run("history", "--json").json
        entry = doc["entries"][0]
        assert set(entry) == {"release_id", "gate", "from_version", "to_version", "who", "started_at", "digest", "result",
                              "finished_at", "duration_seconds", "forced", "detail", "seq"}
        assert [e["seq"] for e in doc["entries"]] == [3, 2, 1]
        assert (entry["from_version"], entry["to_version"], entry["result"]) == ("1.1.0", "1.0.0", "succeeded")


class TestErrors:
    def test_unknown_stage(self, released_staging):
        run = released_staging.run("status", stage="nope")
        assert run.code == d.EXIT_USAGE and "unknown stage 'nope'" in run.err and "staging" in run.err

    def test_a_stage_that_is_not_deployed(self, released_staging):
        run = released_staging.run("status", stage="production")
        assert run.code == d.EXIT_AWS and "production-service does not exist" in run.err and "make deploy STAGE=production" in run.err

    def test_no_credentials(self, released_staging, monkeypatch):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        run = released_staging.run("stage", "1.1.0", aws=Aws(region="us-east-1"))
        assert run.code == d.EXIT_AWS and "no AWS credentials" in run.err and "AWS_PROFILE" in run.err

    def test_no_region(self, released_staging, monkeypatch):
        for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
        run = released_staging.run("status", aws=Aws())
        assert run.code == d.EXIT_AWS and "no AWS region" in run.err and "--region" in run.err

    def test_errors_in_json_mode_are_one_document(self, released_staging):
        run = released_staging.run("stage", "latest", "--json")
        assert run.json == {"ok": False, "exit_code": 2, "command": "stage", "stage": "staging",
                            "error": {"message": run.json["error"]["message"], "hint": run.json["error"]["hint"]}}
        assert "mutable" in run.json["error"]["message"]

    def test_usage_errors_exit_2(self, released_staging):
        assert released_staging.run("stage").code == d.EXIT_USAGE  # no VERSION


def test_help_documents_the_exit_codes():
    # The console script's module entry point, as a pipeline would call it.
    result = subprocess.run([sys.executable, "-m", "release", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for line in ("2  usage or bad input", "3  refused by a gate", "4  AWS error", "5  the rollout failed and CloudFormation rolled back"):
        assert line in result.stdout


@pytest.mark.xfail(strict=True, reason="moto has no SSM association API: the real adapter cannot read the ec2 stage's "
                   "activate association (its id is an emulator placeholder); the stand-in runtime covers the walk "
                   "(tests/local/test_runtime.py) and verify_ec2 is tested directly in pure/test_decisions.py")
def test_an_ec2_stage_reports_its_hosts(deploy_emulated_stage):
    deploy_emulated_stage("staging", image_tag="1.0.0", push_tags=("1.0.0",))
    production = deploy_emulated_stage("production", image_tag="1.0.0")
    from tests.release.helpers import ReleaseStage

    run = ReleaseStage(production).run("status", aws=Aws(region=production.region))
    assert run.code == 0 and "host " in run.out
