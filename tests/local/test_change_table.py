"""local/deploy.py's before/after table: changed where it changed, and no arrow where the emulator models nothing."""
from __future__ import annotations

from local.deploy import NOT_MODELLED, change_lines

BEFORE = {
    "staging-service parameter ImageTag": "1.0.0",
    "ECS task definition": "task:1",
    "ECS container image": "repo:1.0.0",
    "ECS desired count": "1",
}


def test_rows_say_changed_where_the_value_changed():
    after = {**BEFORE, "staging-service parameter ImageTag": "1.1.0", "ECS task definition": "task:2",
             "ECS container image": "repo:1.1.0"}
    lines = dict(zip(BEFORE, change_lines(BEFORE, after)))
    assert lines["staging-service parameter ImageTag"].endswith("1.0.0 -> 1.1.0  (changed)")
    assert lines["ECS task definition"].endswith("task:1 -> task:2  (changed)")
    assert lines["ECS container image"].endswith("repo:1.0.0 -> repo:1.1.0  (changed)")
    assert lines["ECS desired count"].endswith("1 -> 1  (unchanged)")


def test_without_a_tag_change_unchanged_means_unchanged():
    lines = change_lines(BEFORE, dict(BEFORE))
    assert all(line.endswith("(unchanged)") for line in lines)


def test_unmodelled_rows_print_no_arrow():
    (line,) = change_lines({"SSM stage/activate associations": NOT_MODELLED}, {"SSM stage/activate associations": NOT_MODELLED})
    assert "->" not in line and "unchanged" not in line
    assert line.strip() == f"SSM stage/activate associations  ({NOT_MODELLED}: the change cannot be shown)"
