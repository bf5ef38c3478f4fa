"""The GitHub CD stack: trust conditions, the policies' actions and resources, cdk-nag (stacks/github_cd_stack.py)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.release_permissions import (ALARM_READ_ACTIONS, COMMAND_RESULT_ACTIONS, ECR_PUSH_ACTIONS, MIGRATE_REGISTER_ACTIONS,
                                            OBSERVE_ACTIONS, SCALING_READ_ACTIONS)
from tests.helpers.synth import cdk_context

ACCOUNT = "111111111111"
ON = {"repository": "my-org/my-service", "account": ACCOUNT, "region": "eu-west-1"}


def liftoff(**github) -> dict:
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["github"].update(ON, **github)
    return context


@pytest.fixture(scope="module")
def cd(synth_variant):
    return synth_variant(liftoff())


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {key: value for key, value in template["Resources"].items() if value["Type"] == kind}


def role(template: dict, stage: str) -> dict:
    [found] = [r for r in resources(template, "AWS::IAM::Role").values() if r["Properties"]["RoleName"] == f"liftoff-{stage}-github-deploy"]
    return found


def statements(template: dict, stage: str) -> dict[str, dict]:
    role_id = next(key for key, value in template["Resources"].items() if value is role(template, stage))
    [policy] = [p for p in resources(template, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def arn(value) -> str:
    """An ARN with the partition reference shown as AWS::Partition."""
    if isinstance(value, str):
        return value
    return "".join(part if isinstance(part, str) else "${" + part["Ref"] + "}" for part in value["Fn::Join"][1])


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_off_as_shipped(shipped):
    assert not any(name.startswith("liftoff-github") for name in shipped.templates)


def test_one_stack_in_the_configured_account_with_the_provider(cd):
    assert [name for name in cd.templates if name.startswith("liftoff-github")] == ["liftoff-github"]
    [provider] = resources(cd.templates["liftoff-github"], "AWS::IAM::OIDCProvider").values()
    assert provider["Properties"]["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]


def test_trust_is_this_repository_and_the_listed_jobs_only(cd):
    template = cd.templates["liftoff-github"]
    expected = {
        "staging": ["repo:my-org/my-service:ref:refs/heads/main", "repo:my-org/my-service:ref:refs/tags/v*",
                    "repo:my-org/my-service:environment:staging"],
        "production": ["repo:my-org/my-service:environment:production-update", "repo:my-org/my-service:environment:production"],
    }
    provider_id = next(iter(resources(template, "AWS::IAM::OIDCProvider")))
    for stage, subjects in expected.items():
        [statement] = role(template, stage)["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity" and statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Federated": {"Ref": provider_id}}
        assert statement["Condition"] == {
            "StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
            "StringLike": {"token.actions.githubusercontent.com:sub": subjects},
        }


def test_immutable_sub_format_is_trusted_with_the_ids(synth_variant):
    template = synth_variant(liftoff(owner_id=123456, repository_id=456789, sub_formats=["classic", "immutable"])).templates["liftoff-github"]
    [statement] = role(template, "production")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Condition"]["StringLike"]["token.actions.githubusercontent.com:sub"] == [
        "repo:my-org/my-service:environment:production-update", "repo:my-org/my-service:environment:production",
        "repo:my-org@123456/my-service@456789:environment:production-update", "repo:my-org@123456/my-service@456789:environment:production",
    ]


def test_release_gates_only_on_the_stages_own_service_stack(cd):
    template = cd.templates["liftoff-github"]
    for stage in ("staging", "production"):
        granted = statements(template, stage)
        assert sorted(as_list(granted["ReleaseGates"]["Action"])) == [
            "cloudformation:DescribeStackEvents", "cloudformation:DescribeStacks", "cloudformation:GetTemplate", "cloudformation:UpdateStack"]
        assert arn(granted["ReleaseGates"]["Resource"]) == f"arn:${{AWS::Partition}}:cloudformation:eu-west-1:{ACCOUNT}:stack/{stage}-service/*"
        updates = [s for s in granted.values() if "cloudformation:UpdateStack" in as_list(s["Action"])]
        assert updates == [granted["ReleaseGates"]], "UpdateStack on nothing but the stage's service stack"
        assert arn(granted["ReleaseLedger"]["Resource"]) == f"arn:${{AWS::Partition}}:dynamodb:eu-west-1:{ACCOUNT}:table/{stage}-data-*"
        assert sorted(as_list(granted["ReleaseLedger"]["Action"])) == [
            "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
        # An update naming no RoleARN keeps the stack's execution role without a PassRole check: none is granted.
        assert "PassStackExecutionRole" not in granted
        assert all(s["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
                   for s in granted.values() if "iam:PassRole" in as_list(s["Action"]))
        # The ECS fast rollback stops only this stage's service deployments (cluster and service carry the stack's name).
        assert granted["StopBakingDeployment"]["Action"] == "ecs:StopServiceDeployment"
        assert [arn(r) for r in granted["StopBakingDeployment"]["Resource"]] == [
            f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:service-deployment/{stage}-service-*/{stage}-service-*/*",
            f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:service/{stage}-service-*/{stage}-service-*"]
        # An ec2 activation suspends and resumes only this stage's group (named after the service stack).
        assert sorted(as_list(granted["HoldScaleIn"]["Action"])) == ["autoscaling:ResumeProcesses", "autoscaling:SuspendProcesses"]
        assert arn(granted["HoldScaleIn"]["Resource"]) == (
            f"arn:${{AWS::Partition}}:autoscaling:eu-west-1:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{stage}-service-*")
        # The fleet's canary host and `liftoff migrate`: Run Command with this stage's documents only.
        assert granted["RunHostGates"]["Action"] == "ssm:SendCommand"
        assert sorted(arn(resource) for resource in as_list(granted["RunHostGates"]["Resource"])) == [
            f"arn:${{AWS::Partition}}:ec2:eu-west-1:{ACCOUNT}:instance/*",
            f"arn:${{AWS::Partition}}:ssm:eu-west-1:{ACCOUNT}:document/{stage}-service-*"]
        assert (granted["ReadCommandResults"]["Action"], granted["ReadCommandResults"]["Resource"]) == ("ssm:GetCommandInvocation", "*")
        # Each host's report, read under the stage's own path; a re-drive of the stage's associations.
        assert granted["ReadHostReports"]["Action"] == "ssm:GetParametersByPath"
        assert sorted(arn(resource) for resource in as_list(granted["ReadHostReports"]["Resource"])) == [
            f"arn:${{AWS::Partition}}:ssm:eu-west-1:{ACCOUNT}:parameter/liftoff/{stage}-service/hosts",
            f"arn:${{AWS::Partition}}:ssm:eu-west-1:{ACCOUNT}:parameter/liftoff/{stage}-service/hosts/*"]
        assert granted["RedriveHostGates"]["Action"] == "ssm:StartAssociationsOnce"
        # The activation's alarm watch through the bake (composite alarms are read only with `*`).
        assert (granted["WatchReleaseAlarms"]["Action"], granted["WatchReleaseAlarms"]["Resource"]) == ("cloudwatch:DescribeAlarms", "*")
        # `liftoff migrate` on ecs: only the migrate family, only in the stage's cluster, as the stage's own roles.
        assert granted["RunMigrateTask"]["Action"] == "ecs:RunTask"
        assert arn(granted["RunMigrateTask"]["Resource"]) == (
            f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:task-definition/{stage}service*-migrate:*")
        assert {key: arn(value) for key, value in granted["RunMigrateTask"]["Condition"]["ArnLike"].items()} == {
            "ecs:cluster": f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:cluster/{stage}-service-*"}
        assert granted["PassMigrateTaskRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
        assert arn(granted["PassMigrateTaskRoles"]["Resource"]) == f"arn:${{AWS::Partition}}:iam::{ACCOUNT}:role/{stage}-service-*"
        assert arn(granted["ReadMigrateOutput"]["Resource"]) == (
            f"arn:${{AWS::Partition}}:logs:eu-west-1:{ACCOUNT}:log-group:{stage}-service-*")
        # The image's manifest and config blob (its schema contract), read from the stage's repository.
        assert {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"} <= set(as_list(granted["ReadImages"]["Action"]))


def test_push_only_for_the_stage_that_owns_the_repository(cd):
    template = cd.templates["liftoff-github"]
    staging, production = statements(template, "staging"), statements(template, "production")
    repository = f"arn:${{AWS::Partition}}:ecr:eu-west-1:{ACCOUNT}:repository/staging-registry-*"
    assert sorted(as_list(staging["PushImages"]["Action"])) == sorted(ECR_PUSH_ACTIONS)
    assert arn(staging["PushImages"]["Resource"]) == repository
    assert staging["RegistryLogin"]["Action"] == "ecr:GetAuthorizationToken"
    # production pulls from staging's registry (share_registry_with): it reads images and scans, pushes nothing.
    assert "PushImages" not in production and "RegistryLogin" not in production
    assert arn(production["ReadImages"]["Resource"]) == repository


def test_wildcard_resources_only_for_read_only_calls_and_no_wildcard_actions(cd):
    template = cd.templates["liftoff-github"]
    for stage in ("staging", "production"):
        for sid, statement in statements(template, stage).items():
            assert all("*" not in action for action in as_list(statement["Action"])), f"{stage} {sid}"
            assert statement["Effect"] == "Allow"
            if statement["Resource"] == "*":
                assert set(as_list(statement["Action"])) <= (set(OBSERVE_ACTIONS) | {"ecr:GetAuthorizationToken"}
                                                              | set(COMMAND_RESULT_ACTIONS) | set(ALARM_READ_ACTIONS)
                                                              | set(MIGRATE_REGISTER_ACTIONS) | set(SCALING_READ_ACTIONS)), f"{stage} {sid}"


def test_outputs_name_each_role(cd):
    outputs = cd.templates["liftoff-github"]["Outputs"]
    assert set(outputs) == {"DeployRoleArnStaging", "DeployRoleArnProduction"}


def test_existing_provider_is_referenced_not_created(synth_variant):
    template = synth_variant(liftoff(create_oidc_provider=False)).templates["liftoff-github"]
    assert resources(template, "AWS::IAM::OIDCProvider") == {}
    [statement] = role(template, "staging")["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert arn(statement["Principal"]["Federated"]) == f"arn:${{AWS::Partition}}:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"


def test_one_stack_per_account(synth_variant):
    context = liftoff()
    for stage in ("staging", "production"):  # production shares staging's registry: same account
        context["stages"][stage].update(account="222222222222", region="eu-west-1")
    context["stages"]["qa"] = copy.deepcopy(context["stages"]["staging"]) | {"account": None, "region": None}
    context["github"]["stages"]["qa"] = {"branches": ["develop"]}
    names = sorted(name for name in synth_variant(context).templates if name.startswith("liftoff-github"))
    assert names == ["liftoff-github", "liftoff-github-222222222222"]


def test_cdk_nag_clean_with_only_the_reviewed_acknowledgements(cd):
    reports = json.loads((cd.outdir / "validation-report.json").read_text())["pluginReports"]
    nag = next(r for r in reports if r["pluginName"] == "AwsSolutions")
    assert nag["violations"] == []
    acknowledged = {(f["ruleName"].split("[")[0], f["acknowledgedAt"]) for f in nag["suppressedViolations"]
                    if f["acknowledgedAt"].startswith("liftoff-github/")}
    assert acknowledged == {("AwsSolutions-IAM5", "liftoff-github/Deploy-staging/Policy"),
                            ("AwsSolutions-IAM5", "liftoff-github/Deploy-production/Policy")}


def test_cfn_lint_passes(cd):
    template = cd.outdir / "liftoff-github.template.json"
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", str(template)],
                            capture_output=True, text=True)
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr


def test_logical_ids_are_pinned(cd):
    # The provider is one per account and the roles have fixed names: a changed logical id would make
    # CloudFormation create the replacement before deleting the old one, which fails on the name.
    template = cd.templates["liftoff-github"]
    assert {key for key, value in template["Resources"].items() if value["Type"] in ("AWS::IAM::OIDCProvider", "AWS::IAM::Role")} == {
        "GithubOidcProvider76A72F7F", "DeploystagingRole7A182984", "DeployproductionRole98A95B8B"}


def test_the_migrate_grant_matches_the_family_the_service_stack_really_synthesizes(cd):
    """RunMigrateTask's family pattern follows CDK's naming of the service's task definition: tied to the template,
    so a naming change in CDK fails here, not in a user's release."""
    from fnmatch import fnmatch

    granted = arn(statements(cd.templates["liftoff-github"], "staging")["RunMigrateTask"]["Resource"])
    [definition] = resources(cd.templates["staging-service"], "AWS::ECS::TaskDefinition").values()
    migrate_family = f"{definition['Properties']['Family']}-migrate"  # what release/adapters/schema_aws.py registers
    assert fnmatch(f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:task-definition/{migrate_family}:3", granted), granted
    assert not fnmatch(f"arn:${{AWS::Partition}}:ecs:eu-west-1:{ACCOUNT}:task-definition/{definition['Properties']['Family']}:3",
                       granted), "the service's own family must not be runnable by the role"
