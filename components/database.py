"""The database: PostgreSQL shared by every live version of the service, never lost with its stack."""
from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from constructs import Construct

# A current minor version: cfn-lint warns on deprecated ones (W3691).
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_17_6
DATABASE_NAME = "liftoff"
MASTER_USERNAME = "liftoff"


class Database(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        instance_class: str,
        allocated_storage_gib: int,
        max_allocated_storage_gib: int,
        multi_az: bool,
        backup_retention_days: int,
        deletion_protection: bool,
        enhanced_monitoring: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        # No ingress rule here: the service stack opens the port for its own security group, so this
        # stateful stack never depends on the stateless one.
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, description="liftoff database", allow_all_outbound=False
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION),
            instance_type=ec2.InstanceType(instance_class),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            publicly_accessible=False,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(MASTER_USERNAME),
            storage_type=rds.StorageType.GP3,
            allocated_storage=allocated_storage_gib,
            max_allocated_storage=max_allocated_storage_gib,
            storage_encrypted=True,
            multi_az=multi_az,
            backup_retention=Duration.days(backup_retention_days),
            deletion_protection=deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            # Per-process OS metrics every 60 s, billed as CloudWatch Logs ingestion; a change applies
            # without a restart.
            monitoring_interval=Duration.seconds(60) if enhanced_monitoring else None,
        )
        self.secret = self.instance.secret
        self.database_name = DATABASE_NAME
