"""local/deploy.py's before/after table: it never calls something unchanged that the emulator cannot change."""
from __future__ import annotations

from local.deploy import NOT_MODELLED, change_lines

BEFORE = {
    "staging-service parameter ImageTag": "1.0.0",
    "ECS task definition": "task:1",
    "ECS container image": "repo:1.0.0",
    "ECS desired count": "1",
}


def test_rows_moto_keeps_say_the_emulator_cannot_show_the_change():
    after = {**BEFORE, "staging-service parameter ImageTag": "1.1.0"}
    lines = dict(zip(BEFORE, change_lines(BEFORE, after)))
    assert lines["staging-service parameter ImageTag"].endswith("1.0.0 -> 1.1.0  (changed)")
    assert "(the emulator cannot show this change: moto keeps the task definition on a stack update" in lines["ECS task definition"]
    assert "(the emulator cannot show this change: moto keeps the task definition's image" in lines["ECS container image"]
    # Not driven by the tag: truly unchanged.
    assert lines["ECS desired count"].endswith("1 -> 1  (unchanged)")
    assert not any("(unchanged)" in line for key, line in lines.items() if key.startswith("ECS t") or key.startswith("ECS c"))


def test_without_a_tag_change_unchanged_means_unchanged():
    lines = change_lines(BEFORE, dict(BEFORE))
    assert all(line.endswith("(unchanged)") for line in lines)


def test_unmodelled_rows_print_no_arrow():
    (line,) = change_lines({"SSM stage/activate associations": NOT_MODELLED}, {"SSM stage/activate associations": NOT_MODELLED})
    assert "->" not in line and "unchanged" not in line
    assert line.strip() == f"SSM stage/activate associations  ({NOT_MODELLED}: the change cannot be shown)"
