"""The emulator adapter: the only code that changes templates, and only in a separate copy.

moto (5.2.5) lacks a few CloudFormation models and rules that AWS has. Each gap that breaks a
deploy of liftoff's stacks gets exactly one adaptation here, listed in `ADAPTATIONS` with its
reason (docs/local-emulator.md repeats the list). `adapt_assembly` copies a cloud assembly to a
different directory and adapts the copy; the synthesized `cdk.out` that a real deploy uses is only
ever read. Gaps that break nothing (moto skipping a resource nobody references) are not adapted:
they are documented as what the emulator cannot show.
"""
from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from local.assembly import template_files

SECRET_TYPE = "AWS::SecretsManager::Secret"
SECRET_ATTACHMENT_TYPE = "AWS::SecretsManager::SecretTargetAttachment"
REPOSITORY_TYPE = "AWS::ECR::Repository"
SSM_PARAMETER_TYPE = "AWS::SSM::Parameter"
SSM_DOCUMENT_TYPE = "AWS::SSM::Document"
DASHBOARD_TYPE = "AWS::CloudWatch::Dashboard"
TARGET_GROUP_TYPE = "AWS::ElasticLoadBalancingV2::TargetGroup"
ALARM_TYPE = "AWS::CloudWatch::Alarm"
# The value an Output of an unmodelled resource gets: obviously not an AWS id, so nobody mistakes it for one.
UNMODELLED_OUTPUT_PLACEHOLDER = "emulator-placeholder-not-modelled"

ADAPTATIONS: dict[str, str] = {
    "secret-out-of-band": (
        f"{SECRET_TYPE} and {SECRET_ATTACHMENT_TYPE} are removed and every Ref to them becomes the ARN "
        "of a secret created beforehand through the Secrets Manager API (same generated JSON: username "
        "and password). moto has no CloudFormation model for either type: it skips them, so the "
        "database secret never exists and the ARN the service stack imports is missing."
    ),
    "alarm-out-of-band": (
        f"{ALARM_TYPE} is removed and every Ref to it becomes the name <stack>-<logical id> of an alarm "
        "created beforehand through the CloudWatch API with the same threshold, comparison, periods, "
        "datapoints, missing-data treatment and metrics (dimension values and actions that are "
        "CloudFormation references are left out). moto has no CloudFormation model for alarms: it skips "
        "them and every Ref to one (the release alarms' names in DeploymentAlarmNames) reads 'None'."
    ),
    "repository-name": (
        f"{REPOSITORY_TYPE} without a RepositoryName gets an explicit lowercase one "
        "(<stack>-<logical id>, the shape AWS generates). moto generates a mixed-case name from the "
        "logical id and then rejects it against ECR's own lowercase name pattern."
    ),
    "ssm-parameter-name": (
        f"{SSM_PARAMETER_TYPE} without a Name gets an explicit one (CFN-<stack>-<logical id>, like the "
        "CFN-<logical id>-<suffix> names AWS generates). moto generates no name and fails the create "
        "with an AttributeError."
    ),
    "ssm-parameter-tags": (
        f"{SSM_PARAMETER_TYPE} Tags, a key-value map in CloudFormation, become a list of Key/Value "
        "pairs. moto reads them as the API's list shape and fails the create with a TypeError."
    ),
    "ssm-document-format": (
        f"{SSM_DOCUMENT_TYPE} gets DocumentFormat JSON (CloudFormation's default) and its Content, an "
        "object in the template, as a JSON string. moto takes no default format (\"Invalid document "
        "format None\") and parses Content only as text."
    ),
    "target-group-full-name": (
        f"In a {DASHBOARD_TYPE}, Fn::GetAtt [target group, TargetGroupFullName] becomes the same value "
        "cut from the target group's ARN (Fn::Select 5 of Fn::Split ':' of its Ref: targetgroup/NAME/ID). "
        "moto's target group model answers no Fn::GetAtt and fails the create with HTTP 500."
    ),
    "output-of-unmodelled-resource": (
        "An Output that reads an attribute (Fn::GetAtt) of a resource type moto has no model for (today "
        "AWS::SSM::Association: the ec2 mode's StageAssociationId/ActivateAssociationId) keeps its key "
        f"but gets the value {UNMODELLED_OUTPUT_PLACEHOLDER!r}:<the resource's logical id>. moto skips the resource itself "
        "but then fails the whole create with HTTP 500 while validating the GetAtt; removing the Output "
        "instead would make the release tool stop with a missing output on an ec2 stage (it reads "
        "ActivateAssociationId, and the emulator's stand-in runtime answers for the association)."
    ),
}


def _modelled_types() -> set[str]:
    from moto.cloudformation.parsing import get_model_map

    return set(get_model_map())


