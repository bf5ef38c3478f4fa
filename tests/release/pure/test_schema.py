"""release/pure/schema.py: the pure schema decisions, tested directly (no AWS, no clock, no database)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from config import RollbackWindow
from release.pure import decisions as d
from release.pure import schema as s

LABELS_1_2_0 = {
    s.LABEL_RELEASE: "1.2.0", s.LABEL_HEAD: "0003_require_note_title",
    s.LABEL_REQUIRES: "0002_add_note_title", s.LABEL_CONTRACTS: "0003_require_note_title:1.0.0",
}
IMAGE_1_0_0 = s.ImageSchema("1.0.0", "1.0.0", "0001_create_notes", "0001_create_notes")
IMAGE_1_1_0 = s.ImageSchema("1.1.0", "1.1.0", "0002_add_note_title", "0002_add_note_title")
IMAGE_1_2_0 = s.parse_labels("1.2.0", LABELS_1_2_0)
EXPANDED = s.SchemaState(applied=("0001_create_notes", "0002_add_note_title"))
CONTRACTED = s.SchemaState(applied=("0001_create_notes", "0002_add_note_title", "0003_require_note_title"),
                           contracts={"0003_require_note_title": "1.0.0"})
DAY = 86400.0
NOW = datetime(2026, 11, 28, 12, tzinfo=timezone.utc).timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def switch(frm: str, to: str, at: float, gate: str = "activate", result: str = d.RESULT_SUCCEEDED) -> d.Entry:
    return d.Entry(release_id=f"{frm}-{to}", gate=gate, from_version=frm, to_version=to, who="me", started_at=iso(at),
                   finished_at=iso(at), result=result)


# --- labels ---------------------------------------------------------------------------------------

def test_labels_parse_into_the_image_contract():
    assert IMAGE_1_2_0 == s.ImageSchema("1.2.0", "1.2.0", "0003_require_note_title", "0002_add_note_title",
                                        (("0003_require_note_title", "1.0.0"),))


def test_an_image_without_the_head_label_declares_no_contract():
    assert s.parse_labels("1.0.0", {}) is None
    assert s.parse_labels("1.0.0", None) is None
    assert s.parse_labels("1.0.0", {"org.opencontainers.image.version": "1.0.0"}) is None


@pytest.mark.parametrize("label, value, says", [
    (s.LABEL_RELEASE, "one", "label io.liftoff.release='one' is not a release like 1.4.2"),
    (s.LABEL_REQUIRES, "0002; DROP", "label io.liftoff.schema.requires='0002; DROP' is not a migration id"),
    (s.LABEL_CONTRACTS, "0003", "label io.liftoff.schema.contracts has '0003'; expected MIGRATION_ID:X.Y.Z items"),
    (s.LABEL_CONTRACTS, "0003:soon", "label io.liftoff.schema.contracts has '0003:soon'"),
])
def test_malformed_labels_are_refused_naming_the_tag_and_the_label(label, value, says):
    with pytest.raises(s.LabelError, match=f"image 1.2.0: {__import__('re').escape(says)}"):
        s.parse_labels("1.2.0", {**LABELS_1_2_0, label: value})


# --- can a version run on the schema? -------------------------------------------------------------

def test_a_version_runs_when_its_expand_steps_are_applied_and_no_contract_retired_it():
    assert s.fit(IMAGE_1_1_0, EXPANDED).kind == s.FIT_OK
    assert s.fit(IMAGE_1_0_0, EXPANDED).kind == s.FIT_OK  # the expand step is ignorable by 1.0.0
    assert s.fit(IMAGE_1_2_0, CONTRACTED).kind == s.FIT_OK


def test_missing_expand_steps_mean_migrate_first():
    verdict = s.fit(IMAGE_1_1_0, s.SchemaState(applied=("0001_create_notes",)))
    assert (verdict.kind, verdict.steps) == (s.FIT_NEEDS_MIGRATE, ("0002_add_note_title",))
    assert verdict.message == "1.1.0 needs expand step 0002_add_note_title, which is not applied (schema head 0001_create_notes)"


def test_an_applied_contract_leaves_every_release_up_to_its_after_retiring_behind():
    verdict = s.fit(IMAGE_1_0_0, CONTRACTED)
    assert verdict.kind == s.FIT_LEFT_BEHIND and verdict.steps == ("0003_require_note_title",)
    assert "contract step 0003_require_note_title (after-retiring 1.0.0) removed what it needs" in verdict.message
    older = s.ImageSchema("0.9.0", "0.9.0", "0001_create_notes", "")
    assert s.fit(older, CONTRACTED).kind == s.FIT_LEFT_BEHIND
    # Compared as numbers: 1.10.0 is newer than 1.9.0.
    assert s.fit(s.ImageSchema("x", "1.10.0", "a", ""), s.SchemaState(("a",), {"c": "1.9.0"})).kind == s.FIT_OK


def test_unknown_without_labels_or_without_a_recorded_state():
    assert s.fit(None, EXPANDED, tag="abc1234").kind == s.FIT_UNKNOWN
    assert s.fit(IMAGE_1_1_0, None).kind == s.FIT_UNKNOWN


def test_the_switch_gate_refuses_left_behind_and_missing_expands_with_what_to_do():
    behind = s.decide_switch("1.0.0", IMAGE_1_0_0, CONTRACTED, stage="production")
    assert behind.exit_code == d.EXIT_REFUSED and "--force does not override this" in behind.hint
    needs = s.decide_switch("1.1.0", IMAGE_1_1_0, s.SchemaState(("0001_create_notes",)), stage="production")
    assert needs.exit_code == d.EXIT_REFUSED
    assert "liftoff migrate --stage production --version 1.1.0" in needs.hint and "--migrate" in needs.hint
    assert s.decide_switch("1.1.0", IMAGE_1_1_0, EXPANDED, stage="production") is None
    assert s.decide_switch("1.1.0", None, EXPANDED, stage="production") is None  # cannot tell: not refused


# --- who holds a contract step --------------------------------------------------------------------

def test_active_and_staged_always_hold():
    found = s.holders(active="1.1.0", staged="1.2.0", entries=[], now=NOW, window=RollbackWindow(releases=0), bake_seconds=0)
    assert [(h.version, h.why) for h in found] == [("1.1.0", "active"), ("1.2.0", "staged")]


def test_the_version_replaced_last_is_warm_for_bake_seconds():
    entries = [switch("1.0.0", "1.1.0", NOW - 100)]
    warm = s.holders(active="1.1.0", staged="1.1.0", entries=entries, now=NOW, window=RollbackWindow(releases=0), bake_seconds=300)
    assert [(h.version, h.why) for h in warm] == [("1.1.0", "active"), ("1.0.0", "warm")]
    cold = s.holders(active="1.1.0", staged="1.1.0", entries=entries, now=NOW + 300, window=RollbackWindow(releases=0), bake_seconds=300)
    assert [h.version for h in cold] == ["1.1.0"]


def test_a_release_window_keeps_the_last_n_versions_replaced():
    entries = [switch("1.2.0", "1.3.0", NOW - 3 * DAY), switch("1.1.0", "1.2.0", NOW - 4 * DAY), switch("1.0.0", "1.1.0", NOW - 5 * DAY)]
    found = s.holders(active="1.3.0", staged="1.3.0", entries=entries, now=NOW, window=RollbackWindow(releases=2), bake_seconds=0)
    assert [(h.version, h.why) for h in found] == [
        ("1.3.0", "active"), ("1.2.0", "rollback window (the last 2 release(s))"), ("1.1.0", "rollback window (the last 2 release(s))")]
    assert found[2].leaves == "after 1 more activation(s) of other versions"


def test_a_days_window_keeps_what_was_replaced_in_the_last_d_days_and_says_when_it_leaves():
    entries = [switch("1.1.0", "1.2.0", NOW - 2 * DAY), switch("1.0.0", "1.1.0", NOW - 9 * DAY)]
    found = s.holders(active="1.2.0", staged="1.2.0", entries=entries, now=NOW, window=RollbackWindow(releases=None, days=7), bake_seconds=0)
    assert [h.version for h in found] == ["1.2.0", "1.1.0"]
    assert found[1].leaves == f"at {iso(NOW + 5 * DAY).replace('.000', '')[:19]}Z"


def test_refused_and_rolled_back_activations_never_put_a_version_in_the_window():
    entries = [switch("1.1.0", "9.9.9", NOW - 10, result=d.RESULT_REFUSED), switch("1.1.0", "9.9.8", NOW - 20, result=d.RESULT_ROLLED_BACK),
               switch("1.0.0", "1.1.0", NOW - DAY)]
    found = s.holders(active="1.1.0", staged="1.1.0", entries=entries, now=NOW, window=RollbackWindow(releases=5), bake_seconds=0)
    assert [h.version for h in found] == ["1.1.0", "1.0.0"]


def test_a_rollback_window_after_a_rollback_still_names_each_version_once():
    entries = [switch("1.1.0", "1.0.0", NOW - 10, gate="rollback"), switch("1.0.0", "1.1.0", NOW - DAY)]
    found = s.holders(active="1.0.0", staged="1.1.0", entries=entries, now=NOW, window=RollbackWindow(releases=3), bake_seconds=0)
    assert [(h.version, h.why) for h in found] == [("1.0.0", "active"), ("1.1.0", "staged")]


# --- which contract steps may run -----------------------------------------------------------------

def test_a_contract_is_held_while_a_holder_is_a_release_it_retires():
    holding = [s.Holder("1.1.0", "active"), s.Holder("1.0.0", "rollback window (the last 1 release(s))", "after 1 more activation(s)")]
    plan = s.decide_contracts(IMAGE_1_2_0, EXPANDED, holding, {"1.1.0": "1.1.0", "1.0.0": "1.0.0"})
    assert (plan.allowed, plan.held, plan.held_after_retiring) == ((), "0003_require_note_title", "1.0.0")
    assert [h.version for h in plan.held_by] == ["1.0.0"]
    assert "still needed by 1.0.0 (rollback window (the last 1 release(s)); leaves after 1 more activation(s))" in plan.describe()


def test_a_contract_runs_once_nothing_that_needs_the_old_shape_is_left():
    plan = s.decide_contracts(IMAGE_1_2_0, EXPANDED, [s.Holder("1.2.0", "active"), s.Holder("1.1.0", "warm")],
                              {"1.2.0": "1.2.0", "1.1.0": "1.1.0"})
    assert (plan.allowed, plan.held) == (("0003_require_note_title",), None)
    assert s.decide_contracts(IMAGE_1_2_0, CONTRACTED, [], {}).allowed == ()  # already applied: nothing to allow


def test_a_holder_whose_image_declares_no_release_holds_every_contract():
    plan = s.decide_contracts(IMAGE_1_2_0, EXPANDED, [s.Holder("abc1234", "rollback window")], {"abc1234": None})
    assert plan.held == "0003_require_note_title"


def test_a_held_contract_holds_every_later_one():
    image = s.ImageSchema("2.0.0", "2.0.0", "0005", "0004", (("0003", "1.0.0"), ("0005", "1.5.0")))
    plan = s.decide_contracts(image, EXPANDED, [s.Holder("1.2.0", "active")], {"1.2.0": "1.2.0"})
    assert (plan.allowed, plan.held) == (("0003",), "0005")


def test_migrate_defaults_to_the_staged_version():
    assert s.migrate_target(None, active="1.1.0", staged="1.2.0") == "1.2.0"
    assert s.migrate_target(None, active="1.1.0", staged=None) == "1.1.0"
    assert s.migrate_target("1.0.0", active="1.1.0", staged="1.2.0") == "1.0.0"


def test_the_state_line_is_found_among_the_run_output():
    output = "\n".join([
        "2026-11-28T00:00:00Z liftoff-migrate: pulling",
        '{"message": "applying migration", "migration": "0002"}',
        "not json {",
        '{"message": "schema state", "schema": {"applied": ["0001", "0002"], "contracts": {}}}',
    ])
    assert s.parse_state_line(output) == {"applied": ["0001", "0002"], "contracts": {}}
    assert s.parse_state_line("no state here") is None
