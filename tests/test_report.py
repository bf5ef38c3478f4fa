"""The modelled targets, computed from synthesized templates (no timing in tests)."""
from __future__ import annotations

import pytest

from config import parse_config
from tests.helpers.synth import cdk_context
from tools.report import ReportError, monthly_cost, rollout_wave, stage_report

MAX_WAVE_SECONDS = 30
MAX_ONE_INSTANCE_MONTHLY_USD = 62


@pytest.fixture(scope="module")
def config():
    return parse_config(cdk_context()["liftoff"])


@pytest.mark.parametrize("stage", ["staging", "production"])
def test_rollout_floor_per_wave_is_at_most_30_seconds(shipped, config, stage):
    report = stage_report(config.stage(stage), shipped.outdir)
    assert report.wave_seconds <= MAX_WAVE_SECONDS, report.wave_parts
    assert report.wave_seconds == sum(report.wave_parts.values())


def test_aws_defaults_model_to_eight_minutes():
    # The same formula on an untuned target group and container gives AWS's 480 s.
    template = {
        "Resources": {
            "Tg": {"Type": "AWS::ElasticLoadBalancingV2::TargetGroup", "Properties": {}},
            "Task": {"Type": "AWS::ECS::TaskDefinition", "Properties": {"ContainerDefinitions": [{}]}},
        }
    }
    assert sum(rollout_wave(template).values()) == 480


def test_one_instance_stage_costs_at_most_62_dollars(shipped, config):
    one_instance = [s for s in config.stages if s.desired_count == 1]
    assert one_instance, "the shipped config has a one-instance stage"
    for stage in one_instance:
        report = stage_report(stage, shipped.outdir)
        assert report.monthly_usd <= MAX_ONE_INSTANCE_MONTHLY_USD, report.monthly_parts
        assert not any("NAT" in part for part in report.monthly_parts)


def test_one_instance_ec2_stage_costs_at_most_62_dollars(synth_variant, tmp_path):
    import copy

    context = copy.deepcopy(cdk_context()["liftoff"])
    staging = context["stages"]["staging"]
    for key in ("task_cpu", "task_memory_mib", "deployment_strategy"):
        staging.pop(key)
    staging.update(compute="ec2", instance_type="t4g.small", desired_count=1)
    synthesis = synth_variant(context)
    report = stage_report(parse_config(context).stage("staging"), synthesis.outdir)
    assert report.compute == "ec2" and report.desired_count == 1
    assert "EC2 1 x t4g.small" in report.monthly_parts and "EBS gp3 1 x 20 GB" in report.monthly_parts
    assert report.monthly_usd <= MAX_ONE_INSTANCE_MONTHLY_USD, report.monthly_parts
    assert report.wave_seconds <= MAX_WAVE_SECONDS


def test_cost_counts_multi_az_and_desired_count(shipped):
    staging = monthly_cost(shipped.templates["staging-data"], shipped.templates["staging-service"])
    production = monthly_cost(shipped.templates["production-data"], shipped.templates["production-service"])
    assert production["EC2 2 x t4g.small"] == round(2 * 730 * 0.0168, 2)
    assert production["RDS db.t4g.micro Multi-AZ"] == 2 * staging["RDS db.t4g.micro"]
    assert production["service public IPv4"] == 2 * staging["service public IPv4"]


def test_unknown_price_is_named(shipped):
    data = {**shipped.templates["staging-data"]}
    data["Resources"] = {
        key: ({**value, "Properties": {**value["Properties"], "DBInstanceClass": "db.x9.huge"}} if value["Type"] == "AWS::RDS::DBInstance" else value)
        for key, value in data["Resources"].items()
    }
    with pytest.raises(ReportError, match="no list price for 'db.x9.huge'"):
        monthly_cost(data, shipped.templates["staging-service"])


def test_alarms_and_dashboard_are_in_the_stage_figures(shipped):
    staging = monthly_cost(shipped.templates["staging-data"], shipped.templates["staging-service"])
    production = monthly_cost(shipped.templates["production-data"], shipped.templates["production-service"])
    # staging: 7 paging alarms and 2 release alarms; each 5xx share reads 3 metrics (requests, target and
    # load balancer 5xx), and blue/green's two target groups double each target-count alarm's metrics.
    assert staging["CloudWatch 9 alarms (16 metrics)"] == 1.60
    # production: one target group, plus the hosts' status-check alarm.
    assert production["CloudWatch 10 alarms (14 metrics)"] == 1.40
    assert staging["CloudWatch dashboard"] == production["CloudWatch dashboard"] == 3.00
