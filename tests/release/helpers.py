"""Test helpers for the release tool: run the CLI in-process against an emulated stage."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

from release.cli import main
from tests.helpers.emulated_stage import EmulatedStage
from tests.helpers.synth import CDK_JSON


class Tty(io.StringIO):
    """A stdin that claims to be a terminal, for the confirmation prompt."""

    def isatty(self) -> bool:
        return True


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


class ReleaseStage:
    def __init__(self, emulated: EmulatedStage):
        self.emulated = emulated
        self.name = emulated.stage.name

    def scan(self, *tags: str) -> None:
        ecr = self.emulated.client("ecr")
        for tag in tags:
            ecr.start_image_scan(repositoryName=self.emulated.repository_name, imageId={"imageTag": tag})

    def run(self, *argv: str, stdin: io.StringIO | None = None, aws=None, clock=None) -> Run:
        out, err = io.StringIO(), io.StringIO()
        full = [*argv, "--stage", self.name, "--config", str(CDK_JSON)]
        if argv and argv[0] in ("stage", "activate", "rollback"):
            full += ["--poll-interval", "0"]
        kwargs = {"aws": aws} if aws is not None else {}
        if clock is not None:
            kwargs["clock"] = clock
        code = main(full, stdin=stdin or io.StringIO(""), stdout=out, stderr=err, sleep=lambda _: None, **kwargs)
        return Run(code, out.getvalue(), err.getvalue())

    def parameters(self) -> dict[str, str]:
        return self.emulated.service_parameters()
