"""The pure release decisions, without AWS: every gate's refusals and what each update changes."""
from __future__ import annotations

import pytest

from release import decisions as d

NOW = 1_800_000_000


def image(tag, *, scan="COMPLETE", counts=None):
    return d.Image(tag=tag, digest=f"sha256:{tag}", scan_status=scan, severity_counts=counts if counts is not None else {"HIGH": 1})


IMAGES = {tag: image(tag) for tag in ("1.0.0", "1.1.0", "1.2.0", "abc1234")}


def stack(active="1.0.0", staged="1.0.0", status="UPDATE_COMPLETE"):
    return d.Stack(
        name="staging-service", status=status,
        parameters={"ImageTag": active, "StagedImageTag": staged, "BootstrapVersion": "/cdk-bootstrap/hnb659fds/version"},
        outputs={},
    )


def lock(expires_at=NOW + 600):
    return d.Lock(holder="arn:aws:sts::000000000000:assumed-role/ci/job", release_id="r1", gate="stage",
                  version="1.1.0", acquired_at=NOW - 60, expires_at=expires_at)


def stage(tag, **overrides):
    facts = dict(images=IMAGES, stack=stack(), lock=None, now=NOW)
    return d.decide_stage(tag, **{**facts, **overrides})


def activate(tag, **overrides):
    facts = dict(images=IMAGES, stack=stack(staged="1.1.0"), lock=None, now=NOW)
    return d.decide_activate(tag, **{**facts, **overrides})


def entry(gate, from_version, to_version, result=d.RESULT_SUCCEEDED, started="2026-01-01T00:00:00.000Z"):
    return d.Entry(release_id="x", gate=gate, from_version=from_version, to_version=to_version, who="w",
                   started_at=started, result=result)


class TestStageGate:
    def test_a_scanned_existing_version_proceeds(self):
        assert stage("1.1.0").action == "proceed"

    @pytest.mark.parametrize("tag", ["latest", "LATEST", "stable", "main"])
    def test_mutable_tags_are_bad_input(self, tag):
        decision = stage(tag)
        assert (decision.action, decision.exit_code) == ("refuse", d.EXIT_USAGE)
        assert "mutable" in decision.message

    @pytest.mark.parametrize("tag", ["1.2", "v1", "1.0.0 ", "ABCDEF1", "1.0.0;rm"])
    def test_malformed_tags_are_bad_input(self, tag):
        assert stage(tag).exit_code == d.EXIT_USAGE

    def test_unknown_version_is_bad_input_and_names_the_nearest_tags(self):
        decision = stage("1.1.1")
        assert decision.exit_code == d.EXIT_USAGE
        assert "1.1.0" in decision.hint.split(":", 1)[1].split(",")[0]

    def test_a_once_released_version_whose_image_is_gone_is_a_gate_refusal(self):
        decision = stage("0.9.0", known_versions={"0.9.0"})
        assert decision.exit_code == d.EXIT_REFUSED
        assert "gone" in decision.message

    @pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"])
    def test_a_busy_stack_refuses_as_an_aws_error(self, status):
        decision = stage("1.1.0", stack=stack(status=status))
        assert decision.exit_code == d.EXIT_AWS
        assert "busy" in decision.message

    @pytest.mark.parametrize("status", ["UPDATE_ROLLBACK_FAILED", "ROLLBACK_COMPLETE"])
    def test_a_broken_stack_refuses_and_says_how_to_repair(self, status):
        decision = stage("1.1.0", stack=stack(status=status))
        assert decision.exit_code == d.EXIT_AWS
        assert "repair" in decision.hint

    def test_a_rolled_back_update_leaves_a_releasable_stack(self):
        assert stage("1.1.0", stack=stack(status="UPDATE_ROLLBACK_COMPLETE")).proceeds

    def test_a_critical_finding_refuses_by_default(self):
        images = {**IMAGES, "1.1.0": image("1.1.0", counts={"CRITICAL": 2, "HIGH": 1})}
        decision = stage("1.1.0", images=images)
        assert decision.exit_code == d.EXIT_REFUSED
        assert "2 CRITICAL" in decision.message and "HIGH" not in decision.message

    def test_the_threshold_is_configurable(self):
        assert stage("1.1.0").proceeds  # one HIGH finding is below CRITICAL
        decision = stage("1.1.0", fail_severity="HIGH")
        assert decision.exit_code == d.EXIT_REFUSED
        assert "1 HIGH" in decision.message

    def test_untriaged_findings_have_no_severity_to_reach(self):
        images = {**IMAGES, "1.1.0": image("1.1.0", counts={"UNTRIAGED": 3, "UNDEFINED": 1})}
        assert stage("1.1.0", images=images, fail_severity="INFORMATIONAL").proceeds

    @pytest.mark.parametrize("status", ["NONE", "IN_PROGRESS", "FAILED"])
    def test_no_completed_scan_is_not_a_clean_scan(self, status):
        images = {**IMAGES, "1.1.0": image("1.1.0", scan=status, counts={})}
        decision = stage("1.1.0", images=images)
        assert decision.exit_code == d.EXIT_REFUSED
        assert "start-image-scan" in decision.hint

    def test_a_held_lock_refuses_and_names_the_holder(self):
        decision = stage("1.1.0", lock=lock())
        assert decision.exit_code == d.EXIT_REFUSED
        assert "assumed-role/ci/job" in decision.message and "r1" in decision.message

    def test_an_expired_lock_does_not_block(self):
        assert stage("1.1.0", lock=lock(expires_at=NOW)).proceeds

    def test_staging_the_staged_version_again_changes_nothing(self):
        decision = stage("1.0.0")
        assert (decision.action, decision.exit_code) == ("noop", d.EXIT_OK)

    def test_refusals_that_need_no_aws_facts_come_first(self):
        # A mutable tag is refused even when the stack is busy: the user's input is the first thing to fix.
        assert stage("latest", stack=stack(status="UPDATE_IN_PROGRESS")).exit_code == d.EXIT_USAGE


