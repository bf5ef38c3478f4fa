"""`synthesize_variant`: the app run the way the CDK CLI runs it, with some stage settings changed
(the benchmark's `activation: restart` scenario)."""
from __future__ import annotations

import json

import pytest

from config import load_config
from local.deploy import DeployError, synthesize_variant
from tests.helpers.synth import CDK_JSON

pytestmark = pytest.mark.cost(minutes=0.15)  # alone, on 2 cores: the costliest start first (tests/conftest.py)


def test_a_variant_is_synthesized_with_its_own_config_and_a_setting_of_none_removes_the_key(tmp_path):
    # One synth for both (a run of app.py with its jsii kernel costs ~10 CPU-s). Rolling keeps nothing warm, so the
    # config refuses bake_seconds with it: the variant drops the shipped key.
    outdir = synthesize_variant({"production": {"activation": "restart"},
                                 "staging": {"deployment_strategy": "rolling", "bake_seconds": None}}, tmp_path / "variant")
    template = (outdir / "production-service.template.json").read_text()
    assert "ACTIVATION=restart" in template and "SLOT_A_PORT" not in template
    config = load_config(outdir / "cdk.json")
    assert config.stage("production").activation == "restart"
    stage = json.loads((outdir / "cdk.json").read_text())["context"]["liftoff"]["stages"]["staging"]
    assert stage["deployment_strategy"] == "rolling" and "bake_seconds" not in stage
    assert config.stage("staging").deployment_strategy == "rolling"
    assert stage["compute"] == "ecs"  # what the variant does not change is the shipped stage's
    # The shipped cdk.json is untouched.
    assert json.loads(CDK_JSON.read_text())["context"]["liftoff"]["stages"]["staging"]["deployment_strategy"] == "blue_green"


def test_a_variant_the_config_refuses_says_why(tmp_path):
    with pytest.raises(DeployError, match="container_memory_mib = 4096 is not allowed"):
        synthesize_variant({"production": {"container_memory_mib": 4096}}, tmp_path / "bad")
