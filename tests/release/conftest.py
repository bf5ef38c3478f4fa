"""Fixtures for the release tool: the emulated staging stage plus what the tool needs on top of it.

The emulator fixture (tests/helpers/emulator_fixtures.py) pushes images 1.0.0 and 1.1.0 but starts no
image scan (moto ignores scan-on-push), and the tool refuses an image without a completed scan; so
`released_staging` starts one per image. moto's default scan result is one HIGH finding, under the
default CRITICAL threshold.
"""
from __future__ import annotations

import pytest

from tests.helpers.emulator_fixtures import (  # noqa: F401  (fixtures, used by name)
    deploy_emulated_stage, emulated_aws, emulated_staging, emulator_assembly, fake_aws_env,
)
from tests.release.helpers import ReleaseStage


@pytest.fixture
def released_staging(emulated_staging) -> ReleaseStage:
    stage = ReleaseStage(emulated_staging)
    stage.scan("1.0.0", "1.1.0")
    return stage
