"""The local world's people and machines as IAM principals with credentials moto issued, so the emulator holds each
one to its own policies (local/moto_iam.py) instead of letting the harness's all-powerful identity do their calls.

The operator of a stage is an IAM user with that stage's `liftoff-<stage>-operator` policy (deployed by the service
stack: components/operator_policy.py), as docs/security.md recommends for the people who run `liftoff`.
"""
from __future__ import annotations

import boto3

from config import operator_policy_name
from local import aws


def operator_user_name(stage: str) -> str:
    return f"liftoff-{stage}-operator"


def operator_session(admin: aws.EndpointSession, stage: str, *, region: str = aws.FAKE_ENVIRONMENT["AWS_REGION"],
                     policy_arns: list[str] | None = None) -> aws.EndpointSession:
    """A session of the stage's operator (created, or found, by the harness `admin`), bound to the same emulator.

    `policy_arns` attaches other policies instead (a person with the wrong stage's policy, say)."""
    iam = admin.client("iam")
    user = operator_user_name(stage)
    try:
        iam.get_user(UserName=user)
    except iam.exceptions.NoSuchEntityException:
        iam.create_user(UserName=user, Tags=[{"Key": "liftoff:stage", "Value": stage}])
    wanted = policy_arns if policy_arns is not None else [f"arn:aws:iam::{aws.EMULATED_ACCOUNT}:policy/{operator_policy_name(stage)}"]
    attached = {p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]}
    for arn in attached - set(wanted):
        iam.detach_user_policy(UserName=user, PolicyArn=arn)
    for arn in set(wanted) - attached:
        iam.attach_user_policy(UserName=user, PolicyArn=arn)
    # IAM allows a user two keys: each session gets a fresh one and the older ones go.
    for key in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    session = boto3.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                            region_name=region)
    return aws.EndpointSession(session, admin.endpoint_url)
