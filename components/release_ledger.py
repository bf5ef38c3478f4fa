"""The release ledger: who released what, when, and the lock that keeps releases one at a time.

A DynamoDB table rather than a file or SSM parameter history: conditional writes give the lock for
free, items are append-only by key, it outlives any machine the release tool runs on, and on-demand
billing costs nothing at a few writes a day. It lives in the stateful stack and is retained.
"""
from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

PARTITION_KEY = "pk"
SORT_KEY = "sk"
EXPIRY_ATTRIBUTE = "expires_at"


class ReleaseLedger(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # Only expired lock items carry this attribute; ledger entries never expire.
            time_to_live_attribute=EXPIRY_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN,
        )
