"""The load balancer's access-log bucket (`alb_access_logs`): stateful, so it lives in the data stack.

ALB access logs accept only SSE-S3 encryption. The bucket is retained when its stack is deleted: it
holds the record of who called the service; objects expire after the stage's log retention.
"""
from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from components.nag import acknowledge


class AccessLogs(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(retention_days))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.bucket, "AwsSolutions-S1",
            "This bucket holds the load balancer's access logs; logging access to the log bucket itself would need another bucket and adds nothing for a stage.",
        )
