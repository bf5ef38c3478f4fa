"""A deployed liftoff stage inside moto's in-process emulator, built from the app's own synthesized templates.

API (stable; the release tool's tests build on it):

    deploy_stage(assembly, stage, *, image_tag="1.0.0", staged_image_tag=None, region="us-east-1",
                 push_tags=()) -> EmulatedStage

Call it inside an active `moto.mock_aws()` with fake AWS credentials in the environment (the
fixtures in tests/helpers/emulator_fixtures.py do both). `assembly` is a synthesized cloud assembly
directory (e.g. the `shipped` fixture's `outdir`); `stage` a `config.StageConfig` from it. The stage's
templates go through `local.adapter` (the same adapter the `make deploy` flow uses) and are created
with `create_stack` in order registry -> data -> service (a registry stack that already exists, as
when production shares staging's, is reused). Parameters are always passed explicitly: moto answers
HTTP 500 to UsePreviousValue on a parameter that took its default.

    EmulatedStage
        stage: StageConfig            region: str
        stack_names: {"registry": ..., "data": ..., "service": ...}
        outputs: {stack name: {output key: value}}   (refreshed after each update)
        repository_name: str          ledger_table: str
        templates: {stack name: adapted template}     (deep copies; edit one and pass it to update_service)
        session: boto3.Session        client(service_name) -> boto3 client in `region`
        service_outputs -> outputs of the service stack
        push_images(*tags) -> list of image digests (one small image per tag in emulated ECR, each its own
            digest, each scan started as scan-on-push would on AWS; moto refuses a second scan the same day)
        service_parameters() -> {"ImageTag": ..., "StagedImageTag": ..., ...} as the stack holds them now
        update_service(*, image_tag, staged_image_tag, template=None) -> service outputs after the update
            (a plain stack-parameter update; `template` replaces the service template, e.g. a copy of
            `templates[stack_names["service"]]` with another DesiredCount)

Raises `EmulatedDeployError` naming the stack and status when a stack does not reach *_COMPLETE.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import boto3

from config import StageConfig
from local import aws
from local.adapter import adapt_template, alarms_to_create, secrets_to_create
from local.assembly import StageStacks, read_templates

IMAGE_TAG_PARAMETER = "ImageTag"
STAGED_IMAGE_TAG_PARAMETER = "StagedImageTag"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class EmulatedDeployError(RuntimeError):
    """A stack did not reach the expected state in the emulator."""


@dataclass
class EmulatedStage:
    stage: StageConfig
    region: str
    stack_names: dict[str, str]
    outputs: dict[str, dict[str, str]]
    repository_name: str
    ledger_table: str
    templates: dict[str, dict] = field(repr=False)
    session: aws.ReusedClients = field(repr=False)

    def client(self, service_name: str):
        return self.session.client(service_name)

    @property
    def service_outputs(self) -> dict[str, str]:
        return self.outputs[self.stack_names["service"]]

    def push_images(self, *tags: str) -> list[str]:
        return aws.push_images(self.session, self.repository_name, tags)

    def service_parameters(self) -> dict[str, str]:
        return aws.stack_parameters(self.session, self.stack_names["service"])

    def update_service(self, *, image_tag: str, staged_image_tag: str, template: dict | None = None) -> dict[str, str]:
        name = self.stack_names["service"]
        if template is not None:
            self.templates[name] = copy.deepcopy(template)
        _update(self.session, name, self.templates[name], {IMAGE_TAG_PARAMETER: image_tag, STAGED_IMAGE_TAG_PARAMETER: staged_image_tag})
        self.outputs[name] = aws.stack_outputs(self.session, name)
        return self.outputs[name]


def deploy_stage(
    assembly: Path,
    stage: StageConfig,
    *,
    image_tag: str = "1.0.0",
    staged_image_tag: str | None = None,
    region: str = "us-east-1",
    push_tags: tuple[str, ...] | list[str] = (),
) -> EmulatedStage:
    session = aws.ReusedClients(boto3.Session(region_name=region))
    stacks = StageStacks.of(stage)
    aws.mark_bootstrapped(session)
    aws.publish_file_assets(session, Path(assembly), stacks.in_order)
    templates = read_templates(Path(assembly), stacks.in_order)
    secret_arns = aws.create_secrets(session, secrets_to_create(templates))
    aws.create_alarms(session, alarms_to_create(templates))
    adapted = {name: adapt_template(name, template, secret_arns=secret_arns)[0] for name, template in templates.items()}
    service_parameters = {IMAGE_TAG_PARAMETER: image_tag, STAGED_IMAGE_TAG_PARAMETER: staged_image_tag or image_tag}

    existing = {summary["StackName"] for summary in session.client("cloudformation").list_stacks(
        StackStatusFilter=["CREATE_COMPLETE", "UPDATE_COMPLETE"])["StackSummaries"]}
    for name in stacks.in_order:
        if name == stacks.registry and name in existing:
            continue
        _create(session, name, adapted[name], service_parameters if name == stacks.service else {})

    outputs = {name: aws.stack_outputs(session, name) for name in stacks.in_order}
    emulated = EmulatedStage(
        stage=stage,
        region=region,
        stack_names=stacks.as_dict(),
        outputs=outputs,
        repository_name=outputs[stacks.registry]["RepositoryName"],
        ledger_table=outputs[stacks.data]["ReleaseLedgerTable"],
        templates=adapted,
        session=session,
    )
    if push_tags:
        emulated.push_images(*push_tags)
    return emulated


def _parameters(template: dict, values: dict[str, str]) -> list[dict]:
    unknown = set(values) - set(template.get("Parameters", {}))
    if unknown:
        raise ValueError(f"the template has no parameter {sorted(unknown)[0]!r}")
    # Parameters with a default (BootstrapVersion) are left out so they take it; never UsePreviousValue.
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in values.items()]


def _create(session: boto3.Session, name: str, template: dict, values: dict[str, str]) -> None:
    session.client("cloudformation").create_stack(
        StackName=name, TemplateBody=json.dumps(template), Parameters=_parameters(template, values), Capabilities=CAPABILITIES
    )
    _expect(session, name, "CREATE_COMPLETE")


def _update(session: boto3.Session, name: str, template: dict, values: dict[str, str]) -> None:
    session.client("cloudformation").update_stack(
        StackName=name, TemplateBody=json.dumps(template), Parameters=_parameters(template, values), Capabilities=CAPABILITIES
    )
    _expect(session, name, "UPDATE_COMPLETE")


def _expect(session: boto3.Session, name: str, status: str) -> None:
    actual = aws.stack_status(session, name)
    if actual != status:
        events = session.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if e.get("ResourceStatusReason")]
        raise EmulatedDeployError(f"{name} is {actual}, expected {status}" + (f" ({'; '.join(reasons[:3])})" if reasons else ""))
