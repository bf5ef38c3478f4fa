"""Thin boto3 adapters: AWS responses in, plain `release.pure.decisions` data out. No decisions here.

Clients are created on first use, never at import, so tests can start moto first and a missing
region or credential surfaces as a clear error at the call that needs it.

Every client has connect and read timeouts and a bounded retry policy (botocore's defaults are 60 s
each and several retries: an endpoint that accepts and never answers would hold a command for
minutes). `bound_waits(seconds)` fits them inside the user's `--timeout`.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from release.pure.decisions import Image, Stack
from release.adapters.ecs_aws import deployment_status, read_deployments, stop_with_rollback
from release.adapters.ledger import Ledger
from release.adapters.schema_aws import SchemaAdapter

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
# Per call: AWS's describe/update calls answer in well under a second; 10 s means the endpoint is not answering.
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
ATTEMPTS = 2  # one retry for a transient error, no more: the caller's own loops poll again anyway


def client_config(budget_seconds: float | None = None) -> Config:
    """Timeouts and retries for every client; with a budget, the worst case (every attempt timing out,
    plus backoff) stays inside it."""
    read = READ_TIMEOUT_SECONDS
    if budget_seconds is not None:
        read = max(0.5, min(READ_TIMEOUT_SECONDS, budget_seconds / (ATTEMPTS + 1)))
    return Config(connect_timeout=min(CONNECT_TIMEOUT_SECONDS, read), read_timeout=read,
                  retries={"mode": "standard", "total_max_attempts": ATTEMPTS})


class StackNotFound(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class MissingOutput(Exception):
    def __init__(self, stack: str, output: str):
        super().__init__(f"{stack}.{output}")
        self.stack, self.output = stack, output


class Aws(SchemaAdapter):
    def __init__(self, *, region: str | None = None, session: boto3.session.Session | None = None):
        self._region = region
        self._session = session
        self._clients: dict[str, Any] = {}
        self._config = client_config()

    def bound_waits(self, budget_seconds: float) -> None:
        """Fit every call's timeouts and retries inside `budget_seconds` (clients made from now on)."""
        self._config = client_config(budget_seconds)
        self._clients.clear()

    @property
    def read_timeout(self) -> float:
        return self._config.read_timeout

    def client(self, service: str):
        if service not in self._clients:
            if self._session is None:
                self._session = boto3.session.Session(region_name=self._region)
            self._clients[service] = self._session.client(service, config=self._config)
        return self._clients[service]

    # --- identity -------------------------------------------------------------------------------

    def caller_arn(self) -> str:
        return self.client("sts").get_caller_identity()["Arn"]

    # --- CloudFormation -------------------------------------------------------------------------

    def stack(self, name: str) -> Stack:
        try:
            stack = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
        except ClientError as error:
            if error.response["Error"]["Code"] == "ValidationError" and "does not exist" in error.response["Error"]["Message"]:
                raise StackNotFound(name) from None
            raise
        return Stack(
            name=name,
            status=stack["StackStatus"],
            parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
            outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
            status_reason=stack.get("StackStatusReason", ""),
        )

    def output(self, stack_name: str, key: str) -> str:
        value = self.stack(stack_name).outputs.get(key)
        if not value:
            raise MissingOutput(stack_name, key)
        return value

    def stack_event_ids(self, name: str) -> set[str]:
        return {event["EventId"] for event in self._events(name)}

    def new_stack_events(self, name: str, seen: set[str]) -> list[dict]:
        """Events not in `seen`, oldest first; adds them to `seen`."""
        fresh = [event for event in self._events(name) if event["EventId"] not in seen]
        seen.update(event["EventId"] for event in fresh)
        return [_event(event) for event in reversed(fresh)]

    def _events(self, name: str) -> list[dict]:
        # Newest first; the first page covers any one update of these small stacks.
        return self.client("cloudformation").describe_stack_events(StackName=name).get("StackEvents", [])

    def parameter_inputs(self, stack: Stack) -> dict[str, str]:
        """The values to pass back to keep every parameter as it is.

        For an SSM-typed parameter CloudFormation reports the parameter *name* as ParameterValue (and
        the value as ResolvedValue), so passing ParameterValue back keeps it. moto reports the resolved
        value without ResolvedValue; passing that back would name a non-existent SSM parameter, so in
        that case only the template's default (the SSM name it was created from) is correct.
        """
        described = self.client("cloudformation").describe_stacks(StackName=stack.name)["Stacks"][0].get("Parameters", [])
        body = self.client("cloudformation").get_template(StackName=stack.name, TemplateStage="Original")["TemplateBody"]
        declared = (json.loads(body) if isinstance(body, str) else body).get("Parameters", {})
        inputs = {}
        for parameter in described:
            key, value = parameter["ParameterKey"], parameter.get("ParameterValue", "")
            spec = declared.get(key, {})
            if spec.get("Type", "").startswith("AWS::SSM::Parameter::Value") and "ResolvedValue" not in parameter and spec.get("Default"):
                value = spec["Default"]
            inputs[key] = value
        return inputs

    def update_parameters(self, name: str, parameters: list[dict[str, str]]) -> None:
        self.client("cloudformation").update_stack(
            StackName=name, UsePreviousTemplate=True, Parameters=parameters, Capabilities=CAPABILITIES,
        )

    # --- ECR ------------------------------------------------------------------------------------

    def images(self, repository: str) -> dict[str, Image]:
        """Every tagged image by tag, with its scan summary (untagged images are not releases)."""
        ecr = self.client("ecr")
        images: dict[str, Image] = {}
        for page in ecr.get_paginator("describe_images").paginate(repositoryName=repository, filter={"tagStatus": "TAGGED"}):
            for detail in page["imageDetails"]:
                for tag in detail.get("imageTags", []):
                    status, counts = self._scan(repository, tag)
                    pushed = detail.get("imagePushedAt")
                    images[tag] = Image(
                        tag=tag, digest=detail["imageDigest"],
                        pushed_at=pushed.isoformat(timespec="seconds") if hasattr(pushed, "isoformat") else str(pushed or ""),
                        size_bytes=int(detail.get("imageSizeInBytes", 0)),
                        scan_status=status, severity_counts=counts,
                    )
        return images

    def _scan(self, repository: str, tag: str) -> tuple[str, dict[str, int]]:
        try:
            findings = self.client("ecr").describe_image_scan_findings(repositoryName=repository, imageId={"imageTag": tag})
        except ClientError as error:
            if error.response["Error"]["Code"] == "ScanNotFoundException":
                return "NONE", {}
            raise
        return (
            findings.get("imageScanStatus", {}).get("status", "NONE"),
            dict(findings.get("imageScanFindings", {}).get("findingSeverityCounts", {})),
        )

    # --- what runs ------------------------------------------------------------------------------

    def ecs_running(self, cluster: str, service: str) -> dict:
        ecs = self.client("ecs")
        described = ecs.describe_services(cluster=cluster, services=[service])["services"]
        if not described:
            return {"task_definition_image": "", "tasks": [], "desired_count": 0}
        svc = described[0]
        primary = next((d for d in svc.get("deployments", []) if d.get("status") == "PRIMARY"), None)
        task_definition = (primary or {}).get("taskDefinition") or svc.get("taskDefinition", "")
        image = ""
        if task_definition:
            containers = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]["containerDefinitions"]
            image = containers[0].get("image", "") if containers else ""
        task_arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="RUNNING").get("taskArns", [])
        tasks = []
        if task_arns:
            for task in ecs.describe_tasks(cluster=cluster, tasks=task_arns)["tasks"]:
                tasks.append({
                    "task": task["taskArn"].rsplit("/", 1)[-1],
                    "status": task.get("lastStatus", ""),
                    "image": next((c.get("image", "") for c in task.get("containers", [])), ""),
                })
        # ECS keeps stopped tasks for about an hour: the newest say why a version does not run (a secret, a pull, a crash).
        stopped_arns = ecs.list_tasks(cluster=cluster, serviceName=service, desiredStatus="STOPPED").get("taskArns", [])[:100]
        stopped = [stopped_task(task) for task in ecs.describe_tasks(cluster=cluster, tasks=stopped_arns)["tasks"]] if stopped_arns else []
        return {"task_definition_image": image, "tasks": tasks, "desired_count": svc.get("desiredCount", 0),
                "stopped_tasks": newest_stopped(stopped)}

    def ecs_deployments(self, cluster: str, service: str) -> list:
        """ECS service deployments in progress (blue/green, canary, linear), see release/pure/ecs_deployments.py."""
        return read_deployments(self.client("ecs"), cluster, service)

    def stop_ecs_deployment(self, arn: str) -> None:
        stop_with_rollback(self.client("ecs"), arn)

    def ecs_deployment_status(self, arn: str) -> str:
        return deployment_status(self.client("ecs"), arn)

    def target_health(self, target_group_arn: str) -> list[dict]:
        descriptions = self.client("elbv2").describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
        return [
            {"target": d["Target"]["Id"], "state": d.get("TargetHealth", {}).get("State", "unknown"),
             "reason": d.get("TargetHealth", {}).get("Reason", "")}
            for d in descriptions
        ]

    def auto_scaling_group(self, name: str) -> tuple[int, list[dict]]:
        """The group's desired capacity and its instances (0 and none when the group is gone)."""
        groups = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        if not groups:
            return 0, []
        instances = [
            {"instance": i["InstanceId"], "state": i.get("LifecycleState", ""), "health": i.get("HealthStatus", "")}
            for i in groups[0].get("Instances", [])
        ]
        return int(groups[0].get("DesiredCapacity", 0)), instances

    def suspended_processes(self, name: str) -> list[str]:
        """The group's suspended processes by name (none when the group is gone)."""
        groups = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        return [p["ProcessName"] for p in groups[0].get("SuspendedProcesses", [])] if groups else []

    def suspend_processes(self, name: str, processes: list[str]) -> None:
        self.client("autoscaling").suspend_processes(AutoScalingGroupName=name, ScalingProcesses=processes)

    def resume_processes(self, name: str, processes: list[str]) -> None:
        self.client("autoscaling").resume_processes(AutoScalingGroupName=name, ScalingProcesses=processes)

    def ec2_running(self, auto_scaling_group: str, association_id: str) -> dict:
        """The group's hosts, and the gate association's tag and overall status (both gates' documents take
        `ImageTag`)."""
        desired, instances = self.auto_scaling_group(auto_scaling_group)
        association = self.client("ssm").describe_association(AssociationId=association_id)["AssociationDescription"]
        tags = association.get("Parameters", {}).get("ImageTag", [""])
        return {
            "instances": instances,
            "desired_count": desired,
            "association_parameter": tags[0] if tags else "",
            "association_status": association.get("Overview", {}).get("Status", ""),
        }

    def host_reports(self, path: str) -> dict[str, dict]:
        """Each host's own report, by instance id: the JSON value of every SSM parameter under `path` (the ec2
        stack's HostReportPath, e.g. `/liftoff/<stack>/hosts/`). A value that is not a JSON object becomes
        `{"instance": id, "error": why}`: a report nobody can read is not agreement."""
        prefix = path if path.endswith("/") else path + "/"
        reports: dict[str, dict] = {}
        pages = self.client("ssm").get_paginator("get_parameters_by_path").paginate(Path=prefix.rstrip("/") or "/", Recursive=True)
        for page in pages:
            for parameter in page.get("Parameters", []):
                name = parameter["Name"]
                instance = name[len(prefix):] if name.startswith(prefix) else name.rsplit("/", 1)[-1]
                try:
                    value = json.loads(parameter.get("Value", ""))
                    if not isinstance(value, dict):
                        raise ValueError(f"a JSON {type(value).__name__}, not an object")
                except ValueError as error:
                    value = {"instance": instance, "error": f"unreadable report in {name}: {error}"}
                reports[instance] = value
        return reports

    def start_association_once(self, association_id: str) -> None:
        """Run a State Manager association again now on its targets (re-drive a host gate)."""
        self.client("ssm").start_associations_once(AssociationIds=[association_id])

    def firing_alarms(self, stack_name: str) -> list[dict]:
        """The stack's CloudWatch alarms in state ALARM. CloudFormation names each alarm it creates
        `<stack>-<logical id>-<suffix>`, so the stack name is the prefix."""
        firing = []
        for page in self.client("cloudwatch").get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=f"{stack_name}-", StateValue="ALARM", AlarmTypes=["MetricAlarm", "CompositeAlarm"]
        ):
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                # AWS applies both filters; moto applies only the prefix, so the state is checked here too.
                if alarm.get("StateValue") != "ALARM":
                    continue
                since = alarm.get("StateUpdatedTimestamp")
                firing.append({
                    "name": alarm["AlarmName"],
                    "description": alarm.get("AlarmDescription", ""),
                    "reason": alarm.get("StateReason", ""),
                    "since": since.isoformat() if since else "",
                })
        return firing

    def firing_alarms_named(self, names: Iterable[str]) -> list[dict]:
        """Those of `names` in state ALARM, with CloudWatch's reason (the datapoints that crossed)."""
        firing = []
        described = self.client("cloudwatch").describe_alarms(AlarmNames=list(names))
        for alarm in described.get("MetricAlarms", []) + described.get("CompositeAlarms", []):
            if alarm.get("StateValue") == "ALARM":
                firing.append({"name": alarm["AlarmName"], "reason": alarm.get("StateReason", "")})
        return firing

    # --- the ledger -----------------------------------------------------------------------------

    def ledger(self, table_name: str) -> Ledger:
        return Ledger(self.client("dynamodb"), table_name)


