"""components/alarms.py and components/dashboard.py: which metrics page someone, at which thresholds."""
from __future__ import annotations

import copy
import json

import pytest

from tests.helpers.synth import cdk_context

GIB = 1024**3


def alarms_by_id(template: dict) -> dict[str, dict]:
    """Alarm properties by construct id (the logical id without the Alarms prefix and hash)."""
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert logical_id.startswith("Alarms")
            found[logical_id[len("Alarms"):-8]] = resource["Properties"]
    return found


def metric(alarm: dict) -> tuple:
    return alarm["Namespace"], alarm["MetricName"], alarm.get("Statistic") or alarm.get("ExtendedStatistic")


@pytest.fixture(scope="module")
def tuned(synth_variant):
    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"]["alarm_emails"] = ["ops@example.com", "oncall@example.com"]
    context["stages"]["production"]["alarm_thresholds"] = {
        "http_5xx_percent": 2, "latency_p99_ms": 250, "db_cpu_percent": 60, "db_free_storage_gib": 5, "db_connections": 40,
        "release_5xx_percent": 3, "release_unhealthy_targets": 2, "release_alarm_minutes": 1,
    }
    return synth_variant(context)


RELEASE_ALARMS = {"Release5xxShare", "ReleaseUnhealthyTargets"}


def paging(alarms: dict[str, dict]) -> dict[str, dict]:
    return {name: alarm for name, alarm in alarms.items() if name not in RELEASE_ALARMS}


def test_each_stage_has_the_alarms_a_person_acts_on(shipped):
    assert set(alarms_by_id(shipped.templates["staging-service"])) == {
        "Http5xxShare", "UnhealthyTargets", "NoHealthyTargets", "LatencyP99", "DatabaseCpu", "DatabaseFreeStorage", "DatabaseConnections",
        *RELEASE_ALARMS,
    }
    # Hosts only exist in ec2 mode.
    assert set(alarms_by_id(shipped.templates["production-service"])) == set(alarms_by_id(shipped.templates["staging-service"])) | {"HostStatusChecks"}


def test_default_thresholds_and_metrics(shipped):
    alarms = alarms_by_id(shipped.templates["production-service"])
    pinned = {name: (alarm["ComparisonOperator"], alarm["Threshold"], alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"])
              for name, alarm in paging(alarms).items()}
    assert pinned == {
        "Http5xxShare": ("GreaterThanThreshold", 5, 5, 3),
        "UnhealthyTargets": ("GreaterThanOrEqualToThreshold", 1, 3, 3),
        "NoHealthyTargets": ("LessThanThreshold", 1, 2, 2),
        "LatencyP99": ("GreaterThanThreshold", 1, 2, 2),
        "DatabaseCpu": ("GreaterThanThreshold", 80, 3, 3),
        "DatabaseFreeStorage": ("LessThanThreshold", 2 * GIB, 1, 1),
        # 70 % of the default max_connections of a 1 GiB class (112).
        "DatabaseConnections": ("GreaterThanThreshold", 78, 2, 2),
        "HostStatusChecks": ("GreaterThanOrEqualToThreshold", 1, 2, 2),
    }
    assert metric(alarms["UnhealthyTargets"]) == ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum")
    assert metric(alarms["NoHealthyTargets"]) == ("AWS/ApplicationELB", "HealthyHostCount", "Minimum")
    assert alarms["NoHealthyTargets"]["TreatMissingData"] == "breaching"
    assert metric(alarms["LatencyP99"]) == ("AWS/ApplicationELB", "TargetResponseTime", "p99")
    assert metric(alarms["DatabaseCpu"]) == ("AWS/RDS", "CPUUtilization", "Average")
    assert metric(alarms["DatabaseFreeStorage"]) == ("AWS/RDS", "FreeStorageSpace", "Minimum")
    assert metric(alarms["DatabaseConnections"]) == ("AWS/RDS", "DatabaseConnections", "Maximum")
    assert metric(alarms["HostStatusChecks"]) == ("AWS/EC2", "StatusCheckFailed", "Maximum")
    assert alarms["HostStatusChecks"]["Dimensions"][0]["Name"] == "AutoScalingGroupName"
    for name in ("DatabaseCpu", "DatabaseFreeStorage", "DatabaseConnections"):
        # The data stack's instance, imported: the alarm watches this stage's database.
        assert alarms[name]["Dimensions"][0]["Name"] == "DBInstanceIdentifier"
        assert "Fn::ImportValue" in alarms[name]["Dimensions"][0]["Value"]


def test_5xx_share_counts_target_and_load_balancer_errors_over_all_requests(shipped):
    share = alarms_by_id(shipped.templates["staging-service"])["Http5xxShare"]
    queries = {q["Id"]: q for q in share["Metrics"]}
    assert queries["expr_1"]["Expression"] == "IF(requests > 0, 100 * (target5xx + elb5xx) / requests, 0)"
    assert queries["expr_1"]["ReturnData"] is True
    names = {key: q["MetricStat"]["Metric"]["MetricName"] for key, q in queries.items() if key != "expr_1"}
    assert names == {"requests": "RequestCount", "target5xx": "HTTPCode_Target_5XX_Count", "elb5xx": "HTTPCode_ELB_5XX_Count"}
    assert all(q["MetricStat"]["Stat"] == "Sum" and q["MetricStat"]["Period"] == 60 for key, q in queries.items() if key != "expr_1")


def test_every_alarm_notifies_the_stage_topic_on_alarm_and_ok(shipped):
    template = shipped.templates["production-service"]
    topic = next(k for k, v in template["Resources"].items() if v["Type"] == "AWS::SNS::Topic")
    for name, alarm in paging(alarms_by_id(template)).items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], name
        assert alarm["OKActions"] == [{"Ref": topic}], name
        assert alarm["AlarmDescription"].startswith("liftoff production: "), name
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic}
    # No one is subscribed until cdk.json names someone (the shipped file has no addresses).
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]


