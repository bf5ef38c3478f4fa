"""IAM in the emulator (local/moto_iam.py): the run-time decision, then a real moto_server holding a user and an assumed
role to their policies in both protocols, letting the harness and CDK's bootstrap roles by, and recording the calls."""
from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError

from local import aws, emulator, moto_iam
from local.principals import operator_session

ACCOUNT = aws.EMULATED_ACCOUNT
LEDGER = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/staging-data-Ledger"


def document(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# --- the decision ----------------------------------------------------------------------------------------

def test_an_allow_must_name_the_action_and_the_resource():
    policy = document({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "arn:aws:dynamodb:*:*:table/staging-data-*"})
    assert moto_iam.decide([policy], "dynamodb:PutItem", [LEDGER]) == (True, "", "")
    allowed, reason, refused_on = moto_iam.decide([policy], "dynamodb:PutItem", [LEDGER.replace("staging", "production")])
    assert not allowed and reason == "because no identity-based policy allows the dynamodb:PutItem action"
    assert refused_on == LEDGER.replace("staging", "production")
    assert not moto_iam.decide([policy], "dynamodb:DeleteItem", [LEDGER])[0]


def test_actions_match_without_case_and_with_wildcards_arns_with_case():
    policy = document({"Effect": "Allow", "Action": "CloudFormation:Describe*", "Resource": "arn:aws:cloudformation:*:*:stack/Staging-*"})
    assert moto_iam.decide([policy], "cloudformation:DescribeStacks", ["arn:aws:cloudformation:r:a:stack/Staging-x/1"])[0]
    assert not moto_iam.decide([policy], "cloudformation:DescribeStacks", ["arn:aws:cloudformation:r:a:stack/staging-x/1"])[0]


def test_an_explicit_deny_wins_over_any_allow():
    policies = [document({"Effect": "Allow", "Action": "*", "Resource": "*"}),
                document({"Effect": "Deny", "Action": "dynamodb:*", "Resource": LEDGER})]
    allowed, reason, refused_on = moto_iam.decide(policies, "dynamodb:PutItem", [LEDGER])
    assert not allowed and reason.startswith("with an explicit deny") and refused_on == LEDGER


def test_an_unknown_resource_is_judged_on_the_action_and_a_scoped_deny_left_to_the_verdict():
    scoped = document({"Effect": "Allow", "Action": "ssm:GetCommandInvocation", "Resource": "arn:aws:ssm:*:*:document/x"},
                      {"Effect": "Deny", "Action": "ssm:GetCommandInvocation", "Resource": "arn:aws:ssm:*:*:document/y"})
    assert moto_iam.decide([scoped], "ssm:GetCommandInvocation", ["*"]) == (True, "", "")
    assert not moto_iam.decide([document({"Effect": "Deny", "Action": "ssm:*", "Resource": "*"}), scoped],
                               "ssm:GetCommandInvocation", ["*"])[0]


def test_a_call_on_two_resources_names_the_one_refused():
    service = "arn:aws:ecs:r:a:service/c/s"
    deployment = "arn:aws:ecs:r:a:service-deployment/c/s/d"
    policy = document({"Effect": "Allow", "Action": "ecs:StopServiceDeployment", "Resource": deployment})
    assert moto_iam.decide([policy], "ecs:StopServiceDeployment", [deployment, service])[::2] == (False, service)


def test_not_action_and_not_resource():
    policy = document({"Effect": "Allow", "NotAction": "iam:*", "NotResource": LEDGER})
    assert moto_iam.decide([policy], "ecs:ListTasks", ["arn:aws:ecs:r:a:cluster/c"])[0]
    assert not moto_iam.decide([policy], "iam:PassRole", ["arn:aws:iam::a:role/r"])[0]
    assert not moto_iam.decide([policy], "dynamodb:PutItem", [LEDGER])[0]


# --- a real moto_server ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("moto-iam")
    running = emulator.start(state_dir)
    try:
        yield running
    finally:
        emulator.stop(running, state_dir)


@pytest.fixture(scope="module")
def admin(server):
    session = aws.EndpointSession(aws.fake_session(), server.endpoint)
    session.client("dynamodb").create_table(
        TableName="staging-data-Ledger", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    session.client("iam").create_policy(PolicyName="liftoff-staging-operator", PolicyDocument=json.dumps(document(
        {"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:GetItem"], "Resource": f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/staging-data-*"},
        {"Effect": "Allow", "Action": "cloudformation:DescribeStacks", "Resource": f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/staging-service/*"},
    )))
    return session


def refusal(call) -> dict:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]


def test_the_operator_does_what_its_policy_allows_and_is_refused_the_rest_in_each_protocol(server, admin):
    operator = operator_session(admin, "staging")
    dynamodb = operator.client("dynamodb")
    dynamodb.put_item(TableName="staging-data-Ledger", Item={"k": {"S": "release"}})
    principal = f"arn:aws:iam::{ACCOUNT}:user/liftoff-staging-operator"
    # JSON protocol: AccessDeniedException, AWS's sentence with the resource.
    error = refusal(lambda: dynamodb.delete_item(TableName="staging-data-Ledger", Key={"k": {"S": "release"}}))
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"] == (f"User: {principal} is not authorized to perform: dynamodb:DeleteItem on resource: "
                                f"{LEDGER} because no identity-based policy allows the dynamodb:DeleteItem action")
    # Query protocol: AccessDenied; another stage's stack is refused by its ARN.
    error = refusal(lambda: operator.client("cloudformation").describe_stacks(StackName="production-service"))
    assert error["Code"] == "AccessDenied" and "cloudformation:DescribeStacks on resource: arn:aws:cloudformation:us-east-1:" \
        f"{ACCOUNT}:stack/production-service/" in error["Message"]
    # The harness's own identity acts as AWS itself: nothing refused, nothing recorded.
    admin.client("dynamodb").delete_item(TableName="staging-data-Ledger", Key={"k": {"S": "release"}})
    calls = moto_iam.recorded_calls(server.endpoint)
    assert {(c["action"], c["allowed"]) for c in calls if c["principal"] == principal} >= {
        ("dynamodb:PutItem", True), ("dynamodb:DeleteItem", False), ("cloudformation:DescribeStacks", False)}
    assert {c["principal"] for c in calls} <= {principal, f"arn:aws:sts::{ACCOUNT}:assumed-role/task-role/a-task"}
    put = next(c for c in calls if c["action"] == "dynamodb:PutItem")
    assert put["params"]["TableName"] == "staging-data-Ledger" and put["resources"] == [LEDGER]
    line, refused = moto_iam.summary(calls, principal)
    assert line.startswith(f"{principal}: ") and line.endswith(f"{len(refused)} refused") and len(refused) >= 2


def test_a_key_the_emulator_never_issued_is_an_invalid_token(server):
    stranger = boto3.Session(aws_access_key_id="AKIAEXAMPLESTRANGER0", aws_secret_access_key="x", region_name="us-east-1")
    error = refusal(lambda: stranger.client("sts", endpoint_url=server.endpoint).get_caller_identity())
    assert error["Code"] == "InvalidClientTokenId"


def test_an_assumed_role_is_held_to_the_roles_policies_and_cdks_bootstrap_roles_are_not_judged(server, admin):
    iam = admin.client("iam")
    trust = json.dumps(document({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}))
    for name in ("task-role", "cdk-hnb659fds-deploy-role-123456789012-us-east-1"):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="task-role", PolicyName="read", PolicyDocument=json.dumps(document(
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": LEDGER})))

    def assumed(role: str, session_name: str) -> boto3.Session:
        credentials = admin.client("sts").assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                                                      RoleSessionName=session_name)["Credentials"]
        return boto3.Session(aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
                             aws_session_token=credentials["SessionToken"], region_name="us-east-1")

    task = assumed("task-role", "a-task").client("dynamodb", endpoint_url=server.endpoint)
    task.get_item(TableName="staging-data-Ledger", Key={"k": {"S": "release"}})
    error = refusal(lambda: task.put_item(TableName="staging-data-Ledger", Item={"k": {"S": "x"}}))
    assert f"assumed-role/task-role/a-task is not authorized to perform: dynamodb:PutItem on resource: {LEDGER}" in error["Message"]
    # CDK's deploy role (no policy here at all) acts for the administrator who deploys.
    cdk = assumed("cdk-hnb659fds-deploy-role-123456789012-us-east-1", "aws-cdk-root")
    cdk.client("dynamodb", endpoint_url=server.endpoint).list_tables()
    assert not [c for c in moto_iam.recorded_calls(server.endpoint) if "cdk-hnb659fds" in c["principal"]]


def test_the_recorded_calls_can_be_cleared(server):
    request = urllib.request.Request(server.endpoint + moto_iam.CALLS_PATH, method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer) == {"cleared": True}
    assert moto_iam.recorded_calls(server.endpoint) == []
