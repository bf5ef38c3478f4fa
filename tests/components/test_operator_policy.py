"""The operators' managed policy (components/operator_policy.py): the release verbs on one stage, under a fixed name."""
from __future__ import annotations

import json

import pytest

from config import operator_policy_name
from components.release_permissions import ECR_PUSH_ACTIONS
from tests.helpers.synth import REPO

STAGES = ("staging", "production")
# IAM's quota for a customer managed policy, whitespace not counted.
MANAGED_POLICY_MAX_CHARACTERS = 6144


def operator_policy(shipped, stage: str) -> dict:
    resources = shipped.templates[f"{stage}-service"]["Resources"]
    [policy] = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    return policy["Properties"]


def actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_one_operator_policy_under_its_fixed_name_attached_to_nobody(shipped, stage):
    properties = operator_policy(shipped, stage)
    assert properties["ManagedPolicyName"] == operator_policy_name(stage) == f"liftoff-{stage}-operator"
    # Who the operators are is the account's business (a group, an Identity Center permission set), not the stack's.
    assert not {"Roles", "Users", "Groups"} & set(properties)
    outputs = shipped.templates[f"{stage}-service"]["Outputs"]
    assert "OperatorPolicyArn" in outputs


@pytest.mark.parametrize("stage", STAGES)
def test_operators_run_the_release_verbs_but_push_no_image(shipped, stage):
    statements = operator_policy(shipped, stage)["PolicyDocument"]["Statement"]
    granted = {action for statement in statements for action in actions(statement)}
    assert {"cloudformation:UpdateStack", "dynamodb:PutItem", "ssm:SendCommand", "ecs:RunTask",
            "cloudwatch:DescribeAlarms", "ecs:StopServiceDeployment", "iam:PassRole"} <= granted
    assert not set(ECR_PUSH_ACTIONS) - {"ecr:BatchGetImage"} & granted
    assert all(statement["Effect"] == "Allow" for statement in statements)


@pytest.mark.parametrize("stage", STAGES)
def test_the_gates_are_scoped_to_the_stages_own_service_stack(shipped, stage):
    statements = operator_policy(shipped, stage)["PolicyDocument"]["Statement"]
    [gates] = [s for s in statements if s.get("Sid") == "ReleaseGates"]
    assert f":stack/{stage}-service/*" in json.dumps(gates["Resource"])
    other = next(s for s in STAGES if s != stage)
    # (production reads its images from staging's registry: cdk.json's share_registry_with)
    assert f"{other}-service" not in json.dumps(statements) and f"{other}-data" not in json.dumps(statements)


@pytest.mark.parametrize("stage", STAGES)
def test_the_policy_fits_iams_size_quota(shipped, stage):
    # The template's form (intrinsics for partition, account) is longer than the document IAM stores.
    document = json.dumps(operator_policy(shipped, stage)["PolicyDocument"], separators=(",", ":"))
    assert len(document) < MANAGED_POLICY_MAX_CHARACTERS


def test_security_md_lists_every_statement_and_action_the_operators_get(shipped):
    # The per-principal table is the reviewed record of what a person may do: it must name what the policy grants.
    text = (REPO / "docs" / "security.md").read_text()
    section = text[text.index("### People who run `liftoff`"):text.index("### GitHub deploy roles")]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    for statement in operator_policy(shipped, "staging")["PolicyDocument"]["Statement"]:
        [row] = [line for line in rows if statement["Sid"] in line.split("|")[1]]
        for action in actions(statement):
            assert action.split(":", 1)[1] in row, f"{statement['Sid']}: {action} not in docs/security.md"
