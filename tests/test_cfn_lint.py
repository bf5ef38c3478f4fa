from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.synth import cdk_context

# The flag that makes the validator's findings errors (as `cdk synth` does not by default: it warns).
VALIDATE_AGAINST_DEFAULT_RULES = "@aws-cdk/core:validateAgainstDefaultRules"


def test_every_template_passes_cfn_lint_without_warnings(shipped):
    templates = sorted(str(path) for path in Path(shipped.outdir).glob("*.template.json"))
    assert len(templates) == len(shipped.templates)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *templates], capture_output=True, text=True
    )
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr


def strictly_validated_app(outdir: Path):
    """An app that runs CDK's own CloudFormation validator with its findings as errors. Registered by hand, the plugin
    runs although the suite sets CDK_VALIDATION=false (tests/helpers/synth.py) for every other synth."""
    import aws_cdk as cdk

    app = cdk.App(outdir=str(outdir), context={**cdk_context(), VALIDATE_AGAINST_DEFAULT_RULES: True})
    cdk.Validations.of(app).add_plugins(cdk.CloudFormationValidatePlugin())
    return app


def test_the_shipped_app_passes_the_cdks_own_cloudformation_validation_with_findings_as_errors(tmp_path):
    from app import build
    from config import CONTEXT_KEY, parse_config

    app = strictly_validated_app(tmp_path)
    build(app, parse_config(cdk_context()[CONTEXT_KEY]))
    assembly = app.synth()  # raises, naming each finding, if the validator finds anything
    assert {stack.stack_name for stack in assembly.stacks} >= {"production-service", "staging-service"}


def test_the_validator_refuses_a_resource_it_finds_wrong_so_the_test_above_can_fail(tmp_path):
    import aws_cdk as cdk

    app = strictly_validated_app(tmp_path)
    stack = cdk.Stack(app, "wrong")
    cdk.CfnResource(stack, "Queue", type="AWS::SQS::Queue", properties={"VisibilityTimeout": "not-a-number"})
    with pytest.raises(RuntimeError, match=r"ValidationFailed: ERROR VisibilityTimeout: 'not-a-number' is not of type 'integer'"):
        app.synth()