def _event(event: dict) -> dict:
    timestamp = event.get("Timestamp")
    return {
        "time": timestamp.isoformat(timespec="seconds") if hasattr(timestamp, "isoformat") else str(timestamp or ""),
        "LogicalResourceId": event.get("LogicalResourceId", ""),
        "ResourceType": event.get("ResourceType", ""),
        "ResourceStatus": event.get("ResourceStatus", ""),
        "ResourceStatusReason": event.get("ResourceStatusReason", ""),
    }


STOPPED_TASKS_SHOWN = 5


def stopped_task(task: dict) -> dict:
    """A stopped task as `liftoff` shows it: which, what it ran, when and why it stopped (ECS's own words)."""
    stopped_at = task.get("stoppedAt")
    return {"task": task["taskArn"].rsplit("/", 1)[-1], "image": next((c.get("image", "") for c in task.get("containers", [])), ""),
            "stopped_at": stopped_at.isoformat() if hasattr(stopped_at, "isoformat") else str(stopped_at or ""),
            "reason": task.get("stoppedReason", "")}


def newest_stopped(stopped: Iterable[dict]) -> list[dict]:
    return sorted(stopped, key=lambda task: task["stopped_at"], reverse=True)[:STOPPED_TASKS_SHOWN]


def healthy_and_unhealthy(targets: Iterable[dict]) -> tuple[int, list[str]]:
    targets = list(targets)
    healthy = sum(1 for t in targets if t["state"] == "healthy")
    # draining targets are leaving on purpose; anything else that is not healthy blocks the verdict
    unhealthy = [f"{t['target']} {t['state']}" for t in targets if t["state"] not in ("healthy", "draining")]
    return healthy, unhealthy