@dataclass(frozen=True)
class Adaptation:
    stack: str
    logical_id: str
    resource_type: str
    kind: str  # a key of ADAPTATIONS

    def __str__(self) -> str:
        return f"{self.stack}/{self.logical_id} ({self.resource_type}): {self.kind}"


def secrets_to_create(templates: Mapping[str, dict]) -> dict[tuple[str, str], dict]:
    """(stack, logical id) -> Properties, for every secret the emulator must get out of band."""
    return {
        (stack, logical_id): resource.get("Properties", {})
        for stack, template in templates.items()
        for logical_id, resource in template.get("Resources", {}).items()
        if resource["Type"] == SECRET_TYPE
    }


def alarm_name(stack: str, logical_id: str) -> str:
    return f"{stack}-{logical_id}"


def alarms_to_create(templates: Mapping[str, dict]) -> dict[str, dict]:
    """The keyword arguments of `put_metric_alarm` for every alarm in `templates`, by alarm name.

    Values that are CloudFormation intrinsics (a load balancer's full name in a dimension, the SNS
    topic in the actions) cannot be resolved before the stack exists; they are left out."""
    found = {}
    for stack, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] != ALARM_TYPE:
                continue
            properties = _walk(copy.deepcopy(resource.get("Properties", {})), _drop_intrinsic_dimensions)
            arguments = {key: value for key, value in properties.items()
                         if not _has_intrinsics(value) and key not in ("AlarmName", "Tags")}
            arguments["AlarmName"] = alarm_name(stack, logical_id)
            found[arguments["AlarmName"]] = arguments
    return found


def _drop_intrinsic_dimensions(node: Any) -> Any:
    if isinstance(node, dict) and isinstance(node.get("Dimensions"), list):
        node = {**node, "Dimensions": [dim for dim in node["Dimensions"] if not _has_intrinsics(dim)]}
    return node


def adapt_template(stack: str, template: dict, *, secret_arns: Mapping[tuple[str, str], str]) -> tuple[dict, list[Adaptation]]:
    """Return an adapted deep copy of `template` and what was changed; `template` itself is never modified."""
    adapted = copy.deepcopy(template)
    resources = adapted.get("Resources", {})
    done: list[Adaptation] = []
    replacements: dict[str, str] = {}

    for logical_id, resource in list(resources.items()):
        if resource["Type"] == SECRET_TYPE:
            if (stack, logical_id) not in secret_arns:
                raise KeyError(f"{stack}/{logical_id}: no out-of-band secret ARN given; create it first (local.aws.create_secrets)")
            replacements[logical_id] = secret_arns[(stack, logical_id)]
    for logical_id, resource in list(resources.items()):
        # The attachment's Ref is its secret's ARN.
        if resource["Type"] == SECRET_ATTACHMENT_TYPE:
            secret_ref = resource.get("Properties", {}).get("SecretId", {})
            secret_id = secret_ref.get("Ref") if isinstance(secret_ref, dict) else None
            if secret_id not in replacements:
                raise ValueError(f"{stack}/{logical_id}: SecretId {secret_ref!r} is not a secret of this stack")
            replacements[logical_id] = replacements[secret_id]
    for logical_id in replacements:
        done.append(Adaptation(stack, logical_id, resources.pop(logical_id)["Type"], "secret-out-of-band"))
    for logical_id, resource in list(resources.items()):
        if resource["Type"] == ALARM_TYPE:
            replacements[logical_id] = alarm_name(stack, logical_id)
            done.append(Adaptation(stack, logical_id, resources.pop(logical_id)["Type"], "alarm-out-of-band"))
    if replacements:
        adapted = _replace_refs(adapted, replacements)
        resources = adapted["Resources"]
        for resource in resources.values():
            depends_on = resource.get("DependsOn")
            if isinstance(depends_on, str):
                depends_on = [depends_on]
            if depends_on is not None:
                kept = [dependency for dependency in depends_on if dependency not in replacements]
                if kept:
                    resource["DependsOn"] = kept
                else:
                    del resource["DependsOn"]

    for logical_id, resource in resources.items():
        if resource["Type"] == REPOSITORY_TYPE and "RepositoryName" not in resource.setdefault("Properties", {}):
            resource["Properties"]["RepositoryName"] = f"{stack}-{logical_id}".lower()
            done.append(Adaptation(stack, logical_id, REPOSITORY_TYPE, "repository-name"))
        if resource["Type"] == SSM_PARAMETER_TYPE and "Name" not in resource.setdefault("Properties", {}):
            resource["Properties"]["Name"] = f"CFN-{stack}-{logical_id}"
            done.append(Adaptation(stack, logical_id, SSM_PARAMETER_TYPE, "ssm-parameter-name"))
        if resource["Type"] == SSM_PARAMETER_TYPE and isinstance(resource["Properties"].get("Tags"), dict):
            resource["Properties"]["Tags"] = [{"Key": k, "Value": v} for k, v in resource["Properties"]["Tags"].items()]
            done.append(Adaptation(stack, logical_id, SSM_PARAMETER_TYPE, "ssm-parameter-tags"))

        if resource["Type"] == SSM_DOCUMENT_TYPE and "DocumentFormat" not in resource["Properties"]:
            resource["Properties"]["DocumentFormat"] = "JSON"
            if isinstance(resource["Properties"].get("Content"), dict):
                resource["Properties"]["Content"] = {"Fn::ToJsonString": resource["Properties"]["Content"]} \
                    if _has_intrinsics(resource["Properties"]["Content"]) else json.dumps(resource["Properties"]["Content"])
            done.append(Adaptation(stack, logical_id, SSM_DOCUMENT_TYPE, "ssm-document-format"))

    target_groups = {k for k, v in resources.items() if v["Type"] == TARGET_GROUP_TYPE}

    def full_name_from_arn(node):
        attribute = node.get("Fn::GetAtt") if isinstance(node, dict) and len(node) == 1 else None
        if isinstance(attribute, list) and attribute[0] in target_groups and attribute[1] == "TargetGroupFullName":
            return {"Fn::Select": [5, {"Fn::Split": [":", {"Ref": attribute[0]}]}]}
        return node

    for logical_id, resource in resources.items():
        if resource["Type"] == DASHBOARD_TYPE:
            before = resource.get("Properties", {})
            after = _walk(before, full_name_from_arn)
            if after != before:
                resource["Properties"] = after
                done.append(Adaptation(stack, logical_id, DASHBOARD_TYPE, "target-group-full-name"))

    modelled = _modelled_types()
    for output_key, output in list(adapted.get("Outputs", {}).items()):
        attribute = output.get("Value", {}).get("Fn::GetAtt") if isinstance(output.get("Value"), dict) else None
        target_type = resources.get(attribute[0], {}).get("Type") if isinstance(attribute, list) else None
        if target_type and target_type not in modelled:
            # One value per resource, so two associations' ids stay two (StartAssociationsOnce names one).
            output["Value"] = f"{UNMODELLED_OUTPUT_PLACEHOLDER}:{attribute[0]}"
            done.append(Adaptation(stack, f"Outputs.{output_key}", target_type, "output-of-unmodelled-resource"))

    leftover = _find_refs(adapted, set(replacements))
    if leftover:
        raise ValueError(f"{stack}: references to removed resources remain: {sorted(leftover)}")
    return adapted, done