def test_per_stage_thresholds_and_email_subscriptions(tuned, shipped):
    alarms = alarms_by_id(tuned.templates["production-service"])
    assert {name: alarm["Threshold"] for name, alarm in alarms.items()} == {
        "Http5xxShare": 2, "UnhealthyTargets": 1, "NoHealthyTargets": 1, "LatencyP99": 0.25, "DatabaseCpu": 60,
        "DatabaseFreeStorage": 5 * GIB, "DatabaseConnections": 40, "HostStatusChecks": 1,
        "Release5xxShare": 3, "ReleaseUnhealthyTargets": 2,
    }
    assert (alarms["Release5xxShare"]["EvaluationPeriods"], alarms["Release5xxShare"]["DatapointsToAlarm"]) == (1, 1)
    subscriptions = [r["Properties"] for r in tuned.templates["production-service"]["Resources"].values() if r["Type"] == "AWS::SNS::Subscription"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions) == [("email", "oncall@example.com"), ("email", "ops@example.com")]
    # Another stage keeps its defaults.
    assert alarms_by_id(tuned.templates["staging-service"])["LatencyP99"]["Threshold"] == 1


def test_topic_refuses_publishers_without_tls(shipped):
    policies = [r["Properties"] for r in shipped.templates["staging-service"]["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    (statement,) = [s for p in policies for s in p["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_deployment_alarms_are_the_release_5xx_share_and_unhealthy_targets():
    # The attribute a rollout (ECS deployment alarms, EC2 activation watch) reuses.
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_rds as rds

    from components.alarms import Alarms

    stack = cdk.Stack(cdk.App(), "probe")
    vpc = ec2.Vpc(stack, "Vpc", nat_gateways=0, restrict_default_security_group=False)
    alb = elbv2.ApplicationLoadBalancer(stack, "Alb", vpc=vpc)
    group = elbv2.ApplicationTargetGroup(stack, "Tg", vpc=vpc, port=8080)
    alb.add_listener("Http", port=80, default_target_groups=[group])
    database = rds.DatabaseInstance.from_database_instance_attributes(
        stack, "Db", instance_identifier="db", instance_endpoint_address="db.example.com", port=5432, security_groups=[])
    alarms = Alarms(stack, "Alarms", stage_name="probe", load_balancer=alb, target_groups=[group], database=database,
                    auto_scaling_group_name=None, emails=[], http_5xx_percent=5, latency_p99_ms=1000, db_cpu_percent=80,
                    db_free_storage_gib=2, db_connections=78, release_5xx_percent=1, release_unhealthy_targets=1,
                    release_alarm_minutes=2)
    # Not the paging ones: those wait 3 of 5 minutes, too long to stop a release.
    assert alarms.deployment_alarms == (alarms.release_5xx_share, alarms.release_unhealthy_targets)
    assert alarms.http_5xx_share not in alarms.deployment_alarms
    assert alarms.host_status_checks is None
    assert set(alarms.alarms) == {"Http5xxShare", "UnhealthyTargets", "NoHealthyTargets", "LatencyP99", "DatabaseCpu", "DatabaseFreeStorage",
                                  "DatabaseConnections", "Release5xxShare", "ReleaseUnhealthyTargets"}


def test_dashboard_shows_traffic_targets_compute_and_database(shipped):
    for stack, compute_metrics in (("staging-service", {"CPUUtilization", "MemoryUtilization"}), ("production-service", {"CPUUtilization"})):
        template = shipped.templates[stack]
        (dashboard,) = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
        body = json.dumps(dashboard["DashboardBody"])
        for name in ("RequestCount", "HTTPCode_Target_5XX_Count", "HTTPCode_ELB_5XX_Count", "TargetResponseTime",
                     "HealthyHostCount", "UnHealthyHostCount", "DatabaseConnections", "FreeStorageSpace", *compute_metrics):
            assert f'\\"{name}\\"' in body, (stack, name)
        assert '\\"p50\\"' in body and '\\"p99\\"' in body
        assert template["Outputs"]["DashboardName"]["Value"] == {"Ref": next(k for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Dashboard")}
    production = json.dumps(shipped.templates["production-service"])
    assert "Multi-AZ. The standby is written synchronously" in production
    assert "MemoryUtilization" not in production  # hosts run no CloudWatch agent; the dashboard does not pretend
