from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.synth import cdk_app, cdk_context, synthesize


def test_every_template_passes_cfn_lint_without_warnings(shipped):
    templates = sorted(str(path) for path in Path(shipped.outdir).glob("*.template.json"))
    assert len(templates) == len(shipped.templates)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *templates], capture_output=True, text=True
    )
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr


def test_the_shipped_app_passes_the_cdks_own_cloudformation_validation_with_findings_as_errors(tmp_path):
    # Every other synth in the suite skips the validator (tests/helpers/synth.py): it runs here, once.
    synthesis = synthesize(cdk_context(), tmp_path, validated=True)  # raises, naming each finding, if it finds any
    assert {"production-service", "staging-service"} <= set(synthesis.templates)


def test_the_validator_refuses_a_resource_it_finds_wrong_so_the_test_above_can_fail(tmp_path):
    import aws_cdk as cdk

    app = cdk_app(cdk_context(), tmp_path, validated=True)
    stack = cdk.Stack(app, "wrong")
    cdk.CfnResource(stack, "Queue", type="AWS::SQS::Queue", properties={"VisibilityTimeout": "not-a-number"})
    with pytest.raises(RuntimeError, match=r"ValidationFailed: ERROR VisibilityTimeout: 'not-a-number' is not of type 'integer'"):
        app.synth()
