from __future__ import annotations

import json

from aws_cdk.assertions import Match


def test_vpc_has_two_azs_public_and_isolated_subnets_and_no_nat(shipped):
    template = shipped.template("staging-data")
    template.resource_count_is("AWS::EC2::VPC", 1)
    template.resource_count_is("AWS::EC2::Subnet", 4)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    template.resource_count_is("AWS::EC2::EIP", 0)
    subnets = template.find_resources("AWS::EC2::Subnet")
    public = [s for s in subnets.values() if s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2
    # Isolated subnets have route tables with no route at all (no internet, no NAT).
    routes = template.find_resources("AWS::EC2::Route")
    assert len(routes) == 2 and all("GatewayId" in r["Properties"] for r in routes.values())


def test_rejected_flows_are_logged(shipped):
    template = shipped.template("staging-data")
    template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT", "LogDestinationType": "cloud-watch-logs"})
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 14})


def test_database_is_private_encrypted_and_snapshotted(shipped):
    template = shipped.template("staging-data")
    template.has_resource(
        "AWS::RDS::DBInstance",
        {
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": Match.object_like(
                {
                    "Engine": "postgres",
                    "EngineVersion": Match.string_like_regexp(r"^17\.\d+$"),
                    "DBInstanceClass": "db.t4g.micro",
                    "StorageType": "gp3",
                    "AllocatedStorage": "20",
                    "MaxAllocatedStorage": 50,
                    "StorageEncrypted": True,
                    "PubliclyAccessible": False,
                    "MultiAZ": False,
                    "BackupRetentionPeriod": 3,
                    "DeletionProtection": False,
                    "DBName": "liftoff",
                }
            ),
        },
    )


def test_credentials_are_generated_into_secrets_manager(shipped):
    template = shipped.template("staging-data")
    template.has_resource_properties(
        "AWS::SecretsManager::Secret",
        {"GenerateSecretString": Match.object_like({"GenerateStringKey": "password", "SecretStringTemplate": '{"username":"liftoff"}'})},
    )
    template.resource_count_is("AWS::SecretsManager::SecretTargetAttachment", 1)
    instance = next(iter(template.find_resources("AWS::RDS::DBInstance").values()))
    # The password is resolved by CloudFormation from the secret, never written into the template.
    assert "resolve:secretsmanager" in str(instance["Properties"]["MasterUserPassword"])


def test_database_subnets_are_isolated(shipped):
    template = shipped.template("staging-data")
    group = next(iter(template.find_resources("AWS::RDS::DBSubnetGroup").values()))
    subnet_refs = {ref["Ref"] for ref in group["Properties"]["SubnetIds"]}
    assert subnet_refs and all("isolated" in ref for ref in subnet_refs)


def test_database_security_group_has_no_ingress_of_its_own(shipped):
    # The only way in is the rule the service stack adds for its own security group.
    template = shipped.template("staging-data")
    template.resource_count_is("AWS::EC2::SecurityGroupIngress", 0)
    group = next(iter(template.find_resources("AWS::EC2::SecurityGroup").values()))
    assert "SecurityGroupIngress" not in group["Properties"]


def test_production_is_protected(shipped):
    template = shipped.template("production-data")
    template.has_resource_properties(
        "AWS::RDS::DBInstance", {"MultiAZ": True, "DeletionProtection": True, "BackupRetentionPeriod": 14}
    )
    manifest = (shipped.outdir / "manifest.json").read_text()
    artifacts = json.loads(manifest)["artifacts"]
    assert artifacts["production-data"]["properties"]["terminationProtection"] is True
    # production pulls from the staging registry, so that registry is protected too
    assert artifacts["staging-registry"]["properties"]["terminationProtection"] is True
    assert artifacts["staging-data"]["properties"].get("terminationProtection") in (None, False)


def test_release_ledger_is_retained_with_point_in_time_recovery(shipped):
    template = shipped.template("staging-data")
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                }
            ),
        },
    )
    assert "ReleaseLedgerTable" in template.find_outputs("*")
