"""The pure release decisions, without AWS: every gate's refusals and what each update changes."""
from __future__ import annotations

import pytest

from release.pure import decisions as d

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


def lock(record_version="v1", lease=60.0):
    return d.Lock(holder="arn:aws:sts::000000000000:assumed-role/ci/job", release_id="r1", gate="stage",
                  version="1.1.0", acquired_at="2026-01-01T00:00:00.000Z", record_version=record_version, lease_seconds=lease)


def stage(tag, **overrides):
    facts = dict(images=IMAGES, stack=stack())
    return d.decide_stage(tag, **{**facts, **overrides})


def activate(tag, **overrides):
    facts = dict(images=IMAGES, stack=stack(staged="1.1.0"))
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

    def test_a_rollback_to_a_version_that_ran_needs_no_staging(self):
        assert activate("1.2.0", gate="rollback", ran_before={"1.2.0"}).proceeds

    def test_a_rollback_to_a_version_that_never_ran_passes_the_staging_gate(self):
        decision = activate("1.2.0", gate="rollback", ran_before={"1.0.0"})
        assert decision.exit_code == d.EXIT_REFUSED and "never ran" in decision.message and "--force" in decision.hint
        assert activate("1.1.0", gate="rollback").proceeds  # staged
        assert activate("1.2.0", gate="rollback", force=True).proceeds
        images = {**IMAGES, "1.2.0": image("1.2.0", counts={"CRITICAL": 1})}
        assert activate("1.2.0", gate="rollback", force=True, images=images).exit_code == d.EXIT_REFUSED

    def test_the_active_version_is_a_noop(self):
        assert activate("1.0.0").action == "noop"

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

    def test_the_activation_concurrency_is_set_where_the_stack_has_it_and_nowhere_else(self):
        with_concurrency = {**self.CURRENT, d.ACTIVATE_CONCURRENCY: d.EVERY_HOST_AT_ONCE}
        parameters = d.parameters_for(with_concurrency, "activate", "1.1.0", concurrency=d.ONE_HOST_AT_A_TIME)
        assert d.changed_parameters(with_concurrency, parameters) == {"ImageTag": ("1.0.0", "1.1.0"),
                                                                      "ActivateConcurrency": ("100%", "1")}
        # An ECS stack (or one deployed before the parameter existed) gets no parameter it does not declare.
        parameters = d.parameters_for(self.CURRENT, "rollback", "1.1.0", concurrency=d.EVERY_HOST_AT_ONCE)
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

    def test_rolled_back_refused_and_unfinished_activations_do_not_count(self):
        entries = [
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_ROLLED_BACK),
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_IN_PROGRESS),
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_REFUSED),
            entry("activate", "1.1.0", "1.2.0", result=d.RESULT_INTERRUPTED),
            entry("activate", "1.0.0", "1.1.0"),
        ]
        assert d.previous_version(entries, "1.1.0") == "1.0.0"
        assert d.rollback_target(entries, "1.1.0") == "1.0.0"

    def test_an_unverified_switch_did_take_over(self):
        # exit 6: the stack switched; "undo the last release" goes to what served before it.
        entries = [entry("activate", "1.1.0", "1.2.0", result=d.RESULT_UNVERIFIED), entry("activate", "1.0.0", "1.1.0")]
        assert d.rollback_target(entries, "1.2.0") == "1.1.0"
        assert d.previous_version(entries, "1.2.0") == "1.1.0"

    def test_rollbacks_walk_backwards_and_never_ping_pong(self):
        entries = [entry("activate", "1.2.0", "1.3.0"), entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0")]
        assert d.rollback_target(entries, "1.3.0") == "1.2.0"
        entries.insert(0, entry("rollback", "1.3.0", "1.2.0"))
        assert d.rollback_target(entries, "1.2.0") == "1.1.0"
        entries.insert(0, entry("rollback", "1.2.0", "1.1.0"))
        assert d.rollback_target(entries, "1.1.0") == "1.0.0"
        entries.insert(0, entry("rollback", "1.1.0", "1.0.0"))
        assert d.rollback_target(entries, "1.0.0") is None

    def test_a_rollback_to_jumps_back_over_the_versions_between(self):
        entries = [entry("rollback", "1.3.0", "1.1.0"), entry("activate", "1.2.0", "1.3.0"),
                   entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0")]
        assert d.rollback_target(entries, "1.1.0") == "1.0.0"

    def test_reactivating_an_older_version_is_undone_by_the_next_rollback(self):
        entries = [entry("activate", "1.1.0", "1.0.0"), entry("activate", "1.0.0", "1.1.0")]
        assert d.rollback_target(entries, "1.0.0") == "1.1.0"
        entries.insert(0, entry("rollback", "1.0.0", "1.1.0"))
        assert d.rollback_target(entries, "1.1.0") == "1.0.0"

    def test_an_interrupted_switch_counts_once_the_stack_shows_it_completed(self):
        # Ctrl-C while CloudFormation was still updating: recorded `interrupted`; the update then completed.
        entries = [entry("activate", "1.1.0", "1.2.0", result=d.RESULT_INTERRUPTED), entry("activate", "1.0.0", "1.1.0")]
        assert d.rollback_target(entries, "1.2.0") == "1.1.0"
        assert d.rollback_target(entries, "1.1.0") == "1.0.0"  # it did not complete after all
        # A later release saw 1.2.0 active (its `from`), even one that was refused.
        entries.insert(0, entry("activate", "1.2.0", "1.3.0", result=d.RESULT_REFUSED))
        assert d.previous_version(entries, "1.2.0") == "1.1.0"

    def test_an_active_version_set_outside_liftoff_has_no_automatic_target(self):
        entries = [entry("activate", "1.0.0", "1.1.0")]
        decision = d.decide_rollback_target(None, active="1.2.0", entries=entries)
        assert decision.exit_code == d.EXIT_USAGE and "not set by liftoff" in decision.message

    def test_versions_that_ran_or_were_staged(self):
        entries = [entry("stage", "1.1.0", "1.2.0"), entry("stage", "1.2.0", "1.3.0", result=d.RESULT_REFUSED),
                   entry("activate", "1.0.0", "1.1.0", result=d.RESULT_UNVERIFIED)]
        assert d.ran_on_stage(entries) == {"1.0.0", "1.1.0", "1.2.0"}

    def test_after_a_rollback_previous_is_the_version_rolled_back_from(self):
        # "previous" is history (what ran before the active one); the rollback target walks further back.
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

    def test_the_newest_stopped_task_of_the_version_since_the_switch_says_why_it_does_not_run(self):
        stopped = [
            {"task": "new", "image": "repo:1.1.0", "stopped_at": "2026-12-03T10:00:10+00:00", "reason": "ResourceInitializationError: x"},
            {"task": "other", "image": "repo:1.0.0", "stopped_at": "2026-12-03T10:00:09+00:00", "reason": "scaled in"},
            {"task": "old", "image": "repo:1.1.0", "stopped_at": "2026-12-03T09:00:00+00:00", "reason": "an hour ago"},
        ]
        switch_began = 1796292005.0  # 2026-12-03T10:00:05Z
        assert d.last_stopped_of("1.1.0", stopped)["task"] == "new"
        assert d.last_stopped_of("1.1.0", stopped, since=switch_began)["reason"] == "ResourceInitializationError: x"
        assert d.last_stopped_of("1.1.0", stopped[2:], since=switch_began) is None  # before this switch: not its reason
        assert d.last_stopped_of("1.2.0", stopped) is None
        assert d.last_stopped_of("1.1.0", [{"task": "t", "image": "repo:1.1.0", "stopped_at": "", "reason": "r"}], since=1.0) is None

    def test_ec2_is_verified_only_when_the_association_succeeded_for_this_tag(self):
        ok = dict(association_parameter="1.1.0", association_status="Success", instance_count=2, desired_count=2,
                  healthy_targets=2, unhealthy_targets=[])
        assert d.verify_ec2("1.1.0", **ok)[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "association_parameter": "1.0.0"})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "association_status": "Failed"})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "instance_count": 1})[0]
        assert not d.verify_ec2("1.1.0", **{**ok, "healthy_targets": 1})[0]


