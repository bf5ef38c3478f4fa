"""local/hosts.py's State Manager stand-in, with the stack and the hosts faked (the boxes run it for real in
tests/local/test_host_boxes.py and tests/local/test_local_up.py)."""
from __future__ import annotations

import json

from local import hosts as hosts_module
from local.hosts import GateRun, StateManagerStandIn

TEMPLATE = {"Resources": {"Activate": {"Type": "AWS::SSM::Association",
                                       "Properties": {"Parameters": {"ImageTag": [{"Ref": "ImageTag"}]}, "MaxConcurrency": "100%"}}}}


class FakeStack:
    """CloudFormation's answers the stand-in reads: the stack's parameters and its template."""

    def __init__(self, **parameters: str):
        self.parameters = parameters

    def describe_stacks(self, StackName: str) -> dict:  # noqa: N803 (boto3's keyword)
        return {"Stacks": [{"Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()]}]}

    def get_template(self, StackName: str, TemplateStage: str) -> dict:  # noqa: N803
        return {"TemplateBody": json.dumps(TEMPLATE)}


class FakeHosts:
    def __init__(self, stack: FakeStack):
        self.service_stack = "production-service"
        self.session = type("Session", (), {"client": lambda _self, _name: stack})()
        self.ran: list[tuple[str, str, str]] = []

    def run_gate(self, gate: str, tag: str, *, max_concurrency: str) -> list[GateRun]:
        self.ran.append((gate, tag, max_concurrency))
        return [GateRun(gate=gate, tag=tag, instance_id="i-1", exit_code=0, seconds=0.1, output="")]


def test_settle_runs_a_change_the_follower_has_not_polled_yet_and_stops_following(monkeypatch):
    monkeypatch.setattr(hosts_module, "FOLLOW_INTERVAL_SECONDS", 3600)  # the follower never polls again by itself
    stack = FakeStack(StagedImageTag="1.0.0", ImageTag="1.0.0")
    hosts = FakeHosts(stack)
    said: list[str] = []
    state_manager = StateManagerStandIn(hosts, say=said.append)
    state_manager.start()  # the associations' first run
    assert hosts.ran == [("stage", "1.0.0", "1"), ("activate", "1.0.0", "100%")]
    stack.parameters["ImageTag"] = "1.1.0"  # a rollback's (or any) stack update, just before the walk ends
    runs = state_manager.settle()
    assert [(run.gate, run.tag) for run in runs] == [("activate", "1.1.0")]
    assert hosts.ran[-1] == ("activate", "1.1.0", "100%")
    assert state_manager.status["activate"] == {"tag": "1.1.0", "status": "Success"}
    assert not state_manager._follower.running
    assert "  activate 1.1.0: 1 host(s), MaxConcurrency 100%" in [line.rsplit(",", 1)[0] for line in said]
    assert state_manager.settle() == []  # nothing left to run: nothing runs twice
