from __future__ import annotations

import copy
import re

import pytest
from aws_cdk.assertions import Match

from config import RELEASE_TAG_PATTERN
from tests.helpers.synth import cdk_context


def test_image_tag_is_a_required_parameter_that_refuses_mutable_tags(shipped):
    parameter = shipped.template("staging-service").find_parameters("ImageTag")["ImageTag"]
    assert "Default" not in parameter
    pattern = parameter["AllowedPattern"]
    assert pattern == RELEASE_TAG_PATTERN
    for good in ("1.4.2", "v2.0.0-rc.1", "0a1b2c3d"):
        assert re.fullmatch(pattern, good)
    for bad in ("latest", "stable", "1.4", "LATEST", ""):
        assert not re.fullmatch(pattern, bad)


def test_container_runs_the_image_tag_parameter(shipped):
    template = shipped.template("staging-service")
    task = next(iter(template.find_resources("AWS::ECS::TaskDefinition").values()))
    containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
    container = containers["app"]
    assert {"Ref": "ImageTag"} in container["Image"]["Fn::Join"][1]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["APP_VERSION"] == {"Ref": "ImageTag"}
    assert environment["PORT"] == "8080"
    assert environment["DB_NAME"] == "liftoff"
    assert "Fn::ImportValue" in environment["DB_HOST"]
    assert {secret["Name"] for secret in container["Secrets"]} == {"DB_USER", "DB_PASSWORD"}
    assert all(":username::" in str(s["ValueFrom"]) or ":password::" in str(s["ValueFrom"]) for s in container["Secrets"])
    assert container["StopTimeout"] == 10
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert container["Essential"] is True


def test_every_task_migrates_before_the_app_starts(shipped):
    task = next(iter(shipped.template("staging-service").find_resources("AWS::ECS::TaskDefinition").values()))
    containers = {c["Name"]: c for c in task["Properties"]["ContainerDefinitions"]}
    migrate, app = containers["migrate"], containers["app"]
    assert migrate["Command"] == ["migrate"]
    assert migrate["Essential"] is False
    assert migrate["Image"] == app["Image"]
    assert {s["Name"] for s in migrate["Secrets"]} == {"DB_USER", "DB_PASSWORD"}
    assert app["DependsOn"] == [{"Condition": "SUCCESS", "ContainerName": "migrate"}]


def test_fargate_task_is_arm64_and_sized_from_config(shipped):
    shipped.template("staging-service").has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "Cpu": "256",
            "Memory": "512",
            "RequiresCompatibilities": ["FARGATE"],
            "RuntimePlatform": {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
        },
    )


def test_a_release_keeps_full_capacity(shipped):
    # The strategies (blue/green shipped; rolling with its circuit breaker) are in tests/components/test_ecs_service.py.
    shipped.template("staging-service").has_resource_properties(
        "AWS::ECS::Service",
        {
            "DesiredCount": 1,
            "LaunchType": "FARGATE",
            "HealthCheckGracePeriodSeconds": 15,
            "DeploymentConfiguration": {
                "MinimumHealthyPercent": 100,
                "MaximumPercent": 200,
            },
            "NetworkConfiguration": {"AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "ENABLED"})},
        },
    )


def test_health_check_and_drain_are_tuned(shipped):
    shipped.template("staging-service").has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {
            "TargetType": "ip",
            "Port": 8080,
            "HealthCheckPath": "/healthz",
            "HealthCheckIntervalSeconds": 5,
            "HealthCheckTimeoutSeconds": 3,
            "HealthyThresholdCount": 2,
            "UnhealthyThresholdCount": 2,
            "Matcher": {"HttpCode": "200"},
            "TargetGroupAttributes": Match.array_with([{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}]),
        },
    )


def test_load_balancer_is_public_and_plain_http_without_a_certificate(shipped):
    template = shipped.template("staging-service")
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internet-facing", "Type": "application"}
    )
    template.resource_count_is("AWS::ElasticLoadBalancingV2::Listener", 1)
    template.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {"Port": 80, "Protocol": "HTTP"})


