"""Read a synthesized cloud assembly: which stacks make up a stage, in deploy order, and their templates."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from config import StageConfig

# The parameter the CDK default synthesizer adds; it resolves from the bootstrap stack's SSM parameter.
BOOTSTRAP_VERSION_PARAMETER = "BootstrapVersion"
BOOTSTRAP_VERSION_SSM_NAME = "/cdk-bootstrap/hnb659fds/version"


@dataclass(frozen=True)
class StageStacks:
    """The stack names of one stage by role; `in_order` is the order a deploy creates them in."""

    registry: str
    data: str
    service: str

    @classmethod
    def of(cls, stage: StageConfig) -> "StageStacks":
        return cls(registry=stage.registry_stack_name, data=stage.data_stack_name, service=stage.service_stack_name)

    @property
    def in_order(self) -> tuple[str, str, str]:
        return (self.registry, self.data, self.service)

    def as_dict(self) -> dict[str, str]:
        return {"registry": self.registry, "data": self.data, "service": self.service}


def manifest(assembly: Path) -> dict:
    return json.loads((assembly / "manifest.json").read_text())


def template_files(assembly: Path) -> dict[str, Path]:
    """Stack name -> template file, for every CloudFormation stack artifact in the assembly."""
    files = {}
    for artifact_id, artifact in manifest(assembly)["artifacts"].items():
        if artifact["type"] == "aws:cloudformation:stack":
            files[artifact.get("displayName", artifact_id)] = assembly / artifact["properties"]["templateFile"]
    return files


def read_templates(assembly: Path, stack_names: tuple[str, ...]) -> dict[str, dict]:
    files = template_files(assembly)
    missing = [name for name in stack_names if name not in files]
    if missing:
        raise LookupError(f"{assembly} has no stack {missing[0]!r}; it has {', '.join(sorted(files))}")
    return {name: json.loads(files[name].read_text()) for name in stack_names}
