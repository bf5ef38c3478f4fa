"""EC2 mode (the shipped `production` stage): hosts run the active version from a systemd unit."""
from __future__ import annotations

import copy
import io
import json
import re
import shutil
import subprocess
import tarfile

import pytest
from aws_cdk.assertions import Match

from components.ec2_service import HOST_FILES, host_files_archive
from config import RELEASE_TAG_PATTERN, Canary
from tests.helpers.synth import cdk_context, host_files_in_assembly, synthesize

STACK = "production-service"


def resources(template: dict, resource_type: str) -> dict:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def only(template: dict, resource_type: str) -> dict:
    found = list(resources(template, resource_type).values())
    assert len(found) == 1, f"{len(found)} {resource_type}"
    return found[0]


def rendered_user_data(template: dict) -> str:
    """The user data script with every CloudFormation token replaced by a placeholder word."""
    launch_template = only(template, "AWS::EC2::LaunchTemplate")
    parts = launch_template["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "CFNTOKEN" for part in parts)


def test_auto_scaling_group_is_sized_from_config_with_one_spare(shipped):
    group = only(shipped.templates[STACK], "AWS::AutoScaling::AutoScalingGroup")
    assert (group["Properties"]["MinSize"], group["Properties"]["DesiredCapacity"], group["Properties"]["MaxSize"]) == ("2", "2", "3")
    assert group["Properties"]["TargetGroupARNs"]
    # No scaling policy: the fleet size is desired_count, edited in cdk.json.
    assert not resources(shipped.templates[STACK], "AWS::AutoScaling::ScalingPolicy")


def test_launch_template_changes_roll_hosts_one_at_a_time_keeping_capacity(shipped):
    group = only(shipped.templates[STACK], "AWS::AutoScaling::AutoScalingGroup")
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MaxBatchSize"] == 1
    assert rolling["MinInstancesInService"] == 2
    assert rolling["WaitOnResourceSignals"] is True
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == 2


def test_hosts_are_graviton_imdsv2_no_ssh_public_address_encrypted_disk(shipped):
    template = shipped.template(STACK)
    template.has_resource_properties(
        "AWS::EC2::LaunchTemplate",
        {
            "LaunchTemplateData": Match.object_like(
                {
                    "InstanceType": "t4g.small",
                    "MetadataOptions": {"HttpTokens": "required"},
                    "NetworkInterfaces": [Match.object_like({"AssociatePublicIpAddress": True, "DeviceIndex": 0})],
                    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"Encrypted": True, "VolumeSize": 20, "VolumeType": "gp3"}}],
                    # AL2023 resolved when a host launches: a new AMI release never changes the template.
                    "ImageId": "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
                }
            )
        },
    )
    data = only(shipped.templates[STACK], "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert "KeyName" not in data


def test_pinned_ami_from_config(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"]["ami_id"] = "ami-0123456789abcdef0"
    template = synth_variant(context).templates[STACK]
    data = only(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == "ami-0123456789abcdef0"


def test_only_the_load_balancer_reaches_the_hosts(shipped):
    template = shipped.templates[STACK]
    groups = resources(template, "AWS::EC2::SecurityGroup")
    host_group = next(k for k, v in groups.items() if v["Properties"]["GroupDescription"] == "liftoff service")
    assert "SecurityGroupIngress" not in groups[host_group]["Properties"]
    into_hosts = [
        r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [host_group, "GroupId"]}
    ]
    assert [(r["FromPort"], r["ToPort"], "SourceSecurityGroupId" in r) for r in into_hosts] == [(8080, 8080, True)]


def test_host_role_is_limited_to_what_the_host_needs(shipped):
    template = shipped.templates[STACK]
    role = only(template, "AWS::IAM::Role")
    assert json.dumps(role["Properties"]["ManagedPolicyArns"]).count("AmazonSSMManagedInstanceCore") == 1
    statements = only(template, "AWS::IAM::Policy")["Properties"]["PolicyDocument"]["Statement"]
    actions = {action for s in statements for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {
        "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken",
        "secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
        "ssm:DescribeParameters", "ssm:GetParameter", "ssm:GetParameterHistory", "ssm:GetParameters",
        "logs:CreateLogStream", "logs:PutLogEvents",
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:DescribeTargetHealth",
        "cloudformation:SignalResource",
        "ssm:PutParameter", "ssm:GetParametersByPath",
        "autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeAutoScalingGroups",
        "s3:GetObject",
    }
    (host_files,) = [s for s in statements if s["Action"] == "s3:GetObject"]
    # The host files' one object in the bootstrap bucket, not the bucket.
    assert json.dumps(host_files["Resource"]).count(".tgz") == 1 and "/*" not in json.dumps(host_files["Resource"])
    wildcard = [s for s in statements if s["Resource"] == "*"]
    assert {a for s in wildcard for a in s["Action"]} == {
        "ecr:GetAuthorizationToken", "elasticloadbalancing:DescribeTargetHealth",
        "autoscaling:DescribeAutoScalingInstances", "autoscaling:DescribeAutoScalingGroups"}


def test_user_data_fits_ec2s_16_kb_and_copies_the_host_files_from_their_asset(shipped):
    template = shipped.templates[STACK]
    user_data = rendered_user_data(template)
    # EC2 refuses more than 16 KB before base64 (each token here stands for a name far shorter than the margin).
    assert len(user_data.encode()) < 16 * 1024 - 512, len(user_data.encode())
    assert "\naws s3 cp --region CFNTOKEN --only-show-errors CFNTOKEN /tmp/liftoff-host.tgz\n" in user_data, user_data
    assert "\ntar -xzf /tmp/liftoff-host.tgz -C / && rm /tmp/liftoff-host.tgz\n" in user_data
    # ... from the bootstrap bucket, the object the assembly's asset is published to.
    assert host_files_in_assembly(shipped.outdir, template)["opt/liftoff/bin/liftoff-boot"] == (HOST_FILES / "bin" / "liftoff-boot").read_bytes()


def test_user_data_over_ec2s_limit_is_refused_at_synth(monkeypatch, tmp_path):
    from components import ec2_service

    monkeypatch.setattr(ec2_service, "USER_DATA_LIMIT_BYTES", 1024)
    with pytest.raises(ValueError, match=r"the hosts' user data is \d+ bytes; EC2 takes at most 1024"):
        synthesize(cdk_context(), tmp_path)


def test_hosts_write_their_reports_only_under_the_stacks_report_path(shipped):
    template = shipped.templates[STACK]
    path = template["Outputs"]["HostReportPath"]["Value"]
    assert path == f"/liftoff/{STACK}/hosts/"
    statements = only(template, "AWS::IAM::Policy")["Properties"]["PolicyDocument"]["Statement"]
    (writes,) = [s for s in statements if "ssm:PutParameter" in s["Action"]]
    resources_json = json.dumps(writes["Resource"])
    assert f":parameter/liftoff/{STACK}/hosts/*" in resources_json and f":parameter/liftoff/{STACK}/hosts\"" in resources_json
    assert set(writes["Action"]) == {"ssm:PutParameter", "ssm:GetParameter", "ssm:GetParametersByPath"}
    user_data = json.dumps(only(template, "AWS::EC2::LaunchTemplate")["Properties"]["LaunchTemplateData"]["UserData"])
    assert f"HOST_REPORT_PATH={path}" in user_data and "READY_CHECK_PATH=/readyz" in user_data


@pytest.mark.parametrize(("association", "parameter", "script"), [("Stage", "StagedImageTag", "liftoff-stage"), ("Activate", "ImageTag", "liftoff-activate")])
def test_each_gate_is_an_association_driven_by_its_parameter(shipped, association, parameter, script):
    template = shipped.templates[STACK]
    associations = resources(template, "AWS::SSM::Association")
    name = next(k for k in associations if k.startswith(f"Ec2{association}Association"))
    properties = associations[name]["Properties"]
    assert properties["Parameters"] == {"ImageTag": [{"Ref": parameter}]}
    # The stage gate pulls one host at a time; the activate gate as liftoff asks (1, or 100% for a warm rollback).
    assert properties["MaxConcurrency"] == ("1" if association == "Stage" else {"Ref": "ActivateConcurrency"})
    assert properties["MaxErrors"] == "0"
    assert properties["WaitForSuccessTimeoutSeconds"] >= 300
    group = next(iter(resources(template, "AWS::AutoScaling::AutoScalingGroup")))
    assert properties["Targets"] == [{"Key": "tag:aws:autoscaling:groupName", "Values": [{"Ref": group}]}]
    document = resources(template, "AWS::SSM::Document")[properties["Name"]["Ref"]]["Properties"]
    assert document["DocumentType"] == "Command"
    assert document["Content"]["parameters"]["ImageTag"]["allowedPattern"] == RELEASE_TAG_PATTERN
    assert document["Content"]["mainSteps"][0]["inputs"]["runCommand"] == [f"/opt/liftoff/bin/{script} '{{{{ImageTag}}}}'"]


def test_the_activation_concurrency_is_one_host_at_a_time_unless_liftoff_asks_for_all(shipped):
    parameter = shipped.templates[STACK]["Parameters"]["ActivateConcurrency"]
    assert (parameter["Type"], parameter["Default"], parameter["AllowedValues"]) == ("String", "1", ["1", "25%", "100%"])


def test_liftoff_can_run_the_activate_gate_on_one_host_the_association_runs_on_every_host(shipped):
    """The fleet's canary: `liftoff` sends the association's own document to one host before the stack moves."""
    template = shipped.templates[STACK]
    associations = resources(template, "AWS::SSM::Association")
    activate = next(v for k, v in associations.items() if k.startswith("Ec2ActivateAssociation"))
    assert template["Outputs"]["ActivateDocumentName"]["Value"] == activate["Properties"]["Name"]
    assert activate["Properties"]["MaxConcurrency"] == {"Ref": "ActivateConcurrency"}


def test_activation_waits_for_staging_when_both_change(shipped):
    associations = resources(shipped.templates[STACK], "AWS::SSM::Association")
    activate = next(v for k, v in associations.items() if k.startswith("Ec2ActivateAssociation"))
    assert any(dep.startswith("Ec2StageAssociation") for dep in activate["DependsOn"])


def test_version_switch_never_touches_the_launch_template(shipped, synth_variant):
    template = shipped.templates[STACK]
    launch_template = json.dumps(only(template, "AWS::EC2::LaunchTemplate"))
    assert '"Ref": "ImageTag"' not in launch_template and '"Ref": "StagedImageTag"' not in launch_template
    # Scaling out changes the group's size only, not what a host is made of.
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"]["desired_count"] = 3
    scaled = synth_variant(context).templates[STACK]
    assert only(scaled, "AWS::EC2::LaunchTemplate") == only(template, "AWS::EC2::LaunchTemplate")
    assert only(scaled, "AWS::AutoScaling::AutoScalingGroup")["Properties"]["DesiredCapacity"] == "3"


def test_active_tag_lives_in_ssm_for_new_hosts(shipped):
    template = shipped.templates[STACK]
    user_data = rendered_user_data(template)
    assert "ACTIVE_TAG_PARAMETER=CFNTOKEN" in user_data
    assert user_data.rstrip().endswith("/opt/liftoff/bin/liftoff-boot")


def test_user_data_copies_the_repository_host_files_and_carries_no_secret(shipped):
    user_data = rendered_user_data(shipped.templates[STACK])
    members = host_files_in_assembly(shipped.outdir, shipped.templates[STACK])
    for unit in ("liftoff-app.service", "liftoff-slot@.service", "liftoff-proxy.service", "liftoff-report.service"):
        assert members[f"etc/systemd/system/{unit}"] == (HOST_FILES / unit).read_bytes()
    for script in (HOST_FILES / "bin").iterdir():
        assert members[f"opt/liftoff/bin/{script.name}"] == script.read_bytes()
    assert "password" not in user_data.lower().replace("db_password", "")
    assert "DB_SECRET_ARN=CFNTOKEN" in user_data


def test_host_archive_is_reproducible():
    assert host_files_archive() == host_files_archive()


def test_user_data_passes_shellcheck(shipped, tmp_path):
    script = tmp_path / "user-data.sh"
    script.write_text(rendered_user_data(shipped.templates[STACK]))
    result = subprocess.run([shutil.which("shellcheck") or "shellcheck", "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_ec2_outputs(shipped):
    outputs = shipped.template(STACK).find_outputs("*")
    assert {"AutoScalingGroupName", "StageAssociationId", "ActivateAssociationId", "LogGroupName", "ServiceUrl"} <= set(outputs)
    assert outputs["ComputeMode"]["Value"] == "ec2"
    assert "ClusterName" not in outputs


def test_instance_targets_for_ec2(shipped):
    shipped.template(STACK).has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup", {"TargetType": "instance", "Port": 8080}
    )


def differences(old, new, path=()) -> set[tuple]:
    """Every leaf path where two templates differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: set[tuple] = set()
        for key in set(old) | set(new):
            found |= differences(old.get(key), new.get(key), (*path, key))
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return {p for i, (a, b) in enumerate(zip(old, new)) for p in differences(a, b, (*path, i))}
    return set() if old == new else {path}


def test_a_desired_count_change_changes_only_the_groups_sizes_and_signals(shipped, synth_variant):
    # A scale deploy must not touch the SSM gates: a changed association re-runs its gate on every
    # host, and a failed run would roll the count change back.
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"]["desired_count"] = 3
    scaled = synth_variant(context)
    old, new = shipped.templates[STACK], scaled.templates[STACK]
    old["Resources"].pop("CDKMetadata", None)
    new["Resources"].pop("CDKMetadata", None)
    group = next(iter(resources(old, "AWS::AutoScaling::AutoScalingGroup")))
    assert differences(old, new) == {
        ("Resources", group, "Properties", "MinSize"),
        ("Resources", group, "Properties", "MaxSize"),
        ("Resources", group, "Properties", "DesiredCapacity"),
        ("Resources", group, "CreationPolicy", "ResourceSignal", "Count"),
        ("Resources", group, "UpdatePolicy", "AutoScalingRollingUpdate", "MinInstancesInService"),
    }
    assert new["Resources"][group]["Properties"]["DesiredCapacity"] == "3"
    assert new["Resources"][group]["Properties"]["MaxSize"] == "4"
    # The data stack does not change either.
    assert differences(shipped.templates["production-data"], scaled.templates["production-data"]) <= {("Resources", "CDKMetadata", "Metadata", "aws:cdk:path")}


def test_gate_wait_covers_the_largest_fleet_config_allows(shipped):
    from components.ec2_service import (
        HEALTH_TIMEOUT_SECONDS, MAX_ASSOCIATION_WAIT_SECONDS, PULL_ALLOWANCE_SECONDS, READY_TIMEOUT_SECONDS)
    from config import MAX_DESIRED_COUNT

    stage = next(s for name, s in cdk_context()["liftoff"]["stages"].items() if name == "production")
    associations = {k[len("Ec2"):].split("Association")[0]: v["Properties"] for k, v in resources(shipped.templates[STACK], "AWS::SSM::Association").items()}
    per_host = (PULL_ALLOWANCE_SECONDS + stage["drain_seconds"] + stage["stop_timeout_seconds"] + 2 * HEALTH_TIMEOUT_SECONDS
                + READY_TIMEOUT_SECONDS + stage.get("canary_seconds", 20))
    assert associations["Activate"]["WaitForSuccessTimeoutSeconds"] == 300 + per_host * (MAX_DESIRED_COUNT + 1)
    assert associations["Stage"]["WaitForSuccessTimeoutSeconds"] == 300 + PULL_ALLOWANCE_SECONDS * (MAX_DESIRED_COUNT + 1)
    assert all(a["WaitForSuccessTimeoutSeconds"] <= MAX_ASSOCIATION_WAIT_SECONDS for a in associations.values())


def host_env(user_data: str) -> dict[str, str]:
    block = re.search(r"<<'HOSTENV'\n(.*?)\nHOSTENV", user_data, re.S).group(1)
    return dict(line.split("=", 1) for line in block.splitlines())


def test_shipped_hosts_switch_versions_with_two_slots_behind_their_own_proxy(shipped):
    user_data = rendered_user_data(shipped.templates[STACK])
    env = host_env(user_data)
    production = cdk_context()["liftoff"]["stages"]["production"]
    assert env["ACTIVATION"] == "slots"
    assert env["BAKE_SECONDS"] == str(production.get("bake_seconds", 300))
    # The shipped stage sets no canary_* key: config's defaults reach every host.
    assert {key: value for key, value in env.items() if key.startswith("CANARY_")} == {
        "CANARY_PERCENT": "10", "CANARY_SECONDS": "20", "CANARY_MIN_REQUESTS": "10", "CANARY_MAX_ERROR_PERCENT": "5",
        "CANARY_MAX_ADDED_MS": "250",
    }
    # The slots listen on loopback ports of their own; the load balancer's port is the proxy's.
    assert {env["SLOT_A_PORT"], env["SLOT_B_PORT"], env["CONTAINER_PORT"]} == {"18081", "18082", "8080"}
    assert env["CONTAINER_MEMORY_MIB"] == "512"
    assert "dnf install -y docker jq aws-cfn-bootstrap haproxy socat" in user_data


def test_the_host_readme_documents_every_host_env_key_user_data_writes(shipped):
    # The table is where an operator on a host looks a key up; a key written but not described is a guess.
    readme = (HOST_FILES / "README.md").read_text()
    table = readme.split("## Host config", 1)[1].split("\n## ", 1)[0]
    documented = {key for row in table.splitlines() if row.startswith("| `")
                  for key in re.findall(r"`([A-Z0-9_]+)`", row.split("|")[1])}
    assert documented == set(host_env(rendered_user_data(shipped.templates[STACK])))


def test_restart_activation_needs_no_proxy_and_slot_ports_avoid_the_container_port(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"]["activation"] = "restart"
    env_restart = host_env(rendered_user_data(synth_variant(context).templates[STACK]))
    assert env_restart["ACTIVATION"] == "restart"
    assert not {"SLOT_A_PORT", "SLOT_B_PORT", "BAKE_SECONDS"} & set(env_restart)
    assert not [key for key in env_restart if key.startswith("CANARY_")]  # one container: no second slot to share with
    assert "haproxy" not in rendered_user_data(synth_variant(context).templates[STACK])
    context["stages"]["production"]["activation"] = "slots"
    context["stages"]["production"]["container_port"] = 18082
    env_slots = host_env(rendered_user_data(synth_variant(context).templates[STACK]))
    assert (env_slots["SLOT_A_PORT"], env_slots["SLOT_B_PORT"]) == ("28081", "28082")


def activate_per_host_seconds(template: dict) -> int:
    """The activate gate's per-host timeout, as its document gives it (the run's timeout less the document's 60 s)."""
    documents = resources(template, "AWS::SSM::Document")
    name = next(k for k in documents if k.startswith("Ec2ActivateDocument"))
    return int(documents[name]["Properties"]["Content"]["mainSteps"][0]["inputs"]["timeoutSeconds"]) - 60


def test_the_stages_canary_reaches_each_host_and_lengthens_the_activate_gate(shipped, synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"].update({
        "canary_percent": 25, "canary_seconds": 90, "canary_min_requests": 40, "canary_max_error_percent": 2,
        "canary_max_added_latency_ms": 400,
    })
    template = synth_variant(context).templates[STACK]
    env = host_env(rendered_user_data(template))
    assert (env["CANARY_PERCENT"], env["CANARY_SECONDS"], env["CANARY_MIN_REQUESTS"], env["CANARY_MAX_ERROR_PERCENT"],
            env["CANARY_MAX_ADDED_MS"]) == ("25", "90", "40", "2", "400")
    # Each host's activation now waits out the canary too: 90 s instead of the default 20.
    shipped_per_host = activate_per_host_seconds(shipped.templates[STACK])
    assert activate_per_host_seconds(template) == shipped_per_host + 90 - 20
    # A share of 0 runs no canary: the hosts are told so, and the gate waits for none.
    context["stages"]["production"]["canary_percent"] = 0
    template = synth_variant(context).templates[STACK]
    assert host_env(rendered_user_data(template))["CANARY_PERCENT"] == "0"
    assert activate_per_host_seconds(template) == shipped_per_host - 20


@pytest.mark.parametrize("activation, canary", [
    ("slots", None), ("restart", Canary(percent=10, seconds=20, min_requests=10, max_error_percent=5, max_added_latency_ms=250)),
])
def test_canary_settings_go_with_slots_and_only_with_them(activation, canary):
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_secretsmanager as secretsmanager
    from aws_cdk import aws_ssm as ssm

    from components.ec2_service import Ec2Service

    stack = cdk.Stack(cdk.App(), "probe")
    vpc = ec2.Vpc(stack, "Vpc", nat_gateways=0, restrict_default_security_group=False)
    with pytest.raises(ValueError, match=f"canary settings go with activation 'slots' and only with it .* activation '{activation}'"):
        Ec2Service(
            stack, "Ec2", vpc=vpc, repository=ecr.Repository(stack, "Repo"), image_tag="1.0.0", staged_image_tag="1.0.0", activate_concurrency="1",
            active_tag_parameter=ssm.StringParameter(stack, "Active", string_value="1.0.0"),
            target_group=elbv2.ApplicationTargetGroup(stack, "Tg", vpc=vpc, port=8080),
            db_host="db", db_port="5432", db_name="app", db_secret=secretsmanager.Secret(stack, "Secret"),
            desired_count=1, max_count=None, scale_on=None, instance_type="t4g.small", arm64=True, ami_id=None,
            container_port=8080, health_check_path="/healthz", stop_timeout_seconds=10, drain_seconds=5,
            activation=activation, container_memory_mib=512, bake_seconds=300, canary=canary,
            log_retention=logs.RetentionDays.ONE_WEEK,
        )


def test_the_migrate_document_runs_liftoff_migrate_once_on_a_host_and_admits_only_tags_and_step_ids(shipped):
    from components.ec2_service import CONTRACT_IDS_PATTERN

    template = shipped.templates[STACK]
    documents = resources(template, "AWS::SSM::Document")
    name = next(k for k in documents if k.startswith("Ec2MigrateDocument"))
    content = documents[name]["Properties"]["Content"]
    assert content["parameters"]["ImageTag"]["allowedPattern"] == RELEASE_TAG_PATTERN
    assert content["parameters"]["AllowContracts"]["default"] == ""
    assert content["mainSteps"][0]["inputs"]["runCommand"] == ["/opt/liftoff/bin/liftoff-migrate '{{ImageTag}}' {{AllowContracts}}"]
    # No association runs it: only `liftoff migrate` sends it, to one host.
    assert not any(a["Properties"]["Name"] == {"Ref": name} for a in resources(template, "AWS::SSM::Association").values())
    assert template["Outputs"]["MigrateDocumentName"]["Value"] == {"Ref": name}
    # The unquoted ids can carry no shell syntax and never start an option.
    for allowed in ("", "0003_require_note_title", "0003_a 0004.b-c"):
        assert re.fullmatch(CONTRACT_IDS_PATTERN, allowed)
    for refused in ("x;rm", "$(id)", "-rf", "a  b", "a\nb", "a b -c"):
        assert not re.fullmatch(CONTRACT_IDS_PATTERN, refused)
    # The script is in the host files the user data unpacks.
    with tarfile.open(fileobj=io.BytesIO(host_files_archive()), mode="r:gz") as archive:
        assert archive.getmember("opt/liftoff/bin/liftoff-migrate").mode == 0o755