class TestLease:
    def test_a_free_lock(self):
        assert d.judge_lock(None, None, 0.0) == (d.LOCK_FREE, None)

    def test_a_held_lock_is_watched_first(self):
        verdict, seen = d.judge_lock(lock(), None, 100.0)
        assert verdict == d.LOCK_WAIT and seen == d.LockSighting("v1", 100.0)

    def test_a_renewed_lock_is_alive(self):
        _, seen = d.judge_lock(lock(), None, 100.0)
        assert d.judge_lock(lock(record_version="v2"), seen, 101.0)[0] == d.LOCK_ALIVE

    def test_unchanged_for_a_full_lease_on_the_waiters_clock_is_stale(self):
        _, seen = d.judge_lock(lock(lease=60), None, 100.0)
        assert d.judge_lock(lock(lease=60), seen, 159.9)[0] == d.LOCK_WAIT
        assert d.judge_lock(lock(lease=60), seen, 160.0)[0] == d.LOCK_STALE

    def test_the_holders_wall_clock_plays_no_part(self):
        # A lock stamped a day in the future or the past: only the record version and our own clock count.
        for stamped in ("2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z"):
            held = d.Lock(holder="h", release_id="r", gate="stage", version="1.1.0", acquired_at=stamped,
                          record_version="v1", lease_seconds=60, heartbeat_at=stamped)
            _, seen = d.judge_lock(held, None, 0.0)
            assert d.judge_lock(held, seen, 30.0)[0] == d.LOCK_WAIT

    def test_the_refusal_names_holder_and_what_it_does(self):
        refusal = d.lock_refusal(d.Lock(holder="arn:aws:sts::0:assumed-role/ci/job", release_id="r1", gate="activate", version="1.1.0",
                                        acquired_at="", record_version="v", lease_seconds=60, activity="verifying 1.1.0 runs"), "renewed")
        assert refusal.exit_code == d.EXIT_REFUSED
        assert "ci/job" in refusal.message and "r1" in refusal.message and "verifying 1.1.0 runs" in refusal.message
        assert "liftoff unlock" in refusal.hint


