"""Another shell's `liftoff` on a `make local-up` world: the release tool's adapters that ask the supervisor.

What runs on the host boxes of an ec2 world (their docker, the load balancer stand-in's checks, the State
Manager stand-in's association results, Run Command on a box) is known only to the supervisor process
(local/supervisor.py); `SupervisedRuntime` asks it over its loopback API for exactly those reads and
commands and sends everything else to the emulator, as `liftoff` sends it to AWS. The hosts' own reports
are real (the boxes write them to the emulator's SSM), so none is made up here.

On an ecs world the emulator itself answers the ECS and target health reads from the supervisor's ECS
stand-in (local/moto_live.py), RunTask included: `SupervisedTasksRuntime` is the real adapter for those, as
local.ecs_stage.TasksRuntime is inside the walk, and asks the supervisor only for image blobs (the ECR
stand-in's, where an image's schema labels are).
"""
from __future__ import annotations

import base64
import json
import urllib.request

from local.runtime import EmulatedRuntime, RealTaskReads
from release.adapters.schema_aws import SchemaAdapter


class ControlError(RuntimeError):
    """The supervisor did not answer, or answered with an error (its type and message said)."""


class ControlClient:
    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def state(self, *, timeout: float = 5.0) -> dict:
        try:
            with urllib.request.urlopen(f"{self.url}/state", timeout=timeout) as response:
                return json.loads(response.read())
        except (OSError, ValueError) as error:
            raise ControlError(f"the local supervisor at {self.url} does not answer ({error})") from None

    def call(self, method: str, *, timeout: float = 60.0, **args):
        request = urllib.request.Request(f"{self.url}/call", data=json.dumps({"method": method, "args": args}).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.loads(response.read())
        except (OSError, ValueError) as error:
            raise ControlError(f"the local supervisor at {self.url} did not answer {method} ({error})") from None
        if "error" in answer:
            error = answer["error"]
            raise ControlError(f"{error['message']} (the local supervisor's {error['type']}, answering {method})")
        return answer["result"]


class _AsksTheSupervisor(EmulatedRuntime):
    def __init__(self, *, control: ControlClient, **kwargs):
        super().__init__(**kwargs)
        self.control = control

    def download_layer(self, repository: str, digest: str) -> bytes | None:
        blob = self.control.call("download_layer", repository=repository, digest=digest)
        return None if blob is None else base64.b64decode(blob)


class SupervisedRuntime(_AsksTheSupervisor):
    """An ec2 world: what runs on the hosts, asked of the supervisor."""

    def ec2_running(self, auto_scaling_group: str, association_id: str) -> dict:
        return self.control.call("ec2_running", auto_scaling_group=auto_scaling_group, association_id=association_id)

    def target_health(self, target_group_arn: str) -> list[dict]:
        return self.control.call("target_health", target_group_arn=target_group_arn)

    def start_association_once(self, association_id: str) -> None:
        # The association runs on every host before the supervisor answers: bounded as a gate is.
        self.control.call("start_association_once", association_id=association_id, timeout=1800)

    def send_to_hosts(self, instances, document, parameters, *, timeout, poll, sleep, monotonic):
        # The HTTP wait outlasts the command's own timeout, which the supervisor applies on the hosts.
        results = self.control.call("send_to_hosts", timeout=timeout + 60, instances=list(instances), document=document,
                                    parameters=parameters, command_timeout=timeout)
        return {instance: tuple(result) for instance, result in results.items()}

    def run_one_off(self, outputs, **kwargs):
        # `liftoff migrate` on the boxes: the real adapter's path (one in-service host, the stack's migrate document).
        return SchemaAdapter.run_one_off(self, outputs, **kwargs)


class SupervisedTasksRuntime(RealTaskReads, _AsksTheSupervisor):
    """An ecs world: the real adapter's reads of ECS and the target groups, which the emulator answers from the kept ECS
    stand-in's publications as AWS answers them, and `liftoff migrate`'s one-off task through RunTask; nothing is made
    up from the stack's record."""
