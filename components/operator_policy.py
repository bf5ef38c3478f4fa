"""The people who run `liftoff` on a stage: one customer managed policy with the release verbs on that stage and
nothing else (docs/security.md). Attach it to their group, or name it in an IAM Identity Center permission set's
customer managed policies, where a policy is referred to by name: hence a fixed one, `liftoff-<stage>-operator`.
The pipeline's deploy roles get the same statements (components/github_oidc.py) plus the image push, which is CI's.
"""
from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from components.nag import acknowledge
from components.release_permissions import RELEASE_STAR_REASON, RELEASE_WILDCARD_REASON, StageTargets, release_statements
from config import operator_policy_name


class OperatorPolicy(Construct):
    """`liftoff-<stage>-operator`: stage, activate, roll back, migrate, read status, history and the lock on one stage."""

    def __init__(self, scope: Construct, construct_id: str, *, targets: StageTargets) -> None:
        super().__init__(scope, construct_id)
        statements, wildcards = release_statements(Stack.of(self), targets)
        self.policy = iam.ManagedPolicy(
            self, "Policy",
            managed_policy_name=operator_policy_name(targets.stage),
            description=f"liftoff {targets.stage}: what a person needs to run liftoff on this stage (release gates, "
                        "ledger and lock, rollout reads, host gates, migrate)",
            statements=statements,
        )
        acknowledge(self.policy, "AwsSolutions-IAM5[Resource::*]", RELEASE_STAR_REASON)
        for wildcard in wildcards:
            acknowledge(self.policy, f"AwsSolutions-IAM5[Resource::{wildcard}]", RELEASE_WILDCARD_REASON)
