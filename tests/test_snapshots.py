"""A safety net under the fine-grained tests: any template change shows up as a reviewable diff.

Refresh after an intended change with `make snapshots` and review the diff in git.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SNAPSHOTS = Path(__file__).parent / "snapshots"
STACKS = ["staging-registry", "staging-data", "staging-service", "production-data", "production-service"]


def comparable(template: dict) -> dict:
    # CDK's analytics metadata changes with every library release and carries no behaviour.
    template = json.loads(json.dumps(template))
    template.get("Resources", {}).pop("CDKMetadata", None)
    template.get("Conditions", {}).pop("CDKMetadataAvailable", None)
    return template


@pytest.mark.parametrize("stack", STACKS)
def test_template_matches_snapshot(shipped, stack):
    path = SNAPSHOTS / f"{stack}.template.json"
    actual = comparable(shipped.templates[stack])
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert path.exists(), f"no snapshot for {stack}; run `make snapshots`"
    assert actual == json.loads(path.read_text()), f"{stack} changed; review it and run `make snapshots`"


def test_every_stack_has_a_snapshot(shipped):
    assert sorted(shipped.templates) == sorted(STACKS)
