from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from components.github_oidc import GithubDeployRole, GithubOidcProvider, StageTargets, subject_patterns
from config import GithubConfig, StageConfig, github_role_name


class GithubCdStack(Stack):
    """Per account: GitHub's OIDC provider and a deploy role for each stage in that account that cdk.json lets GitHub deploy.

    The provider (one per account) and the roles (fixed names) cannot be replaced in place: their
    construct ids are pinned by a test; never rename them.
    """

    def __init__(self, scope: Construct, construct_id: str, *, github: GithubConfig, stages: list[StageConfig], **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        provider = GithubOidcProvider(self, "GithubOidc", create=github.create_oidc_provider).provider
        self.roles: dict[str, GithubDeployRole] = {}
        for stage in stages:
            access = github.stage_access(stage.name)
            if access is None:
                continue
            deploy = GithubDeployRole(
                self, f"Deploy-{stage.name}",
                provider=provider,
                role_name=github_role_name(stage.name),
                subjects=subject_patterns(
                    owner=github.owner, name=github.name, owner_id=github.owner_id, repository_id=github.repository_id,
                    sub_formats=github.sub_formats, branches=access.branches, tags=access.tags, environments=access.environments,
                ),
                targets=StageTargets(
                    stage=stage.name, region=github.target(stage)[1],
                    registry_stack=stage.registry_stack_name, data_stack=stage.data_stack_name,
                    service_stack=stage.service_stack_name, owns_registry=stage.share_registry_with is None,
                ),
            )
            self.roles[stage.name] = deploy
            CfnOutput(self, f"DeployRoleArn{stage.name.title().replace('-', '')}", value=deploy.role.role_arn,
                      description=f"role-to-assume for GitHub Actions jobs that release to {stage.name}")
