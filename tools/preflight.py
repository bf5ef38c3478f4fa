"""Checks before `make deploy TARGET=aws` hands a stage to the CDK CLI (`python -m tools.preflight`).

In order, each stopping with exit 2 and what to do: the stage's config; a region (with the stage's
certificate_arn, if any, in it); AWS credentials that work (and are for the stage's account when it
pins one); on a first deploy (no service stack yet), an IMAGE_TAG. The stage's warnings (a protected stage serving plain HTTP) print once, here.
Nothing is changed in AWS: the calls are GetCallerIdentity and DescribeStacks.
"""
from __future__ import annotations

import argparse
import sys
from typing import TextIO

from config import ConfigError, StageConfig, check_release_tag, load_config

CREDENTIALS_FIX = (
    "configure credentials for the target account: `aws configure` or `aws sso login --profile NAME` "
    "and `export AWS_PROFILE=NAME`, or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN); "
    "`aws sts get-caller-identity` must work"
)


class PreflightError(RuntimeError):
    pass


def check(stage: StageConfig, *, image_tag: str | None, session=None) -> list[str]:
    """Raise PreflightError naming the problem and the fix; return what was checked, for the log."""
    import boto3
    import botocore.exceptions

    session = session or boto3.session.Session()
    region = stage.region or session.region_name
    if region is None:
        raise PreflightError(
            f"no AWS region for stage {stage.name!r}: set region (with account) in cdk.json, or export "
            "AWS_REGION and AWS_DEFAULT_REGION (the CDK CLI reads the first, boto3 the second)"
        )
    # config compares a pinned stage's region with its certificate's; an unpinned stage's region is known only now.
    certificate_region = stage.certificate_arn.split(":")[3] if stage.certificate_arn else region
    if certificate_region != region:
        raise PreflightError(
            f"stage {stage.name!r} would deploy to region {region}, but its certificate_arn is in {certificate_region} "
            f"(ACM certificates are regional: request or import one in {region}, or point AWS_REGION and "
            f"AWS_DEFAULT_REGION at {certificate_region})"
        )
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        raise PreflightError(f"no AWS credentials found; {CREDENTIALS_FIX}") from None
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        raise PreflightError(f"AWS refused the credentials ({error}); {CREDENTIALS_FIX}") from None
    if stage.account is not None and identity["Account"] != stage.account:
        raise PreflightError(
            f"the credentials are for account {identity['Account']}, but stage {stage.name!r} is pinned to "
            f"account {stage.account} in cdk.json; switch credentials (AWS_PROFILE) to that account"
        )
    checked = [f"credentials: {identity['Arn']}", f"region: {region}"]
    cloudformation = session.client("cloudformation", region_name=region)
    try:
        cloudformation.describe_stacks(StackName=stage.service_stack_name)
        first_deploy = False
    except botocore.exceptions.ClientError as error:
        if "does not exist" not in str(error):
            raise PreflightError(f"cannot read stack {stage.service_stack_name} ({error})") from None
        first_deploy = True
    if image_tag:
        try:
            check_release_tag(image_tag)
        except ConfigError as error:
            raise PreflightError(str(error)) from None
    elif first_deploy:
        raise PreflightError(
            f"first deploy of stage {stage.name!r} (stack {stage.service_stack_name} does not exist yet) needs "
            "IMAGE_TAG: the service starts on that release and its ImageTag parameter has no default, so that a "
            "version is always named on purpose. Deploy the registry (npx cdk deploy "
            f"{stage.registry_stack_name}), push an image (README, Deploy to a real AWS account), then run "
            f"`make deploy TARGET=aws STAGE={stage.name} IMAGE_TAG=<that tag>`"
        )
    checked.append(
        f"image tag: {image_tag}" if image_tag else f"image tag: kept (stack {stage.service_stack_name} exists)"
    )
    return checked


def main(argv: list[str] | None = None, *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True)
    parser.add_argument("--image-tag", default="")
    parser.add_argument("--cdk-json", default="cdk.json")
    args = parser.parse_args(argv)
    from pathlib import Path

    try:
        stage = load_config(Path(args.cdk_json)).stage(args.stage)
    except ConfigError as error:
        print(f"make deploy: {error}", file=stderr)
        return 2
    for warning in stage.warnings():
        print(f"liftoff: warning: {warning}", file=stderr)
    try:
        checked = check(stage, image_tag=args.image_tag or None)
    except PreflightError as error:
        print(f"make deploy: {error}", file=stderr)
        return 2
    for line in checked:
        print(f"preflight {stage.name}: {line}", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
