"""release/adapters/runtime.py: LIFTOFF_RUNTIME names a factory; the release tool loads it by name and knows none."""
from __future__ import annotations

import sys
import types

import pytest

from config import load_config
from release.adapters.aws import Aws
from release.adapters.runtime import RuntimeRefused, adapter
from tests.helpers.synth import CDK_JSON

STAGE = load_config(CDK_JSON).stage("staging")


@pytest.fixture
def plugin(monkeypatch):
    module = types.ModuleType("liftoff_test_plugin")
    seen = {}

    def factory(*, stage, region, environ):
        seen.update(stage=stage.name, region=region, value=environ["LIFTOFF_RUNTIME"])
        return Aws(region=region)

    module.factory = factory
    module.not_callable = 3
    module.wrong = lambda **_: object()
    monkeypatch.setitem(sys.modules, "liftoff_test_plugin", module)
    return seen


def test_unset_is_aws():
    assert type(adapter(STAGE, "eu-west-1", {})) is Aws


def test_a_named_factory_is_called_with_the_stage_region_and_environment(plugin):
    made = adapter(STAGE, "eu-west-1", {"LIFTOFF_RUNTIME": "liftoff_test_plugin:factory"})
    assert isinstance(made, Aws) and plugin == {"stage": "staging", "region": "eu-west-1", "value": "liftoff_test_plugin:factory"}


@pytest.mark.parametrize("value, says", [
    ("kubernetes", "LIFTOFF_RUNTIME='kubernetes' does not name a runtime factory: expected module:callable"),
    ("no_such_module_here:factory", "cannot import no_such_module_here"),
    ("liftoff_test_plugin:missing", "liftoff_test_plugin has no factory 'missing'"),
    ("liftoff_test_plugin:not_callable", "liftoff_test_plugin has no factory 'not_callable'"),
    ("liftoff_test_plugin:wrong", "the factory returned object, not a release.adapters.aws.Aws"),
])
def test_a_value_that_names_no_usable_factory_is_refused_naming_it(plugin, value, says):
    with pytest.raises(RuntimeRefused) as refused:
        adapter(STAGE, None, {"LIFTOFF_RUNTIME": value})
    assert says in refused.value.message
