"""The modelled targets, computed from synthesized templates (no timing in tests)."""
from __future__ import annotations

import pytest

from config import parse_config
from tests.helpers.synth import cdk_context
from tools.report import ReportError, fleet_switch, monthly_cost, rollout_wave, stage_report

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


# --- floor and ceiling (dynamic scaling) -------------------------------------------------------------

@pytest.fixture(scope="module")
def scaling(synth_variant):
    import copy

    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"].update(max_count=5, scale_on={"cpu_percent": 60})
    context["stages"]["staging"].update(desired_count=1, max_count=4, scale_on={"requests_per_target": 200}, deployment_strategy="rolling")
    del context["stages"]["staging"]["bake_seconds"]  # rolling has no bake: config refuses the key
    return context, synth_variant(context)


def test_a_stage_scaled_by_hand_costs_the_same_at_floor_and_ceiling(shipped, config):
    for stage in config.stages:
        report = stage_report(stage, shipped.outdir)
        assert report.max_count == report.desired_count == stage.desired_count
        assert report.monthly_usd_at_ceiling == report.monthly_usd
        assert not any("target-tracking" in part for part in report.monthly_parts)


def test_an_ec2_stage_that_scales_is_priced_at_its_floor_and_its_ceiling(scaling):
    context, synthesis = scaling
    report = stage_report(parse_config(context).stage("production"), synthesis.outdir)
    assert (report.desired_count, report.max_count) == (2, 5)
    floor, ceiling = report.monthly_parts, report.monthly_parts_at_ceiling
    assert floor["EC2 2 x t4g.small"] == round(2 * 730 * 0.0168, 2)
    assert ceiling["EC2 5 x t4g.small"] == round(5 * 730 * 0.0168, 2)
    assert ceiling["EBS gp3 5 x 20 GB"] == round(5 * 20 * 0.08, 2)
    assert ceiling["service public IPv4"] == round(5 * 730 * 0.005, 2)
    # The policy's own two alarms are always there, at either edge.
    assert floor["CloudWatch 2 target-tracking alarms (made by the autoscaler)"] == 0.20
    per_host = round(730 * 0.0168, 2) + round(20 * 0.08, 2) + round(730 * 0.005, 2)
    assert report.monthly_usd_at_ceiling == pytest.approx(report.monthly_usd + 3 * per_host, abs=0.05)


def test_an_ecs_stage_that_scales_is_priced_at_its_floor_and_its_ceiling(scaling):
    context, synthesis = scaling
    report = stage_report(parse_config(context).stage("staging"), synthesis.outdir)
    assert (report.desired_count, report.max_count) == (1, 4)
    fargate = [name for name in report.monthly_parts_at_ceiling if name.startswith("Fargate 4 x")]
    assert fargate, report.monthly_parts_at_ceiling
    assert report.monthly_parts_at_ceiling[fargate[0]] == pytest.approx(4 * report.monthly_parts[fargate[0].replace("4 x", "1 x")], abs=0.02)
    assert report.monthly_usd_at_ceiling > report.monthly_usd


def test_report_command_prints_both_edges(scaling, tmp_path, capsys):
    import json

    from tools.report import main

    context, synthesis = scaling
    document = {"context": {"liftoff": context}}
    (tmp_path / "cdk.json").write_text(json.dumps(document))
    assert main(["--cdk-out", str(synthesis.outdir), "--cdk-json", str(tmp_path / "cdk.json")]) == 0
    out = capsys.readouterr().out
    assert "production (ec2, 2-5 running, scales by traffic)" in out
    assert "always-on list price at the floor (2):" in out
    assert "at the ceiling (5), all month:" in out and "EC2 5 x t4g.small" in out
    assert "staging (ecs, 1-4 running, scales by traffic)" in out


def test_the_readme_scaling_example_figures(synth_variant):
    # README's "scale" section: production with max_count 4 and scale_on requests_per_target 1000.
    import copy

    context = copy.deepcopy(cdk_context()["liftoff"])
    context["stages"]["production"].update(max_count=4, scale_on={"requests_per_target": 1000})
    report = stage_report(parse_config(context).stage("production"), synth_variant(context).outdir)
    assert (report.monthly_usd, report.monthly_usd_at_ceiling) == (91.72, 126.75)


def test_a_fleets_warm_rollback_is_one_flip_whatever_its_size_and_a_switch_grows_with_it():
    fifty, two = fleet_switch(hosts=50, canary_seconds=20), fleet_switch(hosts=2, canary_seconds=20)
    one_at_a_time, waves, warm_before, warm_now = fifty.values()
    # In waves: the canary host alone, then 12 of 50 at once (25 %, rounded down) for the other 49: 5 more.
    assert one_at_a_time == 50 * (6.5 + 20) and waves == (1 + 5) * (6.5 + 20)
    assert warm_before == 30.0 and warm_now == 0.6 == list(two.values())[3]
    assert list(two.values())[:2] == [53.0, 53.0]


def test_the_fleet_model_is_for_hosts_with_slots_only(shipped, config):
    assert stage_report(config.stage("production"), shipped.outdir).fleet_switch  # ec2, activation: slots
    assert stage_report(config.stage("staging"), shipped.outdir).fleet_switch == {}  # ecs
