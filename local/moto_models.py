"""CloudFormation models for ECS that keep what the template says, installed into the emulator's moto.

moto 5.2's own models for `AWS::ECS::TaskDefinition` and `AWS::ECS::Service` keep a fraction of the
template: a task definition keeps its containers and memory (no network mode, CPU, roles or
compatibilities), an update compares PascalCase properties with the camelCase ones it stored, so every
update registers a revision whose containers have lost their `image`; a service keeps its cluster, task
family and desired count (no load balancers, launch type, network or deployment configuration), and an
update leaves it on the first revision, deregistered. The ECS stand-in (local/ecs.py) follows what ECS
holds, as the ECS scheduler does on AWS, so ECS must hold what CloudFormation set. These replace the
four CloudFormation hooks with ones that pass every property moto's own ECS API takes:

- a task definition: every property `RegisterTaskDefinition` takes; an update that changes any of them
  registers a new revision and deregisters the old one (CloudFormation replaces a task definition);
- a service that names a task definition CloudFormation replaced is updated too (moto updates a resource only
  when its own JSON or a parameter it names changed);
- a service: load balancers, launch type, platform version, network configuration, deployment controller,
  tags, and the two settings moto's API has no field for (`deploymentConfiguration`,
  `healthCheckGracePeriodSeconds`), kept on the service so `DescribeServices` returns them; an update sets
  the new task definition revision (its ARN, as CloudFormation's Ref gives) and, when it changed, starts a
  new PRIMARY deployment with the deployment configuration of the update.

What ECS then does with a deployment (tasks, target registrations, rollout state) moto does not do; the
ECS stand-in does it.

An Auto Scaling group: moto replaces it whenever a stack update touches it (a new group at MinSize, every instance
new); CloudFormation updates it in place, keeping an absent DesiredCapacity, unless what the instances launch from or
into changed (the rolling update then replaces each instance; here, at once, as moto did) or its load balancers did
(moto's in-place update has no field for them: replaced too).

One more attribute moto gets wrong where IAM sees it: `Fn::GetAtt LogGroup.Arn` is the group's ARN followed by `:*`
on AWS (the form a policy needs to cover the group's streams; CDK grants `logs:CreateLogStream`/`PutLogEvents` on it);
moto gave the bare group ARN, so an execution role held to its policy (local/moto_iam.py) could write no log stream.

And one cost: moto parses every template it is given (CreateStack, UpdateStack, change sets, GetTemplateSummary) with
PyYAML's pure-Python loader first, JSON being YAML, and falls back to `json.loads`; CDK writes JSON, and our service
template took ~0.3 CPU-s a parse. Templates are now read as JSON first, the same dict, and YAML still as YAML.

And another: each EC2 backend (every region of every test's fresh moto) made an `Ami`, with a snapshot and a volume,
for each of the ~1,230 ECS-optimized AMIs of its region, ~0.2 CPU-s a backend. liftoff's ECS mode is Fargate and its
hosts boot Amazon Linux 2023 (the `latest_amis` list, which the SSM parameters name, stays), so no stack of ours can
name one; they are not loaded. moto's generic default AMIs stay too.

And a third: every KMS key moto makes gets an RSA 2048 private key at once, a symmetric one too (EC2 makes one for
encrypted volumes, our hosts' disks, in each fresh backend), 0.05-0.5 CPU-s each here; only Sign, Verify and
GetPublicKey of an asymmetric key use it. It is made when first used: the same key, later.
"""
from __future__ import annotations

import json
import threading
from typing import Any

import yaml
from moto.autoscaling import models as autoscaling_models
from moto.cloudformation import models as cloudformation_models
from moto.cloudformation import parsing
from moto.cloudformation import responses as cloudformation_responses
from moto.core.utils import pascal_to_camelcase, utcnow
from moto.ec2.models import amis as ec2_amis
from moto.ecs import models as ecs_models
from moto.kms import models as kms_models
from moto.kms import utils as kms_utils
from moto.logs import models as logs_models
from moto.moto_api._internal import mock_random

