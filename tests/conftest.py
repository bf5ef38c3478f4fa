"""Session-wide fixtures: the CDK app is synthesized once per session (jsii start-up costs seconds)."""
from __future__ import annotations

import pytest

from tests.helpers.synth import Synthesis, cdk_context, synthesize

pytest_plugins = ["tests.helpers.emulator_fixtures", "tests.helpers.docker_fixtures"]


@pytest.fixture(scope="session")
def shipped(tmp_path_factory) -> Synthesis:
    """The app as shipped in cdk.json."""
    return synthesize(cdk_context(), tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture(scope="session")
def synth_variant(tmp_path_factory):
    """Synthesize the app with a changed `liftoff` context (each call costs ~0.5 s after the first)."""

    def build_variant(liftoff_context: dict) -> Synthesis:
        context = {**cdk_context(), "liftoff": liftoff_context}
        return synthesize(context, tmp_path_factory.mktemp("cdk.variant"))

    return build_variant