class TestSettle:
    def settle(self, gate="activate", **stack_facts):
        return d.settle(gate=gate, from_version="1.0.0", to_version="1.1.0",
                        stack=stack(**stack_facts) if stack_facts is not None else None, cause="interrupted by SIGTERM")

    def test_a_switch_that_happened_is_unverified_not_failed(self):
        settled = self.settle(active="1.1.0")
        assert (settled.result, settled.switched, settled.exit_code) == (d.RESULT_UNVERIFIED, True, d.EXIT_UNVERIFIED)
        assert "ImageTag is 1.1.0" in settled.detail and "interrupted by SIGTERM" in settled.detail

    def test_a_completed_stage_update_succeeded(self):
        settled = self.settle(gate="stage", staged="1.1.0")
        assert (settled.result, settled.switched) == (d.RESULT_SUCCEEDED, True)

    def test_nothing_switched_is_failed(self):
        settled = self.settle(active="1.0.0")
        assert (settled.result, settled.switched, settled.exit_code) == (d.RESULT_FAILED, False, d.EXIT_AWS)
        assert "nothing switched" in settled.detail

    def test_a_cloudformation_rollback_is_rolled_back(self):
        assert self.settle(active="1.0.0", status="UPDATE_ROLLBACK_COMPLETE").result == d.RESULT_ROLLED_BACK

    def test_an_update_still_running_is_interrupted_and_unknown(self):
        settled = self.settle(active="1.1.0", status="UPDATE_IN_PROGRESS")
        assert (settled.result, settled.switched) == (d.RESULT_INTERRUPTED, None)
        assert "still UPDATE_IN_PROGRESS" in settled.detail

    def test_an_unreadable_stack_is_interrupted_and_unknown(self):
        settled = d.settle(gate="activate", from_version="1.0.0", to_version="1.1.0", stack=None, cause="lost connection")
        assert (settled.result, settled.switched, settled.value) == (d.RESULT_INTERRUPTED, None, None)

    def test_a_third_value_says_something_else_changed_it(self):
        assert "something else" in self.settle(active="1.2.0").detail


