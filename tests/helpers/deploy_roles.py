"""The GitHub deploy roles (`liftoff-<stage>-github-deploy`) in a running emulator, with exactly the policies the app
synthesizes for them, and their credentials the way a GitHub Actions job gets them.

The shipped cdk.json has no GitHub repository, so the emulator's stages carry no deploy roles: the app synthesized with
`liftoff_context()` has a `github` section for the emulator's account and region (so the policies' ARNs are the
emulator's), `create` puts one role into moto as the harness (its trust policy and its policies, resolved by
local.iam_verdict.Synthesized), and `web_identity_environment` assumes it with AssumeRoleWithWebIdentity, as
aws-actions/configure-aws-credentials does, and returns the AWS_* variables a pipeline step runs with.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass

import botocore
from botocore.config import Config

from components.github_oidc import GITHUB_OIDC_URL, STS_AUDIENCE
from config import github_role_name
from local import aws
from local.iam_verdict import Policies, Synthesized
from tests.helpers.synth import cdk_context

REGION = aws.FAKE_ENVIRONMENT["AWS_REGION"]
GITHUB = {"repository": "my-org/my-service", "account": aws.EMULATED_ACCOUNT, "region": REGION}
# The role session's name (configure-aws-credentials' `role-session-name`): the last part of the caller's ARN.
SESSION_NAME = "github-actions"


def liftoff_context() -> dict:
    """cdk.json's `liftoff` context with its `github` section switched on for the emulator's account and region
    (synthesize it with the `synth_variant` fixture)."""
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["github"].update(GITHUB)
    return context


@dataclass(frozen=True)
class DeployRole:
    stage: str
    arn: str
    policies: Policies  # what the synthesized role holds (the verdict's input)


def _role_resource(synthesized: Synthesized, stage: str) -> tuple[str, str]:
    name = github_role_name(stage)
    for stack, template in synthesized.templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("Type") == "AWS::IAM::Role" and (resource.get("Properties") or {}).get("RoleName") == name:
                return stack, logical_id
    raise LookupError(f"no role {name} in the templates ({', '.join(synthesized.templates)}): is the github section on?")


def synthesized_role(synthesized: Synthesized, stage: str) -> DeployRole:
    """The stage's deploy role as the templates define it, with its resolved identity policies."""
    arn = synthesized.principal_arn(*_role_resource(synthesized, stage))
    return DeployRole(stage=stage, arn=arn, policies=synthesized.policies_of(arn))


def _github_provider(admin: aws.EndpointSession) -> str:
    """The account's GitHub OIDC provider in the emulator (created once): the ARN the trust policy names."""
    iam = admin.client("iam")
    issuer = GITHUB_OIDC_URL.removeprefix("https://")
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        if provider["Arn"].endswith(f":oidc-provider/{issuer}"):
            return provider["Arn"]
    return iam.create_open_id_connect_provider(Url=GITHUB_OIDC_URL, ClientIDList=[STS_AUDIENCE],
                                               ThumbprintList=["0" * 40])["OpenIDConnectProviderArn"]


def create(admin: aws.EndpointSession, synthesized: Synthesized, stage: str) -> DeployRole:
    """Create (as the harness `admin`) the stage's deploy role in the emulator with its synthesized trust policy (naming
    the emulator's GitHub OIDC provider, created here) and its synthesized policies."""
    role = synthesized_role(synthesized, stage)
    if role.policies.aws_managed:
        raise ValueError(f"{role.arn} names AWS-managed policies {role.policies.aws_managed}: attach them here too")
    stack, logical_id = _role_resource(synthesized, stage)
    providers = [key for key, value in synthesized.templates[stack]["Resources"].items() if value["Type"] == "AWS::IAM::OIDCProvider"]
    with_provider = Synthesized(synthesized.templates, account=synthesized.where.account, region=synthesized.where.region,
                                partition=synthesized.where.partition,
                                physical_ids={stack: {key: _github_provider(admin) for key in providers}})
    trust = with_provider.resolve(stack, synthesized.resource(stack, logical_id)["Properties"]["AssumeRolePolicyDocument"])
    iam = admin.client("iam")
    name = role.arn.rsplit("/", 1)[1]
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                    Description=f"liftoff {stage}: GitHub Actions deploy role (as synthesized)")
    for policy in role.policies.documents:
        # A synthesized AWS::IAM::Policy attached to the role, put inline under its logical id (the same statements).
        iam.put_role_policy(RoleName=name, PolicyName=policy.name.rsplit("/", 1)[1], PolicyDocument=json.dumps(policy.document))
    return role


def web_identity_environment(admin: aws.EndpointSession, role_arn: str) -> dict[str, str]:
    """The AWS_* variables of a job that assumed `role_arn` with its OIDC token. AssumeRoleWithWebIdentity is unsigned,
    as on AWS. moto does not verify the token (nor the trust policy's conditions): any string is taken; the trust
    policy is the synthesized one, judged by the stack's own tests, not here."""
    sts = admin.client("sts", region_name=REGION, config=Config(signature_version=botocore.UNSIGNED))
    credentials = sts.assume_role_with_web_identity(RoleArn=role_arn, RoleSessionName=SESSION_NAME,
                                                    WebIdentityToken="not-a-real-github-oidc-token")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": credentials["SessionToken"]}


def session_principal(role_arn: str) -> str:
    """The principal the role's session calls as (what the emulator records and AWS's refusals name)."""
    name = role_arn.rsplit("/", 1)[1]
    return f"arn:aws:sts::{role_arn.split(':')[4]}:assumed-role/{name}/{SESSION_NAME}"
