#!/usr/bin/env python3
"""The liftoff CDK app: every configured stage as registry, data and service stacks.

This is the only module that reads CDK context or the environment; everything below it receives
typed, validated configuration.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from config import CONTEXT_KEY, ConfigError, LiftoffConfig, StageConfig, parse_cli_context
from stacks.data_stack import DataStack
from stacks.github_cd_stack import GithubCdStack
from stacks.registry_stack import RegistryStack
from stacks.service_stack import ServiceStack

WARNINGS_SHOWN_VARIABLE = "LIFTOFF_WARNINGS_SHOWN"


def build(app: cdk.App, config: LiftoffConfig) -> dict[str, cdk.Stack]:
    """Add every stage's stacks to `app`; return them by stack name."""
    stacks: dict[str, cdk.Stack] = {}
    registries: dict[str, RegistryStack] = {}
    for stage in config.stages:
        if stage.share_registry_with is None:
            registries[stage.name] = _add(stacks, RegistryStack(
                app, stage.registry_stack_name,
                env=_environment(stage),
                # Protected as soon as any stage that pulls from it is protected.
                termination_protection=any(
                    user.deletion_protection for user in config.stages if user.registry_stage == stage.name
                ),
                description=f"liftoff {stage.name}: image registry (stateful)",
            ))
    for stage in config.stages:
        data = _add(stacks, DataStack(
            app, stage.data_stack_name,
            stage=stage,
            env=_environment(stage),
            termination_protection=stage.deletion_protection,
            description=f"liftoff {stage.name}: network and database (stateful)",
        ))
        service = _add(stacks, ServiceStack(
            app, stage.service_stack_name,
            stage=stage,
            vpc=data.network.vpc,
            repository=registries[stage.registry_stage].registry.repository,
            database=data.database,
            access_logs_bucket=data.access_logs.bucket if data.access_logs else None,
            env=_environment(stage),
            description=f"liftoff {stage.name}: load balancer and {stage.compute} service (stateless)",
        ))
        for stack in (data, service):
            cdk.Tags.of(stack).add("liftoff:stage", stage.name)
    if config.github is not None:
        _add_github_cd(app, config, stacks)
    for stack in stacks.values():
        cdk.Tags.of(stack).add("liftoff:project", "liftoff")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stacks


def _add_github_cd(app: cdk.App, config: LiftoffConfig, stacks: dict[str, cdk.Stack]) -> None:
    """One GitHub CD stack per account (IAM and the OIDC provider are account-wide)."""
    github = config.github
    by_account: dict[str, list[StageConfig]] = {}
    for stage in config.stages:
        if github.stage_access(stage.name) is not None:
            by_account.setdefault(github.target(stage)[0], []).append(stage)
    for account, stages in by_account.items():
        name = "liftoff-github" if account == github.account else f"liftoff-github-{account}"
        _add(stacks, GithubCdStack(
            app, name,
            github=github,
            stages=stages,
            env=cdk.Environment(account=account, region=github.target(stages[0])[1]),
            description=f"liftoff: GitHub Actions OIDC deploy roles for {', '.join(s.name for s in stages)} ({github.repository})",
        ))


def _add(stacks: dict[str, cdk.Stack], stack: cdk.Stack):
    stacks[stack.stack_name] = stack
    return stack


def _environment(stage: StageConfig) -> cdk.Environment | None:
    if stage.account is None:
        return None
    return cdk.Environment(account=stage.account, region=stage.region)


def main() -> None:
    app = cdk.App()
    try:
        # The CLI runs the app beside the cdk.json it read.
        config = parse_cli_context(app.node.try_get_context(CONTEXT_KEY), Path("cdk.json"))
    except ConfigError as error:
        print(f"liftoff: invalid configuration in cdk.json: {error}", file=sys.stderr)
        sys.exit(2)
    # `make deploy TARGET=aws` has printed the warnings already (before the CLI runs) and says so here,
    # so each shows once.
    if os.environ.get(WARNINGS_SHOWN_VARIABLE) != "1":
        for stage in config.stages:
            for warning in stage.warnings():
                print(f"liftoff: warning: {warning}", file=sys.stderr)
    build(app, config)
    app.synth()


if __name__ == "__main__":
    main()
