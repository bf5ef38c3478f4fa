"""components/ecs_service.py (with load_balancer.py and alarms.py): ECS's own deployment strategies.

The shipped staging stage deploys blue/green; one variant synth turns a second stage of each other
strategy on (rolling, canary, linear), so every shape is checked, linted and cdk-nagged.
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from tests.helpers.synth import cdk_context, synthesize


def of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def the_one(template: dict, resource_type: str) -> tuple[str, dict]:
    (found,) = of_type(template, resource_type).items()
    return found[0], found[1]["Properties"]


@pytest.fixture(scope="module")
def strategies(tmp_path_factory):
    context = copy.deepcopy(cdk_context()["liftoff"])
    base = context["stages"]["staging"]
    for name, settings in {
        "rolling": {"deployment_strategy": "rolling"},
        "canary": {"deployment_strategy": "canary", "traffic_shift_percent": 2.5, "traffic_shift_step_seconds": 240,
                   "bake_seconds": 600},
        "linear": {"deployment_strategy": "linear"},
    }.items():
        context["stages"][name] = {**base, **settings, "share_registry_with": "staging"}
    del context["stages"]["rolling"]["bake_seconds"]  # rolling has no bake: config refuses the key
    return synthesize({**cdk_context(), "liftoff": context}, tmp_path_factory.mktemp("cdk.strategies"))


def test_shipped_staging_deploys_blue_green_with_bake_time_and_rollback_alarms(shipped):
    template = shipped.templates["staging-service"]
    _, service = the_one(template, "AWS::ECS::Service")
    deployment = service["DeploymentConfiguration"]
    assert deployment["Strategy"] == "BLUE_GREEN"
    assert deployment["BakeTimeInMinutes"] == 5  # bake_seconds 300
    # Full capacity of the new version before any traffic moves; new tasks that never become healthy trip the
    # circuit breaker, which rolls the deployment back before it took a request.
    assert (deployment["MinimumHealthyPercent"], deployment["MaximumPercent"]) == (100, 200)
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    alarms = {logical_id for logical_id in of_type(template, "AWS::CloudWatch::Alarm")}
    release = sorted(a for a in alarms if a.startswith("AlarmsRelease"))
    assert len(release) == 2
    assert deployment["Alarms"] == {"AlarmNames": [{"Ref": a} for a in sorted(release, key=lambda a: "Unhealthy" in a)],
                                    "Enable": True, "Rollback": True}


def test_blue_green_has_an_alternate_group_a_production_rule_and_an_infrastructure_role(shipped):
    template = shipped.templates["staging-service"]
    groups = of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert set(groups) == {next(k for k in groups if k.startswith("LoadBalancerTargets")),
                           next(k for k in groups if k.startswith("LoadBalancerAlternateTargets"))}
    primary = next(k for k in groups if k.startswith("LoadBalancerTargets"))
    alternate = next(k for k in groups if k.startswith("LoadBalancerAlternateTargets"))
    # The alternate group is checked and drained exactly like the first: either one serves after a release.
    assert groups[primary]["Properties"] == groups[alternate]["Properties"]
    rule_id, rule = the_one(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    listener_id, _ = the_one(template, "AWS::ElasticLoadBalancingV2::Listener")
    assert rule["ListenerArn"] == {"Ref": listener_id}
    assert rule["Conditions"] == [{"Field": "path-pattern", "PathPatternConfig": {"Values": ["/*"]}}]
    assert rule["Actions"] == [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
        {"TargetGroupArn": {"Ref": primary}, "Weight": 100}, {"TargetGroupArn": {"Ref": alternate}, "Weight": 0}]}}]
    _, service = the_one(template, "AWS::ECS::Service")
    (load_balancer,) = service["LoadBalancers"]
    role_id = load_balancer["AdvancedConfiguration"]["RoleArn"]["Fn::GetAtt"][0]
    assert load_balancer == {
        "ContainerName": "app", "ContainerPort": 8080, "TargetGroupArn": {"Ref": primary},
        "AdvancedConfiguration": {"AlternateTargetGroupArn": {"Ref": alternate}, "ProductionListenerRule": {"Ref": rule_id},
                                  "RoleArn": {"Fn::GetAtt": [role_id, "Arn"]}},
    }
    role = template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}}]
    assert json.dumps(role["ManagedPolicyArns"]).endswith('":iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"]]}]')
    # The rule exists before the service that names it.
    assert rule_id in template["Resources"][the_one(template, "AWS::ECS::Service")[0]]["DependsOn"]
    assert template["Outputs"]["AlternateTargetGroupArn"]["Value"] == {"Ref": alternate}


def test_release_alarms_watch_one_minute_periods_and_page_no_one(shipped):
    for stack in ("staging-service", "production-service"):
        template = shipped.templates[stack]
        alarms = {k: v["Properties"] for k, v in of_type(template, "AWS::CloudWatch::Alarm").items()}
        share = next(v for k, v in alarms.items() if k.startswith("AlarmsRelease5xxShare"))
        unhealthy = next(v for k, v in alarms.items() if k.startswith("AlarmsReleaseUnhealthyTargets"))
        # Default: 1 % 5xx (ECS Express Mode's bar) or one unhealthy target, 2 one-minute periods in a row.
        assert (share["Threshold"], share["ComparisonOperator"], share["EvaluationPeriods"], share["DatapointsToAlarm"]) == (
            1, "GreaterThanThreshold", 2, 2)
        assert (unhealthy["Threshold"], unhealthy["ComparisonOperator"], unhealthy["EvaluationPeriods"], unhealthy["DatapointsToAlarm"]) == (
            1, "GreaterThanOrEqualToThreshold", 2, 2)
        expression = next(q for q in share["Metrics"] if "Expression" in q)
        assert expression["Expression"] == "IF(requests > 0, 100 * (target5xx + elb5xx) / requests, 0)"
        assert all(q["MetricStat"]["Period"] == 60 for q in share["Metrics"] if "MetricStat" in q)
        for alarm in (share, unhealthy):
            assert "AlarmActions" not in alarm and "OKActions" not in alarm
            assert "release alarm" in alarm["AlarmDescription"]
        names = [{"Ref": k} for k in alarms if k.startswith("AlarmsRelease5xxShare")] + \
                [{"Ref": k} for k in alarms if k.startswith("AlarmsReleaseUnhealthyTargets")]
        # The contract with the EC2 auto-rollback watch: this exact output name, comma-joined names.
        assert template["Outputs"]["DeploymentAlarmNames"]["Value"] == {"Fn::Join": [",", names]}, stack


def test_target_group_alarms_add_up_both_groups_under_blue_green(shipped):
    template = shipped.templates["staging-service"]
    groups = sorted(of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup"))
    alarms = {k: v["Properties"] for k, v in of_type(template, "AWS::CloudWatch::Alarm").items()}
    for prefix, metric_name in (("AlarmsReleaseUnhealthyTargets", "UnHealthyHostCount"), ("AlarmsUnhealthyTargets", "UnHealthyHostCount"),
                                ("AlarmsNoHealthyTargets", "HealthyHostCount")):
        alarm = next(v for k, v in alarms.items() if k.startswith(prefix) and not k.startswith(prefix + "Share"))
        expression = next(q for q in alarm["Metrics"] if "Expression" in q)
        assert expression["Expression"] == "FILL(group0, 0) + FILL(group1, 0)", prefix
        watched = json.dumps([q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q])
        assert all(group in watched for group in groups) and metric_name in watched, prefix
    # A rolling or ec2 stage has one group and keeps the plain metric.
    production = {k: v["Properties"] for k, v in of_type(shipped.templates["production-service"], "AWS::CloudWatch::Alarm").items()}
    assert next(v for k, v in production.items() if k.startswith("AlarmsReleaseUnhealthyTargets"))["MetricName"] == "UnHealthyHostCount"


def test_rolling_keeps_one_group_and_the_circuit_breaker_and_still_rolls_back_on_the_alarms(strategies):
    template = strategies.templates["rolling-service"]
    assert len(of_type(template, "AWS::ElasticLoadBalancingV2::TargetGroup")) == 1
    assert not of_type(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert "AlternateTargetGroupArn" not in template["Outputs"]
    _, service = the_one(template, "AWS::ECS::Service")
    deployment = service["DeploymentConfiguration"]
    assert "Strategy" not in deployment and "BakeTimeInMinutes" not in deployment  # ECS's default: ROLLING
    assert deployment["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    assert deployment["Alarms"]["Rollback"] is True and len(deployment["Alarms"]["AlarmNames"]) == 2
    assert "AdvancedConfiguration" not in service["LoadBalancers"][0]


def test_canary_and_linear_shift_traffic_in_steps(strategies):
    canary = the_one(strategies.templates["canary-service"], "AWS::ECS::Service")[1]["DeploymentConfiguration"]
    assert canary["Strategy"] == "CANARY"
    assert canary["CanaryConfiguration"] == {"CanaryPercent": 2.5, "CanaryBakeTimeInMinutes": 4}
    assert canary["BakeTimeInMinutes"] == 10
    linear = the_one(strategies.templates["linear-service"], "AWS::ECS::Service")[1]["DeploymentConfiguration"]
    assert linear["Strategy"] == "LINEAR"
    assert linear["LinearConfiguration"] == {"StepPercent": 20, "StepBakeTimeInMinutes": 2}
    for stack in ("canary-service", "linear-service"):
        template = strategies.templates[stack]
        service = the_one(template, "AWS::ECS::Service")[1]
        assert "AdvancedConfiguration" in service["LoadBalancers"][0]
        assert service["DeploymentConfiguration"]["Alarms"]["Rollback"] is True


def test_every_strategy_passes_cfn_lint_and_cdk_nag(strategies):
    # The variant synthesized, so cdk-nag found nothing unacknowledged; the one acknowledgement is the role's.
    report = json.loads((strategies.outdir / "validation-report.json").read_text())["pluginReports"][0]
    assert report["conclusion"] == "success" and report["violations"] == []
    acknowledged = {(f["ruleName"].split("[")[0], f["acknowledgedAt"]) for f in report["suppressedViolations"]}
    for stage in ("canary", "linear"):
        assert ("AwsSolutions-IAM4", f"{stage}-service/Ecs/Service/AlternateTargetRole") in acknowledged
    assert not any(at.startswith("rolling-service/Ecs/Service/AlternateTargetRole") for _, at in acknowledged)
    templates = sorted(str(path) for path in Path(strategies.outdir).glob("*-service.template.json"))
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--format", "parseable", *templates],
                            capture_output=True, text=True)
    assert result.stdout == "" and result.returncode == 0, result.stdout + result.stderr


def test_a_blue_green_service_without_its_alternate_group_is_refused_at_construction():
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_secretsmanager as secretsmanager

    from components.ecs_service import EcsService

    stack = cdk.Stack(cdk.App(), "probe")
    vpc = ec2.Vpc(stack, "Vpc", nat_gateways=0, restrict_default_security_group=False)
    with pytest.raises(ValueError, match="deployment_strategy 'blue_green' needs an alternate target group and a production listener rule"):
        EcsService(
            stack, "Ecs", vpc=vpc, repository=ecr.Repository(stack, "Repo"), image_tag="1.0.0",
            target_group=elbv2.ApplicationTargetGroup(stack, "Tg", vpc=vpc, port=8080, target_type=elbv2.TargetType.IP),
            db_host="db", db_port="5432", db_name="app", db_secret=secretsmanager.Secret(stack, "Secret"),
            desired_count=1, max_count=None, scale_on=None, task_cpu=256, task_memory_mib=512, arm64=True, container_port=8080, stop_timeout_seconds=10,
            log_retention=logs.RetentionDays.ONE_WEEK, container_insights=False, deployment_strategy="blue_green",
            bake_seconds=300, traffic_shift=None, alternate_target_group=None, production_rule=None,
        )
