"""Thin boto3 adapters for schema-aware releases: image labels, the stage's recorded schema state, one-off migrate runs.

`SchemaAdapter` is mixed into `release.adapters.aws.Aws` (it uses its `client()`, timeouts and retries); no decisions here.

- Labels: ECR's `BatchGetImage` gives the manifest (an index or list: its first image; the labels are the same
  for every platform of one build); the image's config blob, fetched through `GetDownloadUrlForLayer` (a
  presigned URL), holds `config.Labels`. Nothing runs the image.
- The schema state lives in the stage's ledger table as one item (pk `SCHEMA`, sk `STATE`), written after
  every `liftoff migrate` from the `schema state` line the run printed. The tool never reaches the database.
- One-off runs: ecs runs one task of a copy of the service's task definition (family `<family>-migrate`, the
  migrate container only, the version's image, the same roles, network and log group), waits for it to stop
  and reads its log stream; ec2 sends the stack's migrate document (`liftoff-migrate TAG [CONTRACT_ID ...]`,
  output `MigrateDocumentName`) to one in-service host with SSM Run Command and waits for the invocation.
"""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Callable

from release.pure.schema import SchemaState

MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
]
SCHEMA_KEY = {"pk": {"S": "SCHEMA"}, "sk": {"S": "STATE"}}
ONE_OFF_DONE = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"})
SEND_COMMAND_MAX_INSTANCES = 50  # SendCommand's InstanceIds limit


class LabelsUnreadable(Exception):
    """An image's config blob (where its labels are) could not be fetched."""


class OneOffError(Exception):
    """A one-off migrate could not be started or followed (not: the migration failed; that is an exit code)."""


@dataclass(frozen=True)
class OneOff:
    exit_code: int | None  # None: it did not finish within the timeout
    output: str
    where: str  # the task or the host and command id, for the ledger


