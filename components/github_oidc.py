"""GitHub Actions to AWS without stored keys: the account's OIDC provider and one deploy role per stage.

A workflow job presents GitHub's OIDC token; a role trusts it only for this repository and only for the
branches, tags or environments cdk.json lists for that stage (the token's `sub` claim). The role can
push to the stage's own repository (when the stage owns it), read its images and scans, pass the
release gates on the stage's service stack and write the stage's ledger: what `liftoff` needs, nothing more.
"""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from components.nag import acknowledge
from components.release_permissions import (RELEASE_STAR_REASON, RELEASE_WILDCARD_REASON, StageTargets, push_statements,
                                            release_statements)

GITHUB_OIDC_ISSUER = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL = f"https://{GITHUB_OIDC_ISSUER}"
# The audience aws-actions/configure-aws-credentials requests by default.
STS_AUDIENCE = "sts.amazonaws.com"

def subject_patterns(*, owner: str, name: str, owner_id: int | None, repository_id: int | None,
                     sub_formats: tuple[str, ...], branches: tuple[str, ...], tags: tuple[str, ...],
                     environments: tuple[str, ...]) -> list[str]:
    """The `sub` values a stage's role accepts, in every format the repository may use.

    classic:   repo:OWNER/NAME:ref:refs/heads/main, ...:ref:refs/tags/v*, ...:environment:production
    immutable: repo:OWNER@OWNER_ID/NAME@REPO_ID:... (repositories created or renamed from 2026-07-15 on,
               or opted in): the ids never change and are never reused, so a deleted and re-registered
               name cannot take the role.
    A job that names an environment gets the environment form; others get the ref form.
    """
    prefixes = []
    for sub_format in sub_formats:
        if sub_format == "classic":
            prefixes.append(f"repo:{owner}/{name}")
        elif sub_format == "immutable":
            if owner_id is None or repository_id is None:
                raise ValueError("the immutable sub format needs owner_id and repository_id")
            prefixes.append(f"repo:{owner}@{owner_id}/{name}@{repository_id}")
        else:
            raise ValueError(f"unknown sub format {sub_format!r}; expected classic or immutable")
    contexts = ([f"ref:refs/heads/{branch}" for branch in branches] + [f"ref:refs/tags/{tag}" for tag in tags]
                + [f"environment:{environment}" for environment in environments])
    if not contexts:
        raise ValueError("a deploy role needs at least one branch, tag or environment to trust")
    return [f"{prefix}:{context}" for prefix in prefixes for context in contexts]


class GithubOidcProvider(Construct):
    """The account's identity provider for GitHub Actions tokens (one per account), or a reference to it."""

    def __init__(self, scope: Construct, construct_id: str, *, create: bool) -> None:
        super().__init__(scope, construct_id)
        if create:
            # The native resource (AWS::IAM::OIDCProvider): no custom-resource Lambda. AWS validates
            # GitHub's certificate against its trusted CAs, so no thumbprint is pinned.
            self.provider: iam.IOidcProvider = iam.OidcProviderNative(
                self, "Provider", url=GITHUB_OIDC_URL, client_ids=[STS_AUDIENCE],
            )
        else:
            self.provider = iam.OidcProviderNative.from_oidc_provider_arn(
                self, "Provider",
                Stack.of(self).format_arn(service="iam", region="", resource="oidc-provider", resource_name=GITHUB_OIDC_ISSUER),
            )


class GithubDeployRole(Construct):
    """One stage's deploy role: trusted by this repository's listed jobs, allowed the release verbs on that stage."""

    def __init__(self, scope: Construct, construct_id: str, *, provider: iam.IOidcProvider, role_name: str,
                 subjects: list[str], targets: StageTargets) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.subjects = list(subjects)
        self.role = iam.Role(
            self, "Role",
            role_name=role_name,
            description=f"liftoff {targets.stage}: GitHub Actions deploy role (release gates, image push)",
            assumed_by=iam.WebIdentityPrincipal(provider.oidc_provider_arn, conditions={
                "StringEquals": {f"{GITHUB_OIDC_ISSUER}:aud": STS_AUDIENCE},
                "StringLike": {f"{GITHUB_OIDC_ISSUER}:sub": self.subjects},
            }),
        )

        statements, wildcards = release_statements(stack, targets)
        policy = iam.Policy(self, "Policy", statements=statements)
        if targets.owns_registry:
            policy.add_statements(*push_statements(stack, targets))
        policy.attach_to_role(self.role)
        self.policy = policy
        acknowledge(policy, "AwsSolutions-IAM5[Resource::*]",
                    "ecr:GetAuthorizationToken (a registry login token is account-wide by design) and: " + RELEASE_STAR_REASON)
        for wildcard in wildcards:
            acknowledge(policy, f"AwsSolutions-IAM5[Resource::{wildcard}]", RELEASE_WILDCARD_REASON)
