"""local/group.py: the Auto Scaling group stand-in's decisions, on moto's group record with boxes faked (the box
world's own launch and drain are exercised in tests/local/test_local_up.py and the scaling tests)."""
from __future__ import annotations

import boto3
import pytest

from local.boxes import Box
from local.group import GroupStandIn


class FakeHosts:
    """What GroupStandIn uses of StageHosts: the group's record (moto), boxes, their liveness and the LB's states."""

    def __init__(self, session, group_name: str):
        self.session, self.group_name, self.state_dir = session, group_name, None
        self.world = type("World", (), {"boxes": {}, "record": lambda self, _dir: None})()
        self.stopped: set[str] = set()
        self.lb_states: dict[str, str] = {}
        self.controller = type("Controller", (), {"states": lambda _self: dict(self.lb_states)})()
        self.daemon = type("Daemon", (), {"run": lambda _self, *args, **kwargs: None})()
        self.launched: list[list[str]] = []
        self.drained: list[list[str]] = []
        self.registrations: list[tuple[str, list[str]]] = []
        for instance in self.listed():
            self.world.boxes[instance] = Box(instance, f"box-{instance}", "10.0.0.1", "10.0.0.1")

    def group(self) -> dict:
        return self.session.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.group_name])["AutoScalingGroups"][0]

    def listed(self) -> list[str]:
        return sorted(instance["InstanceId"] for instance in self.group()["Instances"])

    def boxes_running(self, boxes: list[Box]) -> list[Box]:
        return [box for box in boxes if box.instance_id not in self.stopped]

    def targets(self, verb: str, instances: list[str]) -> None:
        self.registrations.append((verb, instances))

    def launch(self, joining, began, event, state_manager, timeout) -> None:
        self.launched.append(joining)
        for instance in joining:
            self.world.boxes[instance] = Box(instance, f"box-{instance}", "10.0.0.2", "10.0.0.2")
            event.added[instance] = 1.0

    def drain_and_terminate(self, leaving, began, event, timeout) -> None:
        self.drained.append(leaving)
        for instance in leaving:
            self.world.boxes.pop(instance)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def group(emulated_aws):
    session = boto3.Session(region_name="us-east-1")
    session.client("ec2").create_launch_template(LaunchTemplateName="hosts", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    session.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="hosts", LaunchTemplate={"LaunchTemplateName": "hosts"}, MinSize=2, MaxSize=3, DesiredCapacity=2,
        AvailabilityZones=["us-east-1a"], HealthCheckType="ELB", HealthCheckGracePeriod=300)
    hosts = FakeHosts(session, "hosts")
    clock = Clock()
    said: list[str] = []
    return hosts, GroupStandIn(hosts, state_manager=None, say=said.append, monotonic=clock), clock, said


def test_a_stopped_box_is_replaced_at_once_by_a_new_instance_booted_in_the_same_step(group):
    hosts, stand_in, _clock, said = group
    first, second = hosts.listed()
    stand_in.step()
    assert hosts.launched == [] and hosts.drained == []  # the boxes match the record: nothing to do
    hosts.stopped.add(first)
    stand_in.step()
    assert stand_in.replaced == [(first, "its box stopped (EC2 status checks failed)")]
    listed = hosts.listed()
    assert first not in listed and second in listed and len(listed) == 2  # capacity kept: moto launched one
    (new,) = set(listed) - {second}
    assert hosts.launched == [[new]] and sorted(hosts.world.boxes) == sorted(listed)
    assert ("deregister", [first]) in hosts.registrations and ("deregister", [new]) in hosts.registrations
    assert f"  Auto Scaling group: {new} in service 1.0 s after launch" in said


def test_a_host_unhealthy_in_the_load_balancer_is_replaced_only_past_the_grace_period(group):
    hosts, stand_in, clock, _said = group
    first, _second = hosts.listed()
    stand_in.step()  # the boxes' launch times start here
    hosts.lb_states[first] = "unhealthy"
    clock.now += 299
    stand_in.step()
    assert stand_in.replaced == []
    hosts.lb_states[first] = "initial"  # a host still starting is not failing its checks
    clock.now += 10
    stand_in.step()
    assert stand_in.replaced == []
    hosts.lb_states[first] = "unhealthy"
    stand_in.step()
    assert [instance for instance, _ in stand_in.replaced] == [first]
    assert "past the 300 s grace period" in stand_in.replaced[0][1]


def test_nothing_is_terminated_while_liftoff_has_terminate_suspended_and_the_replacement_follows_the_resume(group):
    hosts, stand_in, _clock, _said = group
    first, _ = hosts.listed()
    autoscaling = hosts.session.client("autoscaling")
    autoscaling.suspend_processes(AutoScalingGroupName="hosts", ScalingProcesses=["Terminate", "AZRebalance"])
    hosts.stopped.add(first)
    stand_in.step()
    assert stand_in.replaced == [] and first in hosts.listed()
    autoscaling.resume_processes(AutoScalingGroupName="hosts", ScalingProcesses=["Terminate", "AZRebalance"])
    stand_in.step()
    assert [instance for instance, _ in stand_in.replaced] == [first]


def test_the_group_follows_a_changed_capacity_and_floor(group):
    hosts, stand_in, _clock, said = group
    autoscaling = hosts.session.client("autoscaling")
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="hosts", MaxSize=4, DesiredCapacity=3)
    stand_in.step()
    assert len(hosts.listed()) == 3 and len(hosts.launched) == 1 and sorted(hosts.world.boxes) == hosts.listed()
    autoscaling.set_desired_capacity(AutoScalingGroupName="hosts", DesiredCapacity=2)
    stand_in.step()
    assert len(hosts.drained) == 1 and sorted(hosts.world.boxes) == hosts.listed() and len(hosts.listed()) == 2
    # A floor raised above the capacity: moto raises the capacity, as AWS does, and a box boots for it.
    autoscaling.update_auto_scaling_group(AutoScalingGroupName="hosts", MinSize=3)
    stand_in.step()
    assert hosts.group()["DesiredCapacity"] == 3 and len(hosts.world.boxes) == 3 and len(hosts.launched) == 2