def test_one_line():
    assert d.one_line("a\nb\r\n  c\td") == "a b c d"


# --- the truth under faults (issue 22) ----------------------------------------------------------

def test_an_automatic_rollback_skips_a_version_whose_own_switch_ended_unverified():
    newest_first = [entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0", d.RESULT_UNVERIFIED),
                    entry("activate", "0.9.0", "1.0.0")]
    target, why = d.auto_rollback_target(newest_first, released="1.2.0", previous="1.1.0")
    assert target == "1.0.0"
    assert why == ("1.1.0 is skipped: its own switch ended unverified (never seen running healthy); "
                   "going to 1.0.0, the newest version before it not recorded unverified")
    verified = [entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0")]
    assert d.auto_rollback_target(verified, released="1.2.0", previous="1.1.0") == ("1.1.0", "")
    # The version the stage ran before liftoff's first switch has no verdict against it.
    first = [entry("activate", "1.0.0", "1.1.0")]
    assert d.auto_rollback_target(first, released="1.1.0", previous="1.0.0") == ("1.0.0", "")
    nowhere = [entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0", d.RESULT_UNVERIFIED),
               entry("activate", "0.9.0", "1.0.0", d.RESULT_UNVERIFIED)]
    target, why = d.auto_rollback_target(nowhere, released="1.2.0", previous="1.1.0")
    assert target == "0.9.0"  # never switched to by liftoff: nothing recorded against it
    assert d.auto_rollback_target([entry("activate", "1.0.0", "1.1.0", d.RESULT_UNVERIFIED), entry("activate", "", "1.0.0", d.RESULT_UNVERIFIED)],
                                  released="1.1.0", previous="1.0.0")[0] is None


def test_a_version_verified_later_by_the_same_verb_again_is_a_rollback_target_again():
    # activate 1.0.0 ended unverified (the database was down), the same verb again re-drove the hosts and verified it.
    newest_first = [entry("activate", "1.0.0", "1.2.0"), entry("activate", "1.0.0", "1.0.0"),
                    entry("activate", "1.1.0", "1.0.0", d.RESULT_UNVERIFIED), entry("activate", "0.9.0", "1.1.0")]
    assert d.auto_rollback_target(newest_first, released="1.2.0", previous="1.0.0") == ("1.0.0", "")
    # Only a later success counts: an earlier one is what the unverified switch replaced.
    older_success = [entry("activate", "1.1.0", "1.2.0"), entry("activate", "1.0.0", "1.1.0", d.RESULT_UNVERIFIED),
                     entry("activate", "1.0.0", "1.1.0"), entry("activate", "0.9.0", "1.0.0")]
    assert d.auto_rollback_target(older_success, released="1.2.0", previous="1.1.0")[0] == "1.0.0"


def test_a_refused_typo_is_not_a_version_this_stage_knew():
    entries = [entry("activate", "1.0.0", "1.1.9", d.RESULT_REFUSED), entry("activate", "0.9.0", "1.0.0")]
    assert d.released_versions(entries) == {"0.9.0", "1.0.0"}
    images = {"1.0.0": image("1.0.0"), "1.1.0": image("1.1.0")}
    refusal = d.check_image("1.1.9", images, d.released_versions(entries))
    assert refusal.exit_code == d.EXIT_USAGE


def test_a_redrive_is_not_a_switch():
    redrive = entry("activate", "1.1.0", "1.1.0")
    assert not d.switched(redrive)
    entries = [redrive, entry("activate", "1.0.0", "1.1.0")]
    assert d.rollback_target(entries, "1.1.0") == "1.0.0"


def test_the_takeover_records_a_dead_runs_own_outcome_only_when_the_stack_agrees():
    switched = d.settle(gate="activate", from_version="1.0.0", to_version="1.1.0", stack=stack(active="1.1.0"), cause="taken over")
    assert switched.result == d.RESULT_UNVERIFIED
    own = d.own_outcome_activity(d.RESULT_SUCCEEDED, "verified: 2 task(s) run 1.1.0")
    trusted = d.trust_own_outcome(switched, own)
    assert (trusted.result, trusted.switched) == (d.RESULT_SUCCEEDED, True)
    assert trusted.detail == "verified: 2 task(s) run 1.1.0 (its run's own outcome, which the ledger had refused; the stack agrees)"
    nothing = d.settle(gate="activate", from_version="1.0.0", to_version="1.1.0", stack=stack(active="1.0.0"), cause="taken over")
    assert d.trust_own_outcome(nothing, own) == nothing  # the stack disagrees: the read-back stands
    assert d.trust_own_outcome(switched, "verifying 1.1.0 runs") == switched  # no outcome in the lock


def test_an_associations_max_concurrency_as_hosts_at_once():
    # A percentage of the targets, rounded down, never below one host: a quarter of 2 is still one.
    assert [d.hosts_at_once(d.IN_WAVES, n) for n in (1, 2, 4, 8, 50)] == [1, 1, 1, 2, 12]
    assert d.hosts_at_once(d.EVERY_HOST_AT_ONCE, 50) == 50 and d.hosts_at_once(d.ONE_HOST_AT_A_TIME, 50) == 1
    assert d.hosts_at_once("10", 3) == 10


@pytest.mark.parametrize("code,message,expected", [
    # IAM's wording, as most services give it: who, what, on which resource.
    ("AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/task/abc is not authorized to perform: "
     "dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/ledger because no identity-based policy "
     "allows the dynamodb:PutItem action",
     ("arn:aws:sts::123456789012:assumed-role/task/abc", "dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:123456789012:table/ledger")),
    # moto's enforcement names no resource; EC2 wraps IAM's sentence in its own.
    ("AccessDenied", "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: ecs:RunTask",
     ("arn:aws:iam::123456789012:user/ops", "ecs:RunTask", "a resource AWS did not name")),
    ("UnauthorizedOperation", "You are not authorized to perform this operation. User: arn:aws:iam::1:user/u is not authorized "
     "to perform: ec2:DescribeInstances on resource: *, with an explicit deny",
     ("arn:aws:iam::1:user/u", "ec2:DescribeInstances", "*")),
    # S3's bare refusal: the call and the caller come from what liftoff knows.
    ("AccessDenied", "Access Denied", ("arn:aws:iam::1:user/me", "GetObject (AWS did not name the action)", "a resource AWS did not name")),
])
def test_a_refusal_names_who_may_not_call_what_on_which_resource(code, message, expected):
    found = d.denial(code, message, operation="GetObject", principal="arn:aws:iam::1:user/me")
    assert (found.principal, found.action, found.resource) == expected
    assert found.text() == f"access denied: {expected[0]} may not call {expected[1]} on {expected[2]}"


def test_other_errors_are_not_refusals():
    assert d.denial("ThrottlingException", "User: x is not authorized to perform: a:b", operation="X") is None
    assert d.denial("ValidationError", "Stack does not exist", operation="DescribeStacks") is None