# CloudFormation property -> RegisterTaskDefinition keyword (moto's backend).
TASK_DEFINITION_PROPERTIES = {
    "Volumes": "volumes", "NetworkMode": "network_mode", "PlacementConstraints": "placement_constraints",
    "RequiresCompatibilities": "requires_compatibilities", "Cpu": "cpu", "Memory": "memory",
    "TaskRoleArn": "task_role_arn", "ExecutionRoleArn": "execution_role_arn", "ProxyConfiguration": "proxy_configuration",
    "RuntimePlatform": "runtime_platform", "IpcMode": "ipc_mode", "PidMode": "pid_mode", "EphemeralStorage": "ephemeral_storage",
}
# Template keys whose values are names the user chose (environment names, labels, log options): kept as written.
_VERBATIM_KEYS = ("Options", "DockerLabels", "SystemControls")


def _camel(value: Any) -> Any:
    """CloudFormation's PascalCase keys as ECS's API spells them, leaving user-named keys (log options...) as written."""
    if isinstance(value, list):
        return [_camel(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {pascal_to_camelcase(key): (item if key in _VERBATIM_KEYS else _camel(item)) for key, item in value.items()}


def _task_definition_arguments(properties: dict) -> dict:
    arguments = {"family": properties.get("Family", f"task-definition-{int(mock_random.random() * 10**6)}"),
                 "container_definitions": _camel(properties.get("ContainerDefinitions", []))}
    for key, keyword in TASK_DEFINITION_PROPERTIES.items():
        if key in properties:
            arguments[keyword] = _camel(properties[key]) if isinstance(properties[key], (dict, list)) else properties[key]
    if "Tags" in properties:
        arguments["tags"] = _camel(properties["Tags"])
    return arguments


def _create_task_definition(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    backend = ecs_models.ecs_backends[account_id][region_name]
    registered = backend.register_task_definition(**_task_definition_arguments(cloudformation_json["Properties"]))
    registered._liftoff_arguments = _task_definition_arguments(cloudformation_json["Properties"])
    return registered


def _update_task_definition(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    arguments = _task_definition_arguments(cloudformation_json["Properties"])
    if getattr(original_resource, "_liftoff_arguments", None) == arguments:
        return original_resource
    backend = ecs_models.ecs_backends[account_id][region_name]
    registered = backend.register_task_definition(**arguments)
    registered._liftoff_arguments = arguments
    backend.deregister_task_definition(original_resource.arn)
    return registered


def _cluster_name(value: Any) -> str:
    return value.name if isinstance(value, ecs_models.Cluster) else str(value).rsplit("/", 1)[-1]


def _task_definition_arn(value: Any) -> str:
    return value.arn if isinstance(value, ecs_models.TaskDefinition) else str(value)


def _keep_settings(service, properties: dict) -> None:
    """What moto's service has no constructor argument for, kept where DescribeServices reads it."""
    service.deployment_configuration = _camel(properties.get("DeploymentConfiguration", {}))
    if "HealthCheckGracePeriodSeconds" in properties:
        service.health_check_grace_period_seconds = int(properties["HealthCheckGracePeriodSeconds"])


def _create_service(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
    properties = cloudformation_json["Properties"]
    backend = ecs_models.ecs_backends[account_id][region_name]
    service = backend.create_service(
        _cluster_name(properties["Cluster"]), properties.get("ServiceName", resource_name),
        int(properties.get("DesiredCount", 1)), task_definition_str=_task_definition_arn(properties["TaskDefinition"]),
        load_balancers=_camel(properties.get("LoadBalancers", [])), tags=_camel(properties.get("Tags", [])),
        deployment_controller=_camel(properties.get("DeploymentController", {"Type": "ECS"})),
        launch_type=properties.get("LaunchType"), platform_version=properties.get("PlatformVersion"),
        propagate_tags=properties.get("PropagateTags", "NONE"),
        network_configuration=_camel(properties["NetworkConfiguration"]) if "NetworkConfiguration" in properties else None)
    _keep_settings(service, properties)
    return service


def _update_service(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    properties = cloudformation_json["Properties"]
    backend = ecs_models.ecs_backends[account_id][region_name]
    task_definition = _task_definition_arn(properties["TaskDefinition"])
    changed = task_definition != original_resource.task_definition
    service = backend.update_service({
        "cluster": original_resource.cluster_name, "service": original_resource.name,
        "task_definition": task_definition, "desired_count": int(properties.get("DesiredCount", original_resource.desired_count))})
    service.load_balancers = _camel(properties.get("LoadBalancers", []))
    if "NetworkConfiguration" in properties:
        service.network_configuration = _camel(properties["NetworkConfiguration"])
    _keep_settings(service, properties)
    if changed:
        now = utcnow()
        for deployment in service.deployments:
            deployment["status"] = "ACTIVE"
        deployment_id = f"ecs-svc/{mock_random.randint(0, 32**12)}"
        service.deployments.insert(0, {
            "id": deployment_id, "status": "PRIMARY", "taskDefinition": task_definition, "desiredCount": service.desired_count,
            "pendingCount": service.desired_count, "runningCount": 0, "failedTasks": 0, "createdAt": now, "updatedAt": now,
            "launchType": service.launch_type, "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": f"ECS deployment {deployment_id} in progress."})
    return service


_moto_update_group = autoscaling_models.FakeAutoScalingGroup.update_from_cloudformation_json.__func__


def _update_auto_scaling_group(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name):
    """In place, as CloudFormation updates a group: its instances stay, and a DesiredCapacity the template does not
    name stays where the autoscaler (or anyone) set it, lifted to a raised MinSize or lowered to a lowered MaxSize.
    A change to what the instances are launched from or into keeps moto's replacement (a new group, every instance
    new): the rolling update replaces every instance too, one batch at a time."""
    properties = cloudformation_json["Properties"]
    if _replaces_the_group(original_resource, properties):
        return _moto_update_group(cls, original_resource, new_resource_name, cloudformation_json, account_id, region_name)
    backend = autoscaling_models.autoscaling_backends[account_id][region_name]

    def number(key: str) -> int | None:
        return int(properties[key]) if key in properties else None

    return backend.update_auto_scaling_group(
        name=original_resource.name, availability_zones=properties.get("AvailabilityZones", []),
        desired_capacity=number("DesiredCapacity"), max_size=number("MaxSize"), min_size=number("MinSize"),
        launch_config_name=properties.get("LaunchConfigurationName"), launch_template=properties.get("LaunchTemplate", {}),
        vpc_zone_identifier=",".join(properties.get("VPCZoneIdentifier", [])) or None,
        health_check_period=number("HealthCheckGracePeriod"), health_check_type=properties.get("HealthCheckType"),
        new_instances_protected_from_scale_in=properties.get("NewInstancesProtectedFromScaleIn"),
        mixed_instances_policy=properties.get("MixedInstancesPolicy"))


def _replaces_the_group(group, properties: dict) -> bool:
    """What makes an update policy's rolling update (ours: AutoScalingRollingUpdate) replace a group's instances, and
    what moto's in-place update cannot carry (its load balancers), as the group has them and as the template asks."""
    launch_template = properties.get("LaunchTemplate") or {}
    template = group.ec2_launch_template
    now = {"LaunchTemplate": {"id": getattr(template, "id", None), "version": group.provided_launch_template_version},
           "LaunchConfigurationName": getattr(group, "launch_configuration_name", None),
           "MixedInstancesPolicy": group.mixed_instances_policy or None,
           "VPCZoneIdentifier": sorted(filter(None, (group.vpc_zone_identifier or "").split(","))),
           "TargetGroupARNs": sorted(group.target_group_arns), "LoadBalancerNames": sorted(group.load_balancer_names)}
    then = {"LaunchTemplate": {"id": launch_template.get("LaunchTemplateId"), "version": launch_template.get("Version")},
            "LaunchConfigurationName": properties.get("LaunchConfigurationName"),
            "MixedInstancesPolicy": properties.get("MixedInstancesPolicy") or None,
            "VPCZoneIdentifier": sorted(properties.get("VPCZoneIdentifier", [])),
            "TargetGroupARNs": sorted(properties.get("TargetGroupARNs", [])),
            "LoadBalancerNames": sorted(properties.get("LoadBalancerNames", []))}
    return now != then


_original_resource_diff = parsing.ResourceMap.build_resource_diff


def _resource_diff_with_services(self, other_template, parameters=None):
    """moto modifies a resource only when its own JSON or a parameter it names changed; CloudFormation also updates a
    service whose `Ref` to its task definition now names a new revision. Services are updated after everything else
    (a service whose own JSON changed too included), so each resolves the new revision."""
    actions = _original_resource_diff(self, other_template, parameters)
    modified = set(actions["Modify"])
    resources = other_template["Resources"]
    for name, resource in resources.items():
        if resource.get("Type") == "AWS::ECS::Service" and name in self._resource_json_map and name not in modified:
            if modified & set(parsing.get_references_from_template(resource.get("Properties", {}).get("TaskDefinition", {}))):
                actions["Modify"].append(name)
    # Services last, whatever else changed with them: each resolves its task definition after that was replaced.
    services = [name for name in actions["Modify"] if resources.get(name, {}).get("Type") == "AWS::ECS::Service"]
    actions["Modify"] = [name for name in actions["Modify"] if name not in services] + services
    return actions


def _log_group_attribute(self, attribute_name: str) -> str:
    if attribute_name == "Arn":
        return f"{self.arn}:*"  # as CloudFormation answers it
    return _moto_log_group_attribute(self, attribute_name)


_moto_log_group_attribute = logs_models.LogGroup.get_cfn_attribute


ECS_OPTIMIZED_AMIS = "ec2/resources/ecs/optimized_amis/"
_moto_load_resource = ec2_amis.load_resource


def _resource_without_ecs_optimized_amis(filename: str) -> Any:
    if filename.startswith(ECS_OPTIMIZED_AMIS):
        return []
    return _moto_load_resource(filename)


class JsonFirstYaml:
    """PyYAML, as moto's CloudFormation modules use it, but a template that is JSON is read as JSON."""

    def __getattr__(self, name: str) -> Any:
        return getattr(yaml, name)

    @staticmethod
    def load(stream: Any, Loader: Any = None) -> Any:  # noqa: N803 (PyYAML's own keyword)
        if isinstance(stream, (str, bytes)):
            try:
                return json.loads(stream)
            except ValueError:
                pass
        return yaml.load(stream, Loader=Loader)


class PrivateKeyWhenUsed:
    """moto's private key for a KMS key (kms/utils.py `generate_private_key`), made the first time it is used."""

    def __init__(self, key_spec: str) -> None:
        self._key_spec = key_spec
        self._key: Any = None
        self._making = threading.Lock()  # moto_server answers from threads: one key, however many ask first

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy's and pickle's probes (and this object's own fields) are never the key's
            raise AttributeError(name)
        with self._making:
            if self._key is None:
                self._key = kms_utils.generate_private_key(self._key_spec)
        return getattr(self._key, name)


def install() -> None:
    """Replace moto's ECS CloudFormation hooks in this process (the emulator's moto_server calls this at start)."""
    cloudformation_models.yaml = cloudformation_responses.yaml = JsonFirstYaml()
    logs_models.LogGroup.get_cfn_attribute = _log_group_attribute
    parsing.ResourceMap.build_resource_diff = _resource_diff_with_services
    ecs_models.TaskDefinition.create_from_cloudformation_json = classmethod(_create_task_definition)
    ecs_models.TaskDefinition.update_from_cloudformation_json = classmethod(_update_task_definition)
    ecs_models.Service.create_from_cloudformation_json = classmethod(_create_service)
    ecs_models.Service.update_from_cloudformation_json = classmethod(_update_service)
    ec2_amis.load_resource = _resource_without_ecs_optimized_amis
    autoscaling_models.FakeAutoScalingGroup.update_from_cloudformation_json = classmethod(_update_auto_scaling_group)
    kms_models.generate_private_key = PrivateKeyWhenUsed
