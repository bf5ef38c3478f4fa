"""Synthesis helpers shared by the test modules."""
from __future__ import annotations

import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# CDK's built-in CloudFormation validator (a WASM engine, on by default since 2.27x) costs ~9 CPU-s to start in every
# process that synthesizes and ~0.5 s a synth: some forty processes a run (pytest workers, `cdk synth`, app.py
# variants), all inheriting this. It runs once, strict, on the shipped app (tests/test_cfn_lint.py), beside the real
# cfn-lint over every template; every other synth only reads what the app builds.
os.environ.setdefault("CDK_VALIDATION", "false")

REPO = Path(__file__).resolve().parents[2]
CDK_JSON = REPO / "cdk.json"


def cdk_context() -> dict:
    return json.loads(CDK_JSON.read_text())["context"]


# The host boxes' worlds run the shipped stages with a shorter host canary: every activation where another version
# serves holds each wave for canary_seconds (20 s as shipped), some twenty waves a run. 10 s at 10 % of a host's
# requests still gives the judge its minimum under the tests' loads (20-40 requests/s through the load balancer);
# the canary's timing and judging are tests/components/test_ec2_host_canary.py's. liftoff itself may go on reading
# the shipped cdk.json: only the hosts read canary_seconds (their user data's environment).
BOX_WORLD_CANARY_SECONDS = 10


def box_world_context() -> dict:
    """cdk.json's context with production's host canary at BOX_WORLD_CANARY_SECONDS (tests/conftest.py `box_world`)."""
    context = cdk_context()  # read afresh: changing it changes no one else's
    context["liftoff"]["stages"]["production"]["canary_seconds"] = BOX_WORLD_CANARY_SECONDS
    return context


@dataclass(frozen=True)
class Synthesis:
    outdir: Path
    templates: dict[str, dict]

    def template(self, stack_name: str):
        from aws_cdk.assertions import Template

        return Template.from_json(self.templates[stack_name])


# The flag that makes the validator's findings errors (`cdk synth` only warns of them by default).
VALIDATE_AGAINST_DEFAULT_RULES = "@aws-cdk/core:validateAgainstDefaultRules"


def cdk_app(context: dict, outdir: Path, *, validated: bool = False):
    """A CDK app with `context`, writing to `outdir`. `validated`: CDK's own CloudFormation validator runs at its synth
    with its findings as errors; registered by hand, the plugin runs although CDK_VALIDATION=false (above)."""
    import aws_cdk as cdk

    if validated:
        context = {**context, VALIDATE_AGAINST_DEFAULT_RULES: True}
    app = cdk.App(outdir=str(outdir), context=context)
    if validated:
        cdk.Validations.of(app).add_plugins(cdk.CloudFormationValidatePlugin())
    return app


def synthesize(context: dict, outdir: Path, *, validated: bool = False) -> Synthesis:
    """Build the app exactly as app.py does, with the given context, and write the cloud assembly (`validated`: see
    `cdk_app`; a finding then fails the synth, naming it)."""
    from app import build
    from config import CONTEXT_KEY, parse_config

    app = cdk_app(context, outdir, validated=validated)
    build(app, parse_config(context[CONTEXT_KEY]))
    assembly = app.synth()
    return Synthesis(outdir=outdir, templates={stack.stack_name: stack.template for stack in assembly.stacks})


HOST_FILES_OBJECT = re.compile(r"s3://cdk-[^/\"]+/([0-9a-f]{64})\.tgz")


def host_files_in_assembly(outdir: Path, template: dict) -> dict[str, bytes]:
    """The host files the hosts' user data copies down ({path: contents}), read from the asset it names."""
    (launch_template,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::LaunchTemplate"]
    (digest,) = HOST_FILES_OBJECT.findall(json.dumps(launch_template))
    with tarfile.open(outdir / f"asset.{digest}.tgz", mode="r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
