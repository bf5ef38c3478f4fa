"""pytest fixtures for a liftoff stage deployed in moto's in-process emulator (see emulated_stage.py).

- `emulator_assembly` (session): the synthesized cloud assembly the stages are built from (the
  `shipped` synthesis, made once per session).
- `fake_aws_env` (function): fake credentials and region us-east-1 in the environment, any
  endpoint/profile settings removed, so boto3 clients created in a test can only reach moto.
- `emulated_aws` (function): `fake_aws_env` plus an active `moto.mock_aws()`; yields nothing useful.
- `emulated_staging` (function): an `EmulatedStage` for `staging` with images 1.0.0 and 1.1.0 pushed and scanned
  and ImageTag = StagedImageTag = 1.0.0.
- `deploy_emulated_stage` (function): `deploy_emulated_stage(stage_name, **deploy_stage_kwargs)` ->
  `EmulatedStage`, for other stages (production after staging reuses the shared registry stack).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from config import load_config
from local.aws import FAKE_ENVIRONMENT
from tests.helpers.emulated_stage import EmulatedStage, deploy_stage
from tests.helpers.synth import CDK_JSON

DEMO_RELEASE_TAGS = ("1.0.0", "1.1.0")
# Settings that would send boto3 elsewhere than the in-process emulator.
_AWS_ROUTING_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="session")
def emulator_assembly(shipped) -> Path:
    return shipped.outdir


@pytest.fixture
def fake_aws_env(monkeypatch, tmp_path):
    for name in _AWS_ROUTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in FAKE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    # No real ~/.aws files can leak in.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config-absent"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials-absent"))


@pytest.fixture
def emulated_aws(fake_aws_env):
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def deploy_emulated_stage(emulated_aws, emulator_assembly):
    config = load_config(CDK_JSON)

    def deploy(stage_name: str, **kwargs) -> EmulatedStage:
        return deploy_stage(emulator_assembly, config.stage(stage_name), **kwargs)

    return deploy


@pytest.fixture
def emulated_staging(deploy_emulated_stage) -> EmulatedStage:
    return deploy_emulated_stage("staging", image_tag="1.0.0", staged_image_tag="1.0.0", push_tags=DEMO_RELEASE_TAGS)
