from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from components.access_logs import AccessLogs
from components.database import Database
from components.retention import log_retention
from components.nag import acknowledge
from components.network import Network
from components.release_ledger import ReleaseLedger
from config import StageConfig


class DataStack(Stack):
    """Stateful: the network, the database, the release ledger (and the access-log bucket when switched on). Construct ids are pinned by a test; never rename them."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = log_retention(stage.log_retention_days)
        self.network = Network(self, "Network", flow_log_retention=retention)
        self.database = Database(
            self,
            "Database",
            vpc=self.network.vpc,
            instance_class=stage.db_instance_class,
            allocated_storage_gib=stage.db_allocated_storage_gib,
            max_allocated_storage_gib=stage.db_max_allocated_storage_gib,
            multi_az=stage.db_multi_az,
            backup_retention_days=stage.db_backup_retention_days,
            deletion_protection=stage.deletion_protection,
            enhanced_monitoring=stage.enhanced_monitoring,
        )
        instance = self.database.instance
        acknowledge(
            instance, "AwsSolutions-RDS11",
            "The default port is fine: the database is unreachable from outside the VPC and open only to the service's security group.",
        )
        if not stage.db_multi_az:
            acknowledge(instance, "AwsSolutions-RDS3", f"Stage {stage.name!r} runs single-AZ on purpose (db_multi_az: false) to halve its database cost.")
        if not stage.deletion_protection:
            acknowledge(instance, "AwsSolutions-RDS10", f"Stage {stage.name!r} is disposable (deletion_protection: false); deleting the stack still leaves a final snapshot.")
        acknowledge(
            instance.node.find_child("Secret"), "AwsSolutions-SMG4",
            "No automatic rotation: the rotation Lambda would need a NAT gateway or VPC endpoints in the isolated subnets, and several live versions read the same credentials; rotate by hand with the runbook in README.md (Operations).",
        )
        if stage.enhanced_monitoring:
            acknowledge(
                instance.node.find_child("MonitoringRole"), "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole]",
                "The AWS-maintained role policy is what RDS documents for enhanced monitoring; it only writes the RDSOSMetrics log group.",
            )
        self.ledger = ReleaseLedger(self, "ReleaseLedger")
        self.access_logs = AccessLogs(self, "AccessLogs", retention_days=stage.log_retention_days) if stage.alb_access_logs else None
        CfnOutput(self, "ReleaseLedgerTable", value=self.ledger.table.table_name)
        CfnOutput(self, "DatabaseEndpoint", value=instance.db_instance_endpoint_address)
        CfnOutput(self, "DatabaseSecretArn", value=self.database.secret.secret_arn)
