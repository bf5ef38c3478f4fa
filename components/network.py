"""The network: two AZs, public and isolated subnets, and no NAT gateway.

A NAT gateway per AZ costs more than the rest of a small stage. The service runs in public subnets
with a public address for outbound calls (ECR, Secrets Manager, logs) and no inbound path except the
load balancer's security group; the database lives in isolated subnets with no route out.
"""
from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct


class Network(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, flow_log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            # Restricting the default security group takes a custom-resource Lambda in this stateful
            # stack; nothing here uses the default group, every resource gets its own.
            restrict_default_security_group=False,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        # Rejected flows only: what an engineer needs to debug a security group, at a fraction of the volume.
        flow_log_group = logs.LogGroup(
            self, "FlowLogs", retention=flow_log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.vpc.add_flow_log(
            "RejectedFlows",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
            traffic_type=ec2.FlowLogTrafficType.REJECT,
        )