def test_certificate_gives_https_and_a_redirect(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["staging"]["certificate_arn"] = "arn:aws:acm:eu-west-1:111122223333:certificate/0b1c2d3e-aaaa-bbbb-cccc-0123456789ab"
    template = synth_variant(context).template("staging-service")
    template.resource_count_is("AWS::ElasticLoadBalancingV2::Listener", 2)
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": 443, "Protocol": "HTTPS", "Certificates": [{"CertificateArn": Match.string_like_regexp("^arn:aws:acm:")}]},
    )
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": 80, "DefaultActions": [Match.object_like({"Type": "redirect", "RedirectConfig": Match.object_like({"Protocol": "HTTPS", "Port": "443"})})]},
    )
    assert template.find_outputs("ServiceUrl")["ServiceUrl"]["Value"]["Fn::Join"][1][0] == "https://"


def test_service_is_reachable_only_from_the_load_balancer(shipped):
    template = shipped.template("staging-service")
    groups = template.find_resources("AWS::EC2::SecurityGroup")
    service_group = next(k for k, v in groups.items() if v["Properties"]["GroupDescription"] == "liftoff service")
    alb_group = next(k for k, v in groups.items() if v["Properties"]["GroupDescription"] == "liftoff load balancer")
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    into_service = [r["Properties"] for r in ingress.values() if r["Properties"]["GroupId"] == {"Fn::GetAtt": [service_group, "GroupId"]}]
    assert into_service == [
        {
            "Description": "Load balancer to target",
            "FromPort": 8080,
            "GroupId": {"Fn::GetAtt": [service_group, "GroupId"]},
            "IpProtocol": "tcp",
            "SourceSecurityGroupId": {"Fn::GetAtt": [alb_group, "GroupId"]},
            "ToPort": 8080,
        }
    ]
    # The ALB accepts the internet on its listener port only.
    alb_ingress = groups[alb_group]["Properties"]["SecurityGroupIngress"]
    assert [(rule["CidrIp"], rule["FromPort"], rule["ToPort"]) for rule in alb_ingress] == [("0.0.0.0/0", 80, 80)]
    # ...and sends only to the service port.
    egress = [r["Properties"] for r in template.find_resources("AWS::EC2::SecurityGroupEgress").values()]
    assert [(e["FromPort"], e["DestinationSecurityGroupId"]) for e in egress] == [(8080, {"Fn::GetAtt": [service_group, "GroupId"]})]


def test_database_port_is_opened_from_the_service_side(shipped):
    template = shipped.template("staging-service")
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    to_database = [r["Properties"] for r in ingress.values() if "Fn::ImportValue" in r["Properties"]["GroupId"]]
    assert len(to_database) == 1
    rule = to_database[0]
    assert "staging-data:" in rule["GroupId"]["Fn::ImportValue"]
    assert rule["IpProtocol"] == "tcp"
    assert "Fn::ImportValue" in rule["FromPort"]


def test_outputs_name_what_a_user_needs(shipped):
    outputs = shipped.template("staging-service").find_outputs("*")
    assert {"ServiceUrl", "TargetGroupArn", "ComputeMode", "ClusterName", "EcsServiceName", "LogGroupName",
            "DeploymentAlarmNames", "AlternateTargetGroupArn"} <= set(outputs)
    assert outputs["ComputeMode"]["Value"] == "ecs"
    assert outputs["RegistryStackName"]["Value"] == "staging-registry"
    assert outputs["DataStackName"]["Value"] == "staging-data"


def test_logs_have_retention(shipped):
    shipped.template("staging-service").has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 14})
    shipped.template("production-service").has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 90})


@pytest.mark.parametrize("stack", ["staging-service", "production-service"])
def test_no_stateful_resource_in_the_service_stack(shipped, stack):
    types = {resource["Type"] for resource in shipped.templates[stack]["Resources"].values()}
    assert not types & {"AWS::RDS::DBInstance", "AWS::ECR::Repository", "AWS::EC2::VPC", "AWS::SecretsManager::Secret"}


def test_staged_tag_is_a_second_gate_with_the_same_rule(shipped):
    template = shipped.template("staging-service")
    parameters = template.find_parameters("*")
    assert parameters["StagedImageTag"]["AllowedPattern"] == parameters["ImageTag"]["AllowedPattern"]
    assert "Default" not in parameters["StagedImageTag"]


def test_both_gates_are_recorded_in_ssm(shipped):
    template = shipped.template("staging-service")
    template.has_resource_properties("AWS::SSM::Parameter", {"Type": "String", "Value": {"Ref": "ImageTag"}})
    template.has_resource_properties("AWS::SSM::Parameter", {"Type": "String", "Value": {"Ref": "StagedImageTag"}})
    outputs = template.find_outputs("*")
    assert {"ActiveImageTagParameterName", "StagedImageTagParameterName"} <= set(outputs)