class TestActivateGate:
    def test_the_staged_version_proceeds(self):
        assert activate("1.1.0").proceeds

    def test_an_unstaged_version_is_refused_with_what_to_run(self):
        decision = activate("1.2.0")
        assert decision.exit_code == d.EXIT_REFUSED
        assert "liftoff stage 1.2.0" in decision.hint and "--force" in decision.hint

    def test_force_skips_staging_but_not_the_scan(self):
        assert activate("1.2.0", force=True).proceeds
        images = {**IMAGES, "1.2.0": image("1.2.0", counts={"CRITICAL": 1})}
        assert activate("1.2.0", force=True, images=images).exit_code == d.EXIT_REFUSED

    def test_a_rollback_needs_no_staging(self):
        assert activate("1.2.0", gate="rollback").proceeds

    def test_the_active_version_is_a_noop(self):
        assert activate("1.0.0").action == "noop"

    def test_a_held_lock_refuses(self):
        assert activate("1.1.0", lock=lock()).exit_code == d.EXIT_REFUSED

    def test_a_missing_image_refuses_even_when_forced(self):
        assert activate("0.9.0", force=True, known_versions={"0.9.0"}).exit_code == d.EXIT_REFUSED


class TestParameters:
    CURRENT = {"ImageTag": "1.0.0", "StagedImageTag": "1.0.0", "BootstrapVersion": "/cdk-bootstrap/hnb659fds/version"}

    def test_stage_changes_only_the_staged_tag_and_passes_every_other_value_explicitly(self):
        parameters = d.parameters_for(self.CURRENT, "stage", "1.1.0")
        assert {p["ParameterKey"]: p["ParameterValue"] for p in parameters} == {**self.CURRENT, "StagedImageTag": "1.1.0"}
        assert all(set(p) == {"ParameterKey", "ParameterValue"} for p in parameters)  # never UsePreviousValue
        assert d.changed_parameters(self.CURRENT, parameters) == {"StagedImageTag": ("1.0.0", "1.1.0")}

    @pytest.mark.parametrize("gate", ["activate", "rollback"])
    def test_activate_and_rollback_change_only_the_image_tag(self, gate):
        parameters = d.parameters_for(self.CURRENT, gate, "1.1.0")
        assert d.changed_parameters(self.CURRENT, parameters) == {"ImageTag": ("1.0.0", "1.1.0")}

    def test_a_stack_without_the_gate_parameter_is_refused(self):
        with pytest.raises(ValueError, match="StagedImageTag"):
            d.parameters_for({"ImageTag": "1.0.0"}, "stage", "1.1.0")

    def test_a_masked_noecho_value_is_never_passed_back(self):
        # Passing "****" back would set the parameter to four asterisks.
        with pytest.raises(ValueError, match="DbPassword"):
            d.parameters_for({**self.CURRENT, "DbPassword": "****"}, "stage", "1.1.0")


