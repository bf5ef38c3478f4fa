"""Test helpers for the release tool: run the CLI in-process against an emulated stage."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace

from local import runtime
from release.adapters.ledger import Ledger
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

    def run(self, *argv: str, stage: str | None = None, stdin: io.StringIO | None = None, aws=None, clock=None,
            monotonic=None, sleep=None, stdout=None, config=None) -> Run:
        out, err = stdout or io.StringIO(), io.StringIO()
        full = [*argv, "--stage", stage or self.name, "--config", str(config or CDK_JSON)]
        if argv and argv[0] in ("stage", "activate", "rollback", "migrate"):
            full += ["--poll-interval", "0"]
        kwargs = {"aws": aws if aws is not None else EmulatedRuntime(self.emulated)}
        if clock is not None:
            kwargs["clock"] = clock
        if monotonic is not None:
            kwargs["monotonic"] = monotonic
        code = main(full, stdin=stdin or io.StringIO(""), stdout=out, stderr=err, sleep=sleep or (lambda _: None), **kwargs)
        return Run(code, out.getvalue() if stdout is None else "", err.getvalue())

    def parameters(self) -> dict[str, str]:
        return self.emulated.service_parameters()

    def ledger(self) -> Ledger:
        return Ledger(self.emulated.client("dynamodb"), self.emulated.ledger_table)

    def entries(self) -> list:
        return self.ledger().entries()


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps; `on_sleep` runs at each sleep
    (e.g. another release's heartbeat), so lease judgements need no real waiting."""

    def __init__(self, on_sleep=None):
        self.now, self.on_sleep, self.slept = 1000.0, on_sleep, 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        if self.on_sleep is not None:
            self.on_sleep()


class EmulatedRuntime(runtime.EmulatedRuntime):
    """`local.runtime.EmulatedRuntime` (the emulator's stand-in for what runs) bound to an in-process EmulatedStage.

    Everything but the reads of what runs is the real adapter; those report what the stack recorded
    as active. `healthy=False` reports the targets unhealthy.
    """

    def __init__(self, emulated: EmulatedStage, *, healthy: bool = True):
        # The stage's clients, made once per test: a test runs the CLI several times, each run a new runtime, and a
        # client costs ~10 ms of CPU to make (a CLI process on AWS makes each once anyway).
        super().__init__(service_stack=emulated.stack_names["service"], registry_stack=emulated.stack_names["registry"],
                         region=emulated.region, session=emulated.session, healthy=healthy)
        self.emulated = emulated


class RollsBack(EmulatedRuntime):
    """A CloudFormation failure mid-update, injected at the adapter boundary.

    moto applies an update synchronously and has no resource that fails on a parameter value (no ECS
    circuit breaker, no health checks), so it cannot roll back. This adapter accepts the update
    without applying it (the stack keeps its old parameters, as after a real rollback) and reports
    the events and final status CloudFormation gives when the ECS deployment circuit breaker trips.
    """

    REASON = "ECS Deployment Circuit Breaker was triggered"

    def __init__(self, emulated: EmulatedStage):
        super().__init__(emulated)
        self.updated_with: list | None = None

    def update_parameters(self, name: str, parameters: list[dict[str, str]]) -> None:
        self.updated_with = parameters
        self._injected = [
            ("UPDATE_IN_PROGRESS", name, "AWS::CloudFormation::Stack", "User Initiated"),
            ("UPDATE_IN_PROGRESS", "EcsService5196398A", "AWS::ECS::Service", ""),
            ("UPDATE_FAILED", "EcsService5196398A", "AWS::ECS::Service", self.REASON),
            ("UPDATE_FAILED", "ActiveImageTagParameter8263EC80", "AWS::SSM::Parameter", "Resource update cancelled"),
            ("UPDATE_ROLLBACK_IN_PROGRESS", name, "AWS::CloudFormation::Stack", "The following resource(s) failed to update: [EcsService5196398A]."),
            ("UPDATE_ROLLBACK_COMPLETE", name, "AWS::CloudFormation::Stack", ""),
        ]

    def _events(self, name: str) -> list[dict]:
        injected = [
            {"EventId": f"injected-{i}", "LogicalResourceId": logical, "ResourceType": kind, "ResourceStatus": status,
             "ResourceStatusReason": reason, "Timestamp": None}
            for i, (status, logical, kind, reason) in enumerate(getattr(self, "_injected", []))
        ]
        return list(reversed(injected)) + super()._events(name)

    def stack(self, name: str):
        stack = super().stack(name)
        if getattr(self, "_injected", None) and name == self.emulated.stack_names["service"]:
            return replace(stack, status="UPDATE_ROLLBACK_COMPLETE")
        return stack


class Busy(EmulatedRuntime):
    """A service stack in the middle of another update (moto finishes updates before answering)."""

    def stack(self, name: str):
        stack = super().stack(name)
        return replace(stack, status="UPDATE_IN_PROGRESS") if name == self.emulated.stack_names["service"] else stack
