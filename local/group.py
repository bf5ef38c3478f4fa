"""The Auto Scaling group stand-in: keeps a kept world's host boxes at the size and health the group's record asks.

moto keeps the group's record (limits, desired capacity, instances) and runs nothing. Each `step` makes the
boxes match that record as the group would (https://docs.aws.amazon.com/autoscaling/ec2/userguide/):
- capacity: moto keeps the desired capacity within MinSize..MaxSize and lists the instances that makes (a
  deploy that raises the floor launches up to it). An instance moto lists without a box boots one from the launch template's user
  data, is registered in the target group once its box runs, gets both gates (State Manager applies its
  tag-targeted associations to every instance that joins) and is in service once the load balancer finds it
  healthy. A box whose instance moto no longer lists is deregistered, drained for the deregistration delay,
  then stopped (`StageHosts.scale_to`'s launch and drain, shared).
- health ("Health checks for instances in an Auto Scaling group"): a box that stopped fails EC2's status
  checks and is replaced at once; with HealthCheckType ELB, a host the load balancer finds unhealthy is
  replaced once HealthCheckGracePeriod has passed since it launched. Replacing is
  TerminateInstanceInAutoScalingGroup without decrementing the capacity: moto launches the new instance in
  the same call, and the same step boots it.
- suspended processes ("Suspend and resume processes"): `liftoff` suspends Terminate and AZRebalance while
  an activation runs; nothing here terminates (no replacement, no scale-in) while Terminate, ReplaceUnhealthy
  or HealthCheck is suspended, and nothing launches while Launch is.
"""
from __future__ import annotations

import time
from typing import Callable

from local import boxes
from local.hosts import ScaleEvent, StageHosts, StateManagerStandIn

Say = Callable[[str], None]


class GroupStandIn:
    def __init__(self, hosts: StageHosts, state_manager: StateManagerStandIn, *, say: Say = print,
                 monotonic: Callable[[], float] = time.monotonic):
        self.hosts, self.state_manager, self.say, self.monotonic = hosts, state_manager, say, monotonic
        # When each box was launched (by this stand-in's clock): the grace period counts from there. Boxes found
        # already running when the stand-in starts count from then.
        self.launched: dict[str, float] = {}
        self.replaced: list[tuple[str, str]] = []  # (instance, why)

    def step(self) -> None:
        group = self.hosts.group()
        now = self.monotonic()
        for instance in self.hosts.world.boxes:
            self.launched.setdefault(instance, now)
        suspended = {process["ProcessName"] for process in group.get("SuspendedProcesses", [])}
        if not suspended & {"Terminate", "ReplaceUnhealthy", "HealthCheck", "Launch"}:
            for instance, why in self._failing(group):
                self._replace(instance, why)
        self._match_record(suspended)

    # --- decisions ----------------------------------------------------------------------------

    def _failing(self, group: dict) -> list[tuple[str, str]]:
        """Hosts the group would replace now, and why."""
        grace = float(group.get("HealthCheckGracePeriod", 0))
        elb_checks = group.get("HealthCheckType") == "ELB"
        states = self.hosts.controller.states() if self.hosts.controller is not None else {}
        failing = []
        members = list(self.hosts.world.boxes.items())
        running = self.hosts.boxes_running([box for _, box in members])
        for instance, box in members:
            if box not in running:
                failing.append((instance, "its box stopped (EC2 status checks failed)"))
            elif elb_checks and states.get(instance) == "unhealthy" and self.monotonic() - self.launched[instance] >= grace:
                failing.append((instance, f"the load balancer finds it unhealthy, past the {grace:.0f} s grace period"))
        return failing

    # --- actions ------------------------------------------------------------------------------

    def _replace(self, instance: str, why: str) -> None:
        self.say(f"  Auto Scaling group: replacing {instance}: {why}")
        self.hosts.session.client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance, ShouldDecrementDesiredCapacity=False)
        box = self.hosts.world.boxes.pop(instance)
        self.hosts.world.record(self.hosts.state_dir)
        self.hosts.targets("deregister", [instance])  # the group deregisters what it terminates (moto does not)
        self.hosts.daemon.run("rm", "--force", "--volumes", box.container, check=False, timeout=120)
        self.launched.pop(instance, None)
        self.replaced.append((instance, why))

    def _match_record(self, suspended: set[str]) -> None:
        """New instances first, then the ones that left: when both change at once (a stack update that changes what the
        instances launch from or into replaces every one: local/moto_models.py) the old hosts serve until the new ones
        are in service."""
        listed = {instance["InstanceId"] for instance in self.hosts.group().get("Instances", [])}
        boxed = set(self.hosts.world.boxes)
        joining = [] if "Launch" in suspended else sorted(listed - boxed)
        leaving = [] if "Terminate" in suspended else sorted(boxed - listed)
        if not joining and not leaving:
            return
        began = self.monotonic()
        event = ScaleEvent(before=len(boxed), after=len(listed))
        if joining:
            self.say(f"  Auto Scaling group: launching {', '.join(joining)} from the launch template")
            # moto registers a new instance at once; the group registers it once it runs (see StageHosts.scale_to).
            self.hosts.targets("deregister", joining)
            try:
                self.hosts.launch(joining, began, event, self.state_manager, boxes.BOOT_TIMEOUT_SECONDS)
            finally:
                for instance in joining:
                    self.launched[instance] = self.monotonic()
            for run in event.gate_runs:
                self.say(f"  host {run.instance_id}: {run.gate} {run.tag} -> exit {run.exit_code} in {run.seconds:.1f} s "
                         "(State Manager, on joining the group)")
            for instance, seconds in event.added.items():
                self.say(f"  Auto Scaling group: {instance} in service {seconds:.1f} s after launch")
        if leaving:
            self.say(f"  Auto Scaling group: draining and terminating {', '.join(leaving)}")
            self.hosts.drain_and_terminate(leaving, began, event, boxes.BOOT_TIMEOUT_SECONDS)
