"""The ECS stand-in's link to the emulator: what its cluster runs, published to moto_server; what callers asked ECS,
brought back and done.

Every `interval` seconds (one Follower) the agent posts the stand-in's snapshot (tasks, service deployments and
revisions, target states: `EcsStandIn.snapshot`) to the emulator's `PUBLISH_PATH` (local/moto_live.py), and gets back
the requests callers made since: StopServiceDeployment (handed to the stand-in's scheduler) and RunTask (the task
started at once; the next publication, sent straight away, names it so the caller's RunTask can answer). `stop`
withdraws the publication, so the cluster reads as moto's again instead of going stale.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Callable

from local.follower import Follower

if TYPE_CHECKING:
    from local.ecs_service import EcsStandIn

Say = Callable[[str], None]
# The agent's end of the contract lives here, not in local/moto_live.py, which imports moto's ECS and EC2 models (~0.8
# CPU-s): every `python -m local` process and supervisor imports the agent, and none of them runs moto.
PUBLISH_PATH = "/_liftoff/ecs/publish"
TIMEOUT_SECONDS = 10.0


class EcsAgentError(RuntimeError):
    """The emulator did not take a publication; the message says what it answered."""


class EcsAgent:
    interval = 0.25  # a StopServiceDeployment waits at most this long (plus a scheduler step) to be acted on

    def __init__(self, stand_in: EcsStandIn, *, endpoint_url: str, say: Say = print):
        self.stand_in, self.say = stand_in, say
        self.url = publication_url(endpoint_url)
        self._started: dict[str, str] = {}  # RunTask request id -> task ARN, until a publication carried it
        self._follower = Follower("ECS agent", self.exchange, interval=self.interval, say=say)

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()
        try:
            withdraw(self.url, **self._identity())
        except EcsAgentError as error:
            self.say(f"  ECS agent: the emulator kept the publication: {error}")

    def exchange(self) -> None:
        """Publish, act on what came back; publish again at once when something was started or stopped."""
        for _ in range(3):  # a burst of requests is taken in a few rounds, never in an endless loop
            requests = self._publish()
            if not requests:
                return
            for request in requests:
                self._act(request)

    def _publish(self) -> list[dict]:
        body = {**self._identity(), **self.stand_in.snapshot(), "started": dict(self._started)}
        answer = self._send("POST", body)
        for request_id in body["started"]:
            self._started.pop(request_id, None)
        return answer.get("requests", [])

    def _act(self, request: dict) -> None:
        if request.get("kind") == "stop_deployment":
            try:
                self.stand_in.request_stop(request["arn"], request.get("stopType", "ROLLBACK"))
            except ValueError as error:  # it finished between the call and now: ECS would have refused the call
                self.say(f"  ECS agent: StopServiceDeployment not honoured: {error}")
        elif request.get("kind") == "run_task":
            task = self.stand_in.run_one_off(request["taskDefinition"], group=request["group"], started_by=request.get("startedBy", ""))
            self._started[request["id"]] = task.arn
        else:
            self.say(f"  ECS agent: unknown request {request!r} ignored")

    def _identity(self) -> dict:
        runner = self.stand_in.runner
        return {"account": runner.account, "region": runner.region, "cluster": self.stand_in.cluster}

    def _send(self, method: str, body: dict) -> dict:
        return _send(self.url, method, body)


def publication_url(endpoint_url: str) -> str:
    return endpoint_url.rstrip("/") + PUBLISH_PATH


def withdraw(url: str, *, account: str, region: str, cluster: str) -> None:
    """The emulator forgets what a stand-in published for `cluster`: its ECS answers are moto's again. The agent's own
    stop does it; so does whoever clears after a stand-in killed outright (its publication would turn stale, and the
    emulator would then fail every ECS read of the cluster)."""
    _send(url, "DELETE", {"account": account, "region": region, "cluster": cluster})


def _send(url: str, method: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body, default=str).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise EcsAgentError(f"{method} {url}: {error}") from error
