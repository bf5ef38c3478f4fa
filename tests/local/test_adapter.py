"""The adapter changes only a separate copy, only in the documented ways."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from local.adapter import ADAPTATIONS, UNMODELLED_OUTPUT_PLACEHOLDER, adapt_assembly, adapt_template, alarms_to_create, secrets_to_create
from local.assembly import read_templates, template_files
from tests.helpers.synth import REPO

DOC = REPO / "docs" / "local-emulator.md"
ALL_STACKS = ("staging-registry", "staging-data", "staging-service", "production-data", "production-service")


def _digests(directory: Path) -> dict[str, str]:
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def _fake_arns(templates) -> dict:
    return {key: f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{key[0]}-{key[1]}-AbCdEf" for key in secrets_to_create(templates)}


def test_the_assembly_bound_for_aws_is_never_changed(shipped, tmp_path):
    before = _digests(shipped.outdir)
    templates = read_templates(shipped.outdir, ALL_STACKS)
    done = adapt_assembly(shipped.outdir, tmp_path / "adapted", stack_names=ALL_STACKS, secret_arns=_fake_arns(templates))
    assert done, "the shipped stacks need adapting; if moto caught up, drop the adaptation and this guard"
    assert _digests(shipped.outdir) == before
    # The copy differs exactly in the adapted templates.
    adapted = _digests(tmp_path / "adapted")
    changed = {name for name in adapted if adapted[name] != before.get(name)}
    assert changed == {template_files(shipped.outdir)[stack].name for stack in {a.stack for a in done}}


@pytest.mark.parametrize("target", [".", "inside"])
def test_the_copy_may_not_overlap_the_synthesized_assembly(shipped, target):
    with pytest.raises(ValueError, match="must not overlap"):
        adapt_assembly(shipped.outdir, shipped.outdir / target if target != "." else shipped.outdir,
                       stack_names=("staging-registry",), secret_arns={})


def test_adapt_template_leaves_its_input_alone_and_removes_every_reference_to_the_secret(shipped):
    templates = read_templates(shipped.outdir, ("staging-data", "staging-service"))
    original = copy.deepcopy(templates["staging-data"])
    arns = _fake_arns(templates)
    adapted, done = adapt_template("staging-data", templates["staging-data"], secret_arns=arns)
    assert templates["staging-data"] == original
    assert {a.kind for a in done} == {"secret-out-of-band"}
    assert not any(r["Type"].startswith("AWS::SecretsManager::") for r in adapted["Resources"].values())
    (arn,) = arns.values()
    assert adapted["Outputs"]["DatabaseSecretArn"]["Value"] == arn


def test_a_secret_without_an_out_of_band_arn_is_refused(shipped):
    templates = read_templates(shipped.outdir, ("staging-data",))
    with pytest.raises(KeyError, match="no out-of-band secret ARN"):
        adapt_template("staging-data", templates["staging-data"], secret_arns={})


def test_every_adaptation_is_documented_with_its_reason():
    text = DOC.read_text()
    for kind in ADAPTATIONS:
        assert f"`{kind}`" in text, f"docs/local-emulator.md does not list the adaptation {kind!r}"


def test_an_output_of_an_unmodelled_resource_keeps_its_key_with_a_placeholder_value(shipped):
    # The release tool reads ActivateAssociationId on an ec2 stage: a removed output would stop it there.
    templates = read_templates(shipped.outdir, ("production-service",))
    original = templates["production-service"]["Outputs"]
    adapted, done = adapt_template("production-service", templates["production-service"], secret_arns={})
    kept = {a.logical_id for a in done if a.kind == "output-of-unmodelled-resource"}
    assert kept == {"Outputs.StageAssociationId", "Outputs.ActivateAssociationId"}
    assert set(adapted["Outputs"]) == set(original)
    for key in ("StageAssociationId", "ActivateAssociationId"):
        assert "Fn::GetAtt" in original[key]["Value"]
        assert adapted["Outputs"][key]["Value"] == f"{UNMODELLED_OUTPUT_PLACEHOLDER}:{original[key]['Value']['Fn::GetAtt'][0]}"
    assert adapted["Outputs"]["StageAssociationId"]["Value"] != adapted["Outputs"]["ActivateAssociationId"]["Value"]
    assert UNMODELLED_OUTPUT_PLACEHOLDER in DOC.read_text()


def test_dashboard_reads_the_target_group_name_from_its_arn(shipped):
    templates = read_templates(shipped.outdir, ("staging-service",))
    original = json.dumps(templates["staging-service"])
    adapted, done = adapt_template("staging-service", templates["staging-service"], secret_arns={})
    assert [a.kind for a in done if a.resource_type == "AWS::CloudWatch::Dashboard"] == ["target-group-full-name"]
    (dashboard,) = [v for v in adapted["Resources"].values() if v["Type"] == "AWS::CloudWatch::Dashboard"]
    assert "TargetGroupFullName" in original and "TargetGroupFullName" not in json.dumps(dashboard)
    group = next(k for k, v in adapted["Resources"].items() if v["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {"Fn::Select": [5, {"Fn::Split": [":", {"Ref": group}]}]} in _nodes(dashboard)


def _nodes(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def test_alarms_are_made_out_of_band_and_their_refs_become_their_names(shipped):
    templates = read_templates(shipped.outdir, ("staging-service",))
    template = templates["staging-service"]
    alarms = {k for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    adapted, done = adapt_template("staging-service", template, secret_arns={})
    assert {a.logical_id for a in done if a.kind == "alarm-out-of-band"} == alarms
    assert not any(v["Type"] == "AWS::CloudWatch::Alarm" for v in adapted["Resources"].values())
    assert set(alarms_to_create(templates)) == {f"staging-service-{alarm}" for alarm in alarms}
    # The ECS deployment alarms and the output read the names the alarms are created under.
    (service,) = [v for v in adapted["Resources"].values() if v["Type"] == "AWS::ECS::Service"]
    names = service["Properties"]["DeploymentConfiguration"]["Alarms"]["AlarmNames"]
    assert all(isinstance(name, str) and name.startswith("staging-service-AlarmsRelease") for name in names)
    assert adapted["Outputs"]["DeploymentAlarmNames"]["Value"] == {"Fn::Join": [",", names]}
