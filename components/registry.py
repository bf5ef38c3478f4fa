"""The image registry: every release image stays startable, so any version can be activated again."""
from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr as ecr
from constructs import Construct

UNTAGGED_IMAGE_EXPIRY_DAYS = 7


class Registry(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            image_scan_on_push=True,
            # Images are rollback targets; deleting the stack must not delete them.
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                # The only rule selects untagged images (superseded layers, failed pushes); no rule
                # selects tagged ones, so a release image is never expired.
                ecr.LifecycleRule(
                    description="Expire untagged images; release tags are kept forever",
                    tag_status=ecr.TagStatus.UNTAGGED,
                    max_image_age=Duration.days(UNTAGGED_IMAGE_EXPIRY_DAYS),
                )
            ],
        )
