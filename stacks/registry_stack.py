from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from components.registry import Registry


class RegistryStack(Stack):
    """Stateful: the image repository. Its construct id is pinned by a test; never rename it."""

    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.registry = Registry(self, "Registry")
        CfnOutput(self, "RepositoryUri", value=self.registry.repository.repository_uri)
        CfnOutput(self, "RepositoryName", value=self.registry.repository.repository_name)