class SchemaAdapter:
    # --- labels -------------------------------------------------------------------------------------

    def image_labels(self, repository: str, tag: str) -> dict[str, str]:
        manifest = self._manifest(repository, {"imageTag": tag})
        if "manifests" in manifest:  # a multi-platform index: the labels come from one build, any platform has them
            if not manifest["manifests"]:
                return {}
            manifest = self._manifest(repository, {"imageDigest": manifest["manifests"][0]["digest"]})
        config_digest = manifest.get("config", {}).get("digest")
        if not config_digest:
            return {}
        blob = self.download_layer(repository, config_digest)
        if blob is None:
            return {}
        config = json.loads(blob)
        return dict((config.get("config") or {}).get("Labels") or {})

    def _manifest(self, repository: str, image_id: dict) -> dict:
        images = self.client("ecr").batch_get_image(repositoryName=repository, imageIds=[image_id],
                                                    acceptedMediaTypes=MANIFEST_TYPES).get("images", [])
        return json.loads(images[0]["imageManifest"]) if images else {}

    def download_layer(self, repository: str, digest: str) -> bytes | None:
        url = self.client("ecr").get_download_url_for_layer(repositoryName=repository, layerDigest=digest)["downloadUrl"]
        try:
            with urllib.request.urlopen(url, timeout=self.read_timeout) as response:  # a presigned S3 URL
                return response.read()
        except OSError as error:  # URLError, timeouts, resets
            raise LabelsUnreadable(f"cannot download the config blob {digest} of {repository}: {error}") from None

    # --- the stage's schema state ----------------------------------------------------------------

    def read_schema_state(self, table: str) -> SchemaState | None:
        item = self.client("dynamodb").get_item(TableName=table, Key=SCHEMA_KEY, ConsistentRead=True).get("Item")
        if not item:
            return None
        return SchemaState(
            applied=tuple(v["S"] for v in item.get("applied", {}).get("L", [])),
            contracts={k: v["S"] for k, v in item.get("contracts", {}).get("M", {}).items()},
            recorded_at=item.get("recorded_at", {}).get("S", ""),
            version=item.get("version", {}).get("S", ""),
            release_id=item.get("release_id", {}).get("S", ""),
        )

    def write_schema_state(self, table: str, state: SchemaState) -> None:
        self.client("dynamodb").put_item(TableName=table, Item={
            **SCHEMA_KEY,
            "applied": {"L": [{"S": step} for step in state.applied]},
            "contracts": {"M": {step: {"S": retiring} for step, retiring in state.contracts.items()}},
            "recorded_at": {"S": state.recorded_at},
            "version": {"S": state.version},
            "release_id": {"S": state.release_id},
        })

    # --- one-off migrate runs --------------------------------------------------------------------

    def run_one_off(self, outputs: dict[str, str], *, compute: str, image: str, tag: str, arguments: list[str],
                    timeout: float, poll: float, sleep: Callable[[float], None], monotonic: Callable[[], float],
                    say: Callable[[str], None]) -> OneOff:
        if compute == "ec2":
            return self._ec2_one_off(outputs, tag=tag, arguments=arguments, timeout=timeout, poll=poll, sleep=sleep,
                                     monotonic=monotonic, say=say)
        return self._ecs_one_off(outputs, image=image, arguments=arguments, timeout=timeout, poll=poll, sleep=sleep,
                                 monotonic=monotonic, say=say)

    def _ecs_one_off(self, outputs, *, image, arguments, timeout, poll, sleep, monotonic, say) -> OneOff:
        ecs = self.client("ecs")
        cluster, service = outputs["ClusterName"], outputs["EcsServiceName"]
        described = ecs.describe_services(cluster=cluster, services=[service])["services"]
        if not described:
            raise OneOffError(f"the ECS service {service} is not in {cluster}")
        svc = described[0]
        definition = ecs.describe_task_definition(taskDefinition=svc["taskDefinition"])["taskDefinition"]
        containers = definition.get("containerDefinitions", [])
        source = next((c for c in containers if c.get("name") == "migrate"), containers[0] if containers else None)
        if source is None:
            raise OneOffError(f"the task definition {svc['taskDefinition']} has no container")
        container = {k: v for k, v in source.items() if k not in ("dependsOn", "portMappings", "healthCheck")}
        container.update(image=image, command=["migrate", *arguments], essential=True)
        if not container.get("memory") and not container.get("memoryReservation") and definition.get("memory"):
            container["memory"] = int(definition["memory"])  # alone in its task: the task's memory is its limit
        keep = ("taskRoleArn", "executionRoleArn", "networkMode", "requiresCompatibilities", "cpu", "memory", "runtimePlatform")
        registered = ecs.register_task_definition(
            family=f"{definition['family']}-migrate", containerDefinitions=[container],
            **{k: definition[k] for k in keep if definition.get(k)},
        )["taskDefinition"]["taskDefinitionArn"]
        try:
            run = {"cluster": cluster, "taskDefinition": registered, "count": 1, "startedBy": "liftoff-migrate"}
            if svc.get("networkConfiguration"):
                run["networkConfiguration"] = svc["networkConfiguration"]
            if svc.get("capacityProviderStrategy"):
                run["capacityProviderStrategy"] = svc["capacityProviderStrategy"]
            else:  # a Fargate-only task definition decides it (moto reports the service's launch type as EC2)
                fargate_only = definition.get("requiresCompatibilities") == ["FARGATE"]
                run["launchType"] = "FARGATE" if fargate_only else svc.get("launchType") or "FARGATE"
            started = ecs.run_task(**run)
            if not started.get("tasks"):
                raise OneOffError(f"ECS started no task: {started.get('failures')}")
            task_arn = started["tasks"][0]["taskArn"]
            say(f"  one-off task {task_arn.rsplit('/', 1)[-1]} ({registered.rsplit('/', 1)[-1]}) started")
            deadline = monotonic() + timeout
            while True:
                task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
                if task.get("lastStatus") == "STOPPED":
                    break
                if monotonic() >= deadline:
                    return OneOff(None, "", f"task {task_arn}")
                sleep(poll)
            code = next((c.get("exitCode") for c in task.get("containers", []) if c.get("name") == container["name"]), None)
            return OneOff(code, self._task_log(container, task_arn), f"task {task_arn}")
        finally:
            ecs.deregister_task_definition(taskDefinition=registered)

    def _task_log(self, container: dict, task_arn: str) -> str:
        options = (container.get("logConfiguration") or {}).get("options") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if not group or not prefix:
            return ""
        stream = f"{prefix}/{container['name']}/{task_arn.rsplit('/', 1)[-1]}"
        try:
            events = self.client("logs").get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
        except self.client("logs").exceptions.ResourceNotFoundException:
            return ""
        return "\n".join(event["message"] for event in events)

    def _ec2_one_off(self, outputs, *, tag, arguments, timeout, poll, sleep, monotonic, say) -> OneOff:
        document = outputs.get("MigrateDocumentName")
        if not document:
            raise OneOffError("the service stack has no MigrateDocumentName output; deploy the current version of the app")
        _, instances = self.auto_scaling_group(outputs["AutoScalingGroupName"])
        in_service = sorted(i["instance"] for i in instances if i["state"] == "InService")
        if not in_service:
            raise OneOffError(f"no host of {outputs['AutoScalingGroupName']} is InService to run the migration on")
        host = in_service[0]
        contracts = [argument for argument in arguments if argument != "--allow-contract"]
        parameters = {"ImageTag": [tag], "AllowContracts": [" ".join(contracts)]}
        say(f"  running on host {host} (SSM Run Command, document {document}): liftoff-migrate {tag} {' '.join(contracts)}".rstrip())
        code, output, where = self.send_and_wait(host, document, parameters, timeout=timeout, poll=poll, sleep=sleep,
                                                 monotonic=monotonic)
        return OneOff(code, output, where)

    def send_and_wait(self, instance: str, document: str, parameters: dict[str, list[str]], *, timeout: float, poll: float,
                      sleep, monotonic) -> tuple[int | None, str, str]:
        """Run Command on one instance: (exit code, output, where)."""
        return self.send_to_hosts([instance], document, parameters, timeout=timeout, poll=poll, sleep=sleep,
                                  monotonic=monotonic)[instance]

    def send_to_hosts(self, instances: list[str], document: str, parameters: dict[str, list[str]], *, timeout: float,
                      poll: float, sleep, monotonic) -> dict[str, tuple[int | None, str, str]]:
        """Run Command: send `document` to every instance at once, wait for each invocation; per instance (exit code,
        or None when it did not finish within `timeout`; output; where)."""
        ssm = self.client("ssm")
        commands: dict[str, str] = {}
        for first in range(0, len(instances), SEND_COMMAND_MAX_INSTANCES):
            batch = instances[first:first + SEND_COMMAND_MAX_INSTANCES]
            sent = ssm.send_command(InstanceIds=batch, DocumentName=document, Parameters=parameters,
                                    TimeoutSeconds=max(30, int(timeout)), Comment=f"liftoff: {document}"[:100])["Command"]
            commands.update((instance, sent["CommandId"]) for instance in batch)
        where = {instance: f"host {instance} command {command}" for instance, command in commands.items()}
        done: dict[str, tuple[int | None, str, str]] = {}
        deadline = monotonic() + timeout
        while True:
            for instance, command in commands.items():
                if instance in done:
                    continue
                try:
                    invocation = ssm.get_command_invocation(CommandId=command, InstanceId=instance)
                except ssm.exceptions.InvocationDoesNotExist:
                    continue  # not delivered yet
                if invocation.get("Status") in ONE_OFF_DONE:
                    output = invocation.get("StandardOutputContent", "") + invocation.get("StandardErrorContent", "")
                    done[instance] = (invocation.get("ResponseCode"), output, where[instance])
            if len(done) == len(commands) or monotonic() >= deadline:
                return {instance: done.get(instance, (None, "", where[instance])) for instance in instances}
            sleep(poll)
