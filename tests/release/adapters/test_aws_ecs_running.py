"""`Aws.ecs_running` against botocore's ECS model: what runs, and the newest stopped tasks with ECS's own reason."""
from __future__ import annotations

from datetime import datetime, timezone

import boto3
from botocore.stub import Stubber

from release.adapters.aws import STOPPED_TASKS_SHOWN, Aws

CLUSTER, SERVICE = "c", "s"
DEFINITION = "arn:aws:ecs:us-east-1:123456789012:task-definition/app:2"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:{}"


def task(task_id: str, status: str, version: str, *, stopped_minute: int | None = None, reason: str = "") -> dict:
    described = {"taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{task_id}", "lastStatus": status,
                 "containers": [{"name": "app", "image": IMAGE.format(version)}]}
    if stopped_minute is not None:
        described.update(stoppedAt=datetime(2026, 12, 3, 10, stopped_minute, tzinfo=timezone.utc), stoppedReason=reason)
    return described


def test_running_tasks_and_the_newest_stopped_ones_with_their_reasons():
    ecs = boto3.client("ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    aws = Aws(region="us-east-1")
    aws._clients["ecs"] = ecs
    stopped = [task(f"s{minute}", "STOPPED", "1.1.0", stopped_minute=minute, reason=f"reason {minute}") for minute in range(7)]
    with Stubber(ecs) as stub:
        stub.add_response("describe_services", {"services": [{"serviceName": SERVICE, "taskDefinition": DEFINITION, "desiredCount": 2,
                                                              "deployments": [{"status": "PRIMARY", "taskDefinition": DEFINITION}]}]},
                          {"cluster": CLUSTER, "services": [SERVICE]})
        stub.add_response("describe_task_definition", {"taskDefinition": {"containerDefinitions": [{"name": "app", "image": IMAGE.format("1.1.0")}]}},
                          {"taskDefinition": DEFINITION})
        stub.add_response("list_tasks", {"taskArns": ["r1"]}, {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "RUNNING"})
        stub.add_response("describe_tasks", {"tasks": [task("r1", "RUNNING", "1.0.0")]}, {"cluster": CLUSTER, "tasks": ["r1"]})
        stub.add_response("list_tasks", {"taskArns": [t["taskArn"] for t in stopped]},
                          {"cluster": CLUSTER, "serviceName": SERVICE, "desiredStatus": "STOPPED"})
        stub.add_response("describe_tasks", {"tasks": stopped}, {"cluster": CLUSTER, "tasks": [t["taskArn"] for t in stopped]})
        running = aws.ecs_running(CLUSTER, SERVICE)
        stub.assert_no_pending_responses()
    assert running["tasks"] == [{"task": "r1", "status": "RUNNING", "image": IMAGE.format("1.0.0")}]
    # Newest first, at most STOPPED_TASKS_SHOWN, each with when and ECS's own words.
    assert [t["task"] for t in running["stopped_tasks"]] == [f"s{minute}" for minute in range(6, 6 - STOPPED_TASKS_SHOWN, -1)]
    assert running["stopped_tasks"][0] == {"task": "s6", "image": IMAGE.format("1.1.0"), "stopped_at": "2026-12-03T10:06:00+00:00",
                                           "reason": "reason 6"}
