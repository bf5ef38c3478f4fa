"""Stateful resources keep their logical ids forever: a changed id makes CloudFormation replace them.

If one of these fails, do not update the id here: restore the construct id (or path) that produced it.
"""
from __future__ import annotations

import pytest

PINNED = [
    ("staging-registry", "RegistryRepositoryC6C96DCD", "AWS::ECR::Repository"),
    ("staging-data", "NetworkVpc7FB7348F", "AWS::EC2::VPC"),
    ("staging-data", "DatabaseInstanceAA8A5FDE", "AWS::RDS::DBInstance"),
    ("staging-data", "ReleaseLedgerTableB497B9C4", "AWS::DynamoDB::Table"),
    ("staging-data", "stagingdataDatabaseInstanceSecretF821F5333fdaad7efa858a3daf9490cf0a702aeb", "AWS::SecretsManager::Secret"),
    ("production-data", "DatabaseInstanceAA8A5FDE", "AWS::RDS::DBInstance"),
    ("production-data", "productiondataDatabaseInstanceSecret2E1C39C53fdaad7efa858a3daf9490cf0a702aeb", "AWS::SecretsManager::Secret"),
]


@pytest.mark.parametrize(("stack", "logical_id", "resource_type"), PINNED)
def test_stateful_logical_id_is_pinned(shipped, stack, logical_id, resource_type):
    resources = shipped.templates[stack]["Resources"]
    assert logical_id in resources, f"{resource_type} {logical_id} vanished from {stack}: it would be replaced"
    assert resources[logical_id]["Type"] == resource_type


def test_stateful_stack_names_are_stable(shipped):
    assert {"staging-registry", "staging-data", "production-data"} <= set(shipped.templates)
