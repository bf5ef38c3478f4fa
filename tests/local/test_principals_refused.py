"""Each principal, with exactly the policies the app synthesizes for it, is refused at run time what its policy does not
allow, with AWS's sentence and liftoff's reading of it: the operator of one stage on another's stack and ledger, a
production host on staging's secret, the task role on the ledger, the execution role on another stage's secret.
(The deploy roles: tests/pipeline/test_pipeline_e2e.py. What each is allowed: the walks, which assert 0 refused.)"""
from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from local import aws, emulator
from local.iam_verdict import Synthesized
from local.principals import operator_session
from release.flows.context import client_error_text

ACCOUNT, REGION = aws.EMULATED_ACCOUNT, aws.FAKE_ENVIRONMENT["AWS_REGION"]
STAGING_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:staging-data/DatabaseSecret-AbCdEf"
PRODUCTION_SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:production-data/DatabaseSecret-AbCdEf"
STAGING_LEDGER = "staging-data-ReleaseLedger-GENERATED0000"


@pytest.fixture(scope="module")
def world(tmp_path_factory, shipped):
    state_dir = tmp_path_factory.mktemp("refused")
    running = emulator.start(state_dir)
    try:
        yield {"admin": aws.EndpointSession(aws.fake_session(), running.endpoint), "endpoint": running.endpoint,
               "synthesized": Synthesized(shipped.templates, account=ACCOUNT, region=REGION)}
    finally:
        emulator.stop(running, state_dir)


def role_session(world, stack: str, logical_prefix: str, session_name: str) -> boto3.Session:
    """The synthesized role (its policies resolved for the emulator's account), created and assumed as the harness."""
    synthesized, iam = world["synthesized"], world["admin"].client("iam")
    [logical_id] = [k for k, r in synthesized.templates[stack]["Resources"].items()
                    if r["Type"] == "AWS::IAM::Role" and k.startswith(logical_prefix)]
    arn = synthesized.principal_arn(stack, logical_id)
    name = arn.rsplit("/", 1)[-1]
    policies = synthesized.policies_of(arn)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    for number, policy in enumerate(policies.documents):
        iam.put_role_policy(RoleName=name, PolicyName=f"p{number}", PolicyDocument=json.dumps(policy.document))
    for managed in policies.aws_managed:
        iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    credentials = world["admin"].client("sts").assume_role(RoleArn=arn, RoleSessionName=session_name)["Credentials"]
    return boto3.Session(aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                         aws_session_token=credentials["SessionToken"], region_name=REGION)


def refused(call) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException"), raised.value.response
    return raised.value


def not_refused(call) -> None:
    """The call passed IAM: it succeeds, or fails for another reason (the emulator holds no such resource)."""
    try:
        call()
    except ClientError as error:
        assert error.response["Error"]["Code"] not in ("AccessDenied", "AccessDeniedException"), error.response


def test_the_operator_of_staging_may_not_release_to_production(world):
    synthesized, admin = world["synthesized"], world["admin"]
    document = synthesized.managed_policy("liftoff-staging-operator").document
    admin.client("iam").create_policy(PolicyName="liftoff-staging-operator", PolicyDocument=json.dumps(document))
    operator = operator_session(admin, "staging")
    principal = f"arn:aws:iam::{ACCOUNT}:user/liftoff-staging-operator"
    not_refused(lambda: operator.client("cloudformation").describe_stacks(StackName="staging-service"))  # its own stage
    error = refused(lambda: operator.client("cloudformation").update_stack(StackName="production-service", UsePreviousTemplate=True))
    assert client_error_text(error) == (
        f"access denied: {principal} may not call cloudformation:UpdateStack on "
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/production-service/00000000-0000-0000-0000-000000000000 (AccessDenied)")
    error = refused(lambda: operator.client("dynamodb").put_item(TableName="production-data-ReleaseLedger-GENERATED0000",
                                                                 Item={"pk": {"S": "RELEASE"}}))
    assert client_error_text(error).startswith(f"access denied: {principal} may not call dynamodb:PutItem on "
                                               f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/production-data-")


def test_a_production_host_may_not_read_stagings_secret(world):
    host = role_session(world, "production-service", "Ec2HostRole", "i-0aaaaaaaaaaaaaaa1")
    not_refused(lambda: host.client("ecr", endpoint_url=world["endpoint"]).get_authorization_token())  # the pull's login
    error = refused(lambda: host.client("secretsmanager", endpoint_url=world["endpoint"]).get_secret_value(SecretId=STAGING_SECRET))
    assert "assumed-role/production-service-Ec2HostRole" in error.response["Error"]["Message"]
    assert f"is not authorized to perform: secretsmanager:GetSecretValue on resource: {STAGING_SECRET}" in error.response["Error"]["Message"]


def test_the_task_role_may_not_write_the_ledger_nor_the_execution_role_read_productions_secret(world):
    task = role_session(world, "staging-service", "EcsTaskTaskRole", "a-task")
    error = refused(lambda: task.client("dynamodb", endpoint_url=world["endpoint"]).put_item(
        TableName=STAGING_LEDGER, Item={"pk": {"S": "RELEASE"}}))
    assert client_error_text(error).startswith("access denied: arn:aws:sts::") and "may not call dynamodb:PutItem" in client_error_text(error)
    execution = role_session(world, "staging-service", "EcsTaskExecutionRole", "a-task")
    not_refused(lambda: execution.client("ecr", endpoint_url=world["endpoint"]).get_authorization_token())
    error = refused(lambda: execution.client("secretsmanager", endpoint_url=world["endpoint"]).get_secret_value(
        SecretId=PRODUCTION_SECRET))
    assert f"secretsmanager:GetSecretValue on resource: {PRODUCTION_SECRET}" in error.response["Error"]["Message"]