def adapt_assembly(source: Path, target: Path, *, stack_names: tuple[str, ...] | list[str],
                   secret_arns: Mapping[tuple[str, str], str]) -> list[Adaptation]:
    """Copy the cloud assembly `source` to `target` (replacing `target`) and adapt the copy's templates of
    `stack_names` (the stacks to deploy; the others are copied unchanged)."""
    source, target = source.resolve(), target.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise ValueError(f"the adapted assembly {target} must not overlap the synthesized one {source}")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    done: list[Adaptation] = []
    files = template_files(target)
    missing = [name for name in stack_names if name not in files]
    if missing:
        raise LookupError(f"{source} has no stack {missing[0]!r}")
    for stack in stack_names:
        path = files[stack]
        adapted, changes = adapt_template(stack, json.loads(path.read_text()), secret_arns=secret_arns)
        if changes:
            path.write_text(json.dumps(adapted, indent=1))
            done.extend(changes)
    return done


def _has_intrinsics(node: Any) -> bool:
    if isinstance(node, dict):
        return any(key == "Ref" or key.startswith("Fn::") or _has_intrinsics(value) for key, value in node.items())
    if isinstance(node, list):
        return any(_has_intrinsics(value) for value in node)
    return False


def _walk(node: Any, visit: Callable[[Any], Any]) -> Any:
    replaced = visit(node)
    if replaced is not node:
        return replaced
    if isinstance(node, dict):
        return {key: _walk(value, visit) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, visit) for value in node]
    return node


def _replace_refs(template: dict, replacements: Mapping[str, str]) -> dict:
    def visit(node):
        if isinstance(node, dict) and len(node) == 1 and node.get("Ref") in replacements:
            return replacements[node["Ref"]]
        return node

    return _walk(template, visit)


def _find_refs(template: dict, logical_ids: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node):
        if isinstance(node, dict):
            if node.get("Ref") in logical_ids:
                found.add(node["Ref"])
            attribute = node.get("Fn::GetAtt")
            if isinstance(attribute, list) and attribute and attribute[0] in logical_ids:
                found.add(attribute[0])
        return node

    _walk(template, visit)
    for resource in template.get("Resources", {}).values():
        depends_on = resource.get("DependsOn") or []
        found.update(set([depends_on] if isinstance(depends_on, str) else depends_on) & logical_ids)
    return found
