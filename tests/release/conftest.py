"""Fixtures for the release tool: the emulated staging stage plus what the tool needs on top of it.

The emulator fixture (tests/helpers/emulator_fixtures.py) pushes images 1.0.0 and 1.1.0 through
`local.aws.push_images`, which also starts each image's scan (what scan-on-push does on AWS; moto
ignores it), and the tool refuses an image without a completed scan. moto's default scan result is
one HIGH finding, under the default CRITICAL threshold. Images a test pushes itself it scans itself
(`ReleaseStage.scan`): moto refuses a second scan of the same image on the same day.
"""
from __future__ import annotations

import pytest

from tests.release.helpers import ReleaseStage


@pytest.fixture
def released_staging(emulated_staging) -> ReleaseStage:
    return ReleaseStage(emulated_staging)
