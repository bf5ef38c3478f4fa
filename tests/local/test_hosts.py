"""local/hosts.py's State Manager stand-in, with the stack and the hosts faked (the boxes run it for real in
tests/local/host_boxes_world/ and tests/local/test_local_up.py)."""
from __future__ import annotations

import json

from local import hosts as hosts_module
from local.hosts import GateRun, HostsRuntime, StateManagerStandIn
from tests.helpers.box_world import wait_until

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

    def update_stack(self, StackName: str, Parameters: list[dict], **_) -> None:  # noqa: N803
        self.parameters.update({p["ParameterKey"]: p["ParameterValue"] for p in Parameters if "ParameterValue" in p})


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


def test_a_stack_change_through_the_runtime_runs_its_gate_without_waiting_for_the_poll():
    stack = FakeStack(StagedImageTag="1.0.0", ImageTag="1.0.0")
    hosts = FakeHosts(stack)
    state_manager = StateManagerStandIn(hosts, say=lambda _: None, interval=3600)  # it would poll again in an hour
    state_manager.start()
    session = type("Session", (), {"client": lambda _self, _name, **_settings: stack})()
    runtime = HostsRuntime(hosts=hosts, state_manager=state_manager, service_stack=hosts.service_stack,
                           registry_stack="production-registry", session=session)
    try:
        runtime.update_parameters(hosts.service_stack, [{"ParameterKey": "ImageTag", "ParameterValue": "1.1.0"},
                                                        {"ParameterKey": "StagedImageTag", "UsePreviousValue": True}])
        wait_until(lambda: hosts.ran[-1] == ("activate", "1.1.0", "100%"), 10, "the activate gate of 1.1.0", interval=0.01)
        assert state_manager.status["activate"] == {"tag": "1.1.0", "status": "Success"}
    finally:
        state_manager.stop()
