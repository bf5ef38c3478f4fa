"""tools/preflight.py: what `make deploy TARGET=aws` checks before the CDK CLI runs."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess

import pytest

from config import load_config
from tests.helpers.synth import CDK_JSON, REPO
from tools.preflight import PreflightError, check, main

MOTO_ACCOUNT = "123456789012"


def staging():
    return load_config(CDK_JSON).stage("staging")


def test_make_deploy_aws_without_credentials_stops_before_the_cli_with_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "absent-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "absent-credentials"),
        # Never ask an instance metadata service: this machine has none, and the test must not leave loopback.
        AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="eu-west-1", AWS_REGION="eu-west-1",
    )
    result = subprocess.run(["make", "--no-print-directory", "deploy", "TARGET=aws", "STAGE=production"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "make deploy: no AWS credentials found; configure credentials for the target account: `aws configure`" in result.stderr
    # The protected production stage serves plain HTTP: said once, before anything else happens.
    assert result.stderr.count("serves plain HTTP") == 1
    assert "cdk deploy" not in result.stdout  # make never reached the CLI line


def test_first_deploy_without_image_tag_is_refused_with_why(emulated_aws):
    with pytest.raises(PreflightError, match=r"first deploy of stage 'staging' \(stack staging-service does not exist yet\) needs IMAGE_TAG: .*ImageTag parameter has no default"):
        check(staging(), image_tag=None)
    assert "image tag: 1.0.0" in check(staging(), image_tag="1.0.0")
    with pytest.raises(PreflightError, match="image tag 'latest' is not allowed"):
        check(staging(), image_tag="latest")


def test_later_deploys_may_omit_the_image_tag(emulated_aws):
    import boto3

    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    boto3.client("cloudformation").create_stack(StackName="staging-service", TemplateBody=json.dumps(template))
    assert "image tag: kept (stack staging-service exists)" in check(staging(), image_tag=None)


def test_credentials_for_another_account_are_refused(emulated_aws):
    pinned = dataclasses.replace(staging(), account="111111111111", region="us-east-1")
    with pytest.raises(PreflightError, match=f"the credentials are for account {MOTO_ACCOUNT}, but stage 'staging' is pinned to account 111111111111"):
        check(pinned, image_tag="1.0.0")
    assert any(line.startswith("credentials: arn:aws:") for line in check(dataclasses.replace(pinned, account=MOTO_ACCOUNT), image_tag="1.0.0"))


def test_no_region_is_named(emulated_aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(PreflightError, match="no AWS region for stage 'staging': set region"):
        check(staging(), image_tag="1.0.0")


def test_main_exit_codes(emulated_aws):
    out, err = io.StringIO(), io.StringIO()
    assert main(["--stage", "staging", "--cdk-json", str(CDK_JSON)], stdout=out, stderr=err) == 2
    assert "needs IMAGE_TAG" in err.getvalue()
    assert main(["--stage", "prod", "--cdk-json", str(CDK_JSON)], stdout=out, stderr=err) == 2
    assert "unknown stage 'prod'" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert main(["--stage", "staging", "--image-tag", "1.0.0", "--cdk-json", str(CDK_JSON)], stdout=out, stderr=err) == 0
    assert "preflight staging: image tag: 1.0.0" in out.getvalue()
    assert err.getvalue() == ""  # staging is not protected: no plain-HTTP warning


def test_a_certificate_from_another_region_than_the_deploy_is_refused_before_any_aws_call():
    from types import SimpleNamespace

    arn = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"
    unpinned = dataclasses.replace(staging(), certificate_arn=arn)
    # The session is never asked for a client: the region alone decides.
    with pytest.raises(PreflightError) as refused:
        check(unpinned, image_tag="1.0.0", session=SimpleNamespace(region_name="eu-west-1"))
    assert str(refused.value).startswith("stage 'staging' would deploy to region eu-west-1, but its certificate_arn is in us-east-1")


def test_a_certificate_in_the_deploy_region_passes(emulated_aws):
    import boto3

    arn = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"
    session = boto3.session.Session(region_name="us-east-1")
    assert "region: us-east-1" in check(dataclasses.replace(staging(), certificate_arn=arn), image_tag="1.0.0", session=session)