class TestLedgerDecisions:
    def test_previous_is_where_the_last_switch_to_the_active_version_came_from(self):
        entries = [  # newest first
            entry("activate", "1.1.0", "1.2.0"),
            entry("stage", "1.1.0", "1.2.0"),
            entry("activate", "1.0.0", "1.1.0"),
        ]
        assert d.previous_version(entries, "1.2.0") == "1.1.0"

    def test_rolled_back_and_unfinished_activations_do_not_count(self):
        entries = [
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_ROLLED_BACK),
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_IN_PROGRESS),
            entry("activate", "1.0.0", "1.1.0"),
        ]
        assert d.previous_version(entries, "1.1.0") == "1.0.0"

    def test_after_a_rollback_previous_is_the_version_rolled_back_from(self):
        entries = [entry("rollback", "1.1.0", "1.0.0"), entry("activate", "1.0.0", "1.1.0")]
        assert d.previous_version(entries, "1.0.0") == "1.1.0"

    def test_no_history_means_no_previous(self):
        assert d.previous_version([], "1.0.0") is None
        decision = d.decide_rollback_target(None, active="1.0.0", entries=[])
        assert decision.exit_code == d.EXIT_USAGE and "--to" in decision.hint

    def test_a_named_rollback_target_wins(self):
        assert d.decide_rollback_target("1.0.0", active="1.2.0", entries=[entry("activate", "1.1.0", "1.2.0")]).message == "1.0.0"

    def test_nearest_tags(self):
        assert d.nearest_tags("1.1.1", ["1.0.0", "1.1.0", "2.0.0", "abc1234"])[0] == "1.1.0"
        assert d.nearest_tags("1.1.1", []) == []

    def test_marks_and_version_order(self):
        marks = d.mark_versions(["1.0.0", "1.1.0", "1.2.0"], active="1.1.0", staged="1.1.0", previous="1.0.0")
        assert marks == {"1.0.0": ["PREVIOUS"], "1.1.0": ["ACTIVE", "STAGED"], "1.2.0": []}
        ordered = sorted(["1.10.0", "1.9.0", "abc1234", "1.10.0-rc.1", "v2.0.0"], key=d.version_sort_key)
        assert ordered == ["1.9.0", "1.10.0-rc.1", "1.10.0", "v2.0.0", "abc1234"]


class TestOutcomes:
    @pytest.mark.parametrize("status, result", [
        ("UPDATE_COMPLETE", d.RESULT_SUCCEEDED),
        ("UPDATE_ROLLBACK_COMPLETE", d.RESULT_ROLLED_BACK),
        ("UPDATE_ROLLBACK_FAILED", d.RESULT_FAILED),
    ])
    def test_stack_outcome(self, status, result):
        assert d.stack_outcome(status) == result

    def test_failing_events_skip_the_cancellation_noise(self):
        events = [
            {"LogicalResourceId": "Service", "ResourceStatus": "UPDATE_FAILED", "ResourceStatusReason": "circuit breaker"},
            {"LogicalResourceId": "Param", "ResourceStatus": "UPDATE_FAILED", "ResourceStatusReason": "Resource update cancelled"},
            {"LogicalResourceId": "Task", "ResourceStatus": "UPDATE_COMPLETE", "ResourceStatusReason": ""},
        ]
        assert [e["LogicalResourceId"] for e in d.failing_events(events)] == ["Service"]

    def test_ecs_is_verified_only_when_definition_tasks_and_targets_agree(self):
        image = "123.dkr.ecr.us-east-1.amazonaws.com/repo:1.1.0"
        ok = dict(task_definition_image=image, running_images=[image], desired_count=1, healthy_targets=1, unhealthy_targets=[])
        assert d.verify_ecs("1.1.0", **ok)[0]
        assert not d.verify_ecs("1.1.0", **{**ok, "task_definition_image": image.replace("1.1.0", "1.0.0")})[0]
        assert not d.verify_ecs("1.1.0", **{**ok, "running_images": [image, image.replace("1.1.0", "1.0.0")]})[0]
        assert not d.verify_ecs("1.1.0", **{**ok, "running_images": []})[0]
        assert not d.verify_ecs("1.1.0", **{**ok, "healthy_targets": 0})[0]
        assert not d.verify_ecs("1.1.0", **{**ok, "unhealthy_targets": ["10.0.0.1 unhealthy"]})[0]
        # A tag that merely ends the same way is not the same release.
        assert not d.verify_ecs("1.0", **ok)[0]

    def test_ec2_is_verified_only_when_the_association_succeeded_for_this_tag(self):
        ok = dict(association_parameter="1.1.0", association_status="Success", instance_count=2, desired_count=2,
                  healthy_targets=2, unhealthy_targets=[])
        assert d.verify_ec2("1.1.0", **ok)[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "association_parameter": "1.0.0"})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "association_status": "Failed"})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "instance_count": 1})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "healthy_targets": 1})[0]


def test_the_lock_outlives_the_runs_own_waits():
    from argparse import Namespace

    from release.cli import lock_seconds

    # A lock shorter than the CloudFormation wait could be taken over while this release still runs.
    assert lock_seconds(Namespace(lock_minutes=30, timeout=1800.0, verify_timeout=600.0)) == 2700
    assert lock_seconds(Namespace(lock_minutes=120, timeout=60.0)) == 7200
