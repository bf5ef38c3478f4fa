"""Config is validated before anything is built; every bad input names stage, key, value and rule."""
from __future__ import annotations

import copy
import json
import re

import pytest

from config import ConfigError, check_release_tag, load_config, parse_config

from tests.helpers.synth import CDK_JSON, cdk_context


def shipped_stages() -> dict:
    return copy.deepcopy(cdk_context()["liftoff"])


def with_setting(stage: str, key: str, value) -> dict:
    context = shipped_stages()
    context["stages"][stage][key] = value
    return context


def test_shipped_config_has_staging_and_production():
    config = parse_config(shipped_stages())
    assert {"staging", "production"} <= set(config.stage_names)
    production = config.stage("production")
    assert production.deletion_protection is True
    assert production.db_multi_az is True


def test_config_objects_are_frozen():
    stage = parse_config(shipped_stages()).stage("staging")
    with pytest.raises(AttributeError):
        stage.desired_count = 3  # type: ignore[misc]


def test_load_config_reads_cdk_json():
    assert load_config(CDK_JSON).stage_names == parse_config(shipped_stages()).stage_names


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("desired_count", -1, "stage 'staging': desired_count = -1 is not allowed; expected a whole number from 0 to 50"),
        ("desired_count", "2", 'desired_count = "2" is not allowed; expected a whole number'),
        ("desired_count", True, "desired_count = true is not allowed"),
        ("desired_count", 1.5, "desired_count = 1.5 is not allowed"),
        ("compute", "lambda", 'compute = "lambda" is not allowed; expected one of ecs, ec2'),
        ("db_multi_az", "yes", 'db_multi_az = "yes" is not allowed; expected true or false'),
        ("container_port", 80, "container_port = 80 is not allowed; expected a whole number from 1024 to 65535"),
        ("log_retention_days", 10, "log_retention_days = 10 is not allowed; expected one of 1, 3, 5, 7, 14"),
        ("health_check_path", "healthz", 'health_check_path = "healthz" is not allowed; expected an absolute URL path'),
        ("certificate_arn", "my-cert", 'certificate_arn = "my-cert" is not allowed; expected an ACM certificate ARN'),
        ("task_memory_mib", 4096, "task_memory_mib = 4096 is not allowed; expected a Fargate memory size for 256 CPU units: 512, 1024, 2048"),
        ("db_instance_class", "db.t4g.micro", 'db_instance_class = "db.t4g.micro" is not allowed; expected an instance class without the db. prefix'),
        ("db_max_allocated_storage_gib", 20, None),
    ],
)
def test_bad_values_are_named(key, value, expected):
    context = with_setting("staging", key, value)
    if expected is None:  # a valid edge value parses
        assert getattr(parse_config(context).stage("staging"), key) == value
        return
    with pytest.raises(ConfigError) as error:
        parse_config(context)
    assert expected in str(error.value)
    assert "'staging'" in str(error.value)


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match=r"stage 'production': unknown key 'desired_cnt'; allowed keys: .*desired_count"):
        parse_config(with_setting("production", "desired_cnt", 2))


def test_missing_required_key():
    context = shipped_stages()
    del context["stages"]["staging"]["compute"]
    with pytest.raises(ConfigError, match="stage 'staging': missing required key 'compute'"):
        parse_config(context)


def test_unknown_stage_lists_configured_stages():
    with pytest.raises(ConfigError, match="unknown stage 'prod'; configured stages: staging, production"):
        parse_config(shipped_stages()).stage("prod")


@pytest.mark.parametrize("name", ["Prod", "a", "prod_1", "1prod"])
def test_bad_stage_names(name):
    with pytest.raises(ConfigError, match=f"stage name '{name}' is not allowed"):
        parse_config({"stages": {name: {"compute": "ecs", "desired_count": 1}}})


def test_empty_or_missing_stages():
    for context in ({}, {"stages": {}}, {"stages": []}):
        with pytest.raises(ConfigError, match="'stages' must be a non-empty object"):
            parse_config(context)
    with pytest.raises(ConfigError, match="must be an object"):
        parse_config(None)
    with pytest.raises(ConfigError, match="unknown key 'stage'"):
        parse_config({"stages": {"dev": {"compute": "ecs", "desired_count": 1}}, "stage": "dev"})


def test_account_and_region_go_together():
    with pytest.raises(ConfigError, match="account and region go together"):
        parse_config(with_setting("staging", "account", "123456789012"))
    with pytest.raises(ConfigError, match='account = "12345" is not allowed; expected a 12-digit AWS account id'):
        parse_config(with_setting("staging", "account", "12345"))


def test_shared_registry_must_name_an_owning_stage_in_the_same_environment():
    with pytest.raises(ConfigError, match='share_registry_with = "nope" is not allowed; expected another stage that owns its registry: staging'):
        parse_config(with_setting("production", "share_registry_with", "nope"))
    with pytest.raises(ConfigError, match='share_registry_with = "staging" is not allowed; expected a stage in the same account and region'):
        context = with_setting("production", "account", "123456789012")
        context["stages"]["production"]["region"] = "eu-west-1"
        parse_config(context)


def as_ec2(stage: str = "staging") -> dict:
    context = shipped_stages()
    settings = context["stages"][stage]
    settings["compute"] = "ec2"
    for key in ("task_cpu", "task_memory_mib", "container_insights", "deployment_strategy"):
        settings.pop(key, None)
    return context


def test_ec2_instance_type_must_match_architecture():
    context = as_ec2()
    context["stages"]["staging"]["instance_type"] = "t3.small"
    with pytest.raises(ConfigError, match="instance_type = \"t3.small\" is not allowed; expected an instance type built for cpu_architecture 'arm64'"):
        parse_config(context)
    context["stages"]["staging"]["cpu_architecture"] = "x86_64"
    assert parse_config(context).stage("staging").instance_type == "t3.small"


@pytest.mark.parametrize("tag", ["1.4.2", "v1.4.2", "1.4.2-rc.1", "3f9c2ab", "3f9c2ab" * 5 + "12345"])
def test_release_tags_accepted(tag):
    assert check_release_tag(tag) == tag


@pytest.mark.parametrize("tag", ["latest", "1.4", "main", "", "1.4.2;rm", "ABCDEF1", "3f9c2a", "v1.2.3 "])
def test_mutable_or_malformed_tags_refused(tag):
    with pytest.raises(ConfigError, match=f"image tag {json.dumps(tag)[1:-1]!r}|image tag '{tag}' is not allowed"):
        check_release_tag(tag)


def test_config_command_checks_a_stage_name(capsys, monkeypatch):
    from config import main

    monkeypatch.chdir(CDK_JSON.parent)
    assert main(["production"]) == 0
    assert "production: ec2, 2 running; stacks staging-registry production-data production-service" in capsys.readouterr().out
    assert main(["prod"]) == 2
    assert "unknown stage 'prod'; configured stages: staging, production" in capsys.readouterr().err


@pytest.mark.parametrize("instance_type", ["a1.medium", "t4g.small", "m7gd.large", "c7gn.xlarge", "im4gn.large", "is4gen.medium", "g5g.xlarge", "x2gd.medium"])
def test_every_graviton_family_counts_as_arm64(instance_type):
    context = as_ec2()
    context["stages"]["staging"]["instance_type"] = instance_type
    assert parse_config(context).stage("staging").instance_type == instance_type
    context["stages"]["staging"]["cpu_architecture"] = "x86_64"
    with pytest.raises(ConfigError, match="built for cpu_architecture 'x86_64'"):
        parse_config(context)


def test_instance_type_is_checked_against_the_regions_real_list():
    context = as_ec2()
    context["stages"]["staging"]["instance_type"] = "zz9.mega"
    with pytest.raises(ConfigError, match='stage \'staging\': instance_type = "zz9.mega" is not allowed; expected an EC2 instance type offered in any region'):
        parse_config(context)
    # Offered somewhere, but not in the stage's region: a per-region list, not one global list.
    from config import ec2_instance_types

    somewhere = ec2_instance_types(None) - ec2_instance_types("af-south-1")
    assert somewhere, "cfn-lint's data has region-specific types"
    graviton = sorted(t for t in somewhere if t.split(".")[0].endswith("g"))
    context["stages"]["staging"].update(instance_type=graviton[0], account="123456789012", region="af-south-1")
    with pytest.raises(ConfigError, match=f'instance_type = "{graviton[0]}" is not allowed; expected an EC2 instance type offered in region af-south-1'):
        parse_config(context)
    context["stages"]["staging"]["region"] = "eu-west-9"
    with pytest.raises(ConfigError, match='region = "eu-west-9" is not allowed; expected a region AWS offers'):
        parse_config(context)


def in_region(context: dict, region: str) -> dict:
    for settings in context["stages"].values():
        settings.update(account="123456789012", region=region)
    return context


def cfn_lint_db_findings(region: str, classes: list[str]) -> dict[str, set[str]]:
    """cfn-lint's own verdict on each class for the engine the data stack deploys: rule ids per class."""
    from cfnlint.api import ManualArgs, lint

    from config import POSTGRES_ENGINE_VERSION

    template = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {
        f"Db{i}": {"Type": "AWS::RDS::DBInstance", "Properties": {
            "Engine": "postgres", "EngineVersion": POSTGRES_ENGINE_VERSION, "DBInstanceClass": f"db.{name}",
            "AllocatedStorage": "20", "MasterUsername": "liftoff", "ManageMasterUserPassword": True}}
        for i, name in enumerate(classes)}}
    found: dict[str, set[str]] = {name: set() for name in classes}
    for match in lint(json.dumps(template), config=ManualArgs(regions=[region])):
        found[classes[int(match.path[1][2:])]].add(match.rule.id)
    return found


# Per region: classes cfn-lint refuses for PostgreSQL 17.6 (E3062: t2, m3, r4 ...; E3025: not offered in the
# region) and classes it accepts. Config must refuse and accept exactly the same ones.
DB_CLASS_CASES = {
    "us-east-1": {"refused": ["t2.micro", "m3.medium", "r4.large", "m4.large"], "accepted": ["t4g.micro", "m7g.large", "r6g.large"]},
    "eu-west-1": {"refused": ["t2.micro", "r4.large", "m9g.large"], "accepted": ["t4g.micro", "t3.micro", "m6g.large"]},
    "af-south-1": {"refused": ["t2.micro", "m6gd.large"], "accepted": ["t4g.micro", "t3.small"]},
}


@pytest.mark.parametrize("region", sorted(DB_CLASS_CASES))
def test_database_class_agrees_with_cfn_lint_for_the_region_and_engine_version(region):
    cases = DB_CLASS_CASES[region]
    lint = cfn_lint_db_findings(region, cases["refused"] + cases["accepted"])
    for name in cases["refused"]:
        assert lint[name] & {"E3025", "E3062"}, f"cfn-lint accepts {name} in {region}: pick another refused class"
        with pytest.raises(ConfigError) as refused:
            parse_config(in_region(with_setting("staging", "db_instance_class", name), region))
        assert (f'stage \'staging\': db_instance_class = "{name}" is not allowed; expected an instance class '
                f"RDS for PostgreSQL 17.6 offers in region {region}, like t4g.micro") in str(refused.value)
    for name in cases["accepted"]:
        assert lint[name] == set(), f"cfn-lint refuses {name} in {region}: {lint[name]}"
        assert parse_config(in_region(with_setting("staging", "db_instance_class", name), region)).stage("staging").db_instance_class == name


def test_database_class_without_a_region_is_checked_against_every_region():
    with pytest.raises(ConfigError, match='db_instance_class = "zz9.mega" is not allowed; expected an instance class RDS for '
                                          "PostgreSQL 17.6 offers in any region"):
        parse_config(with_setting("staging", "db_instance_class", "zz9.mega"))
    with pytest.raises(ConfigError, match='db_instance_class = "t2.micro" is not allowed'):
        parse_config(with_setting("staging", "db_instance_class", "t2.micro"))
    # Offered in some regions only: accepted where the stage names no region.
    assert parse_config(with_setting("staging", "db_instance_class", "m9g.large")).stage("staging").db_instance_class == "m9g.large"


def test_config_checks_the_engine_version_the_data_stack_deploys():
    from components.database import POSTGRES_VERSION
    from config import POSTGRES_ENGINE_VERSION

    assert POSTGRES_VERSION.postgres_full_version == POSTGRES_ENGINE_VERSION


@pytest.mark.parametrize(("stage", "key", "value", "mode"), [
    ("production", "task_cpu", 256, "ecs"),
    ("production", "task_memory_mib", 512, "ecs"),
    ("production", "container_insights", True, "ecs"),
    ("staging", "instance_type", "t4g.small", "ec2"),
    ("staging", "ami_id", "ami-0123456789abcdef0", "ec2"),
])
def test_a_key_without_effect_in_the_compute_mode_names_the_mode_that_uses_it(stage, key, value, mode):
    compute = shipped_stages()["stages"][stage]["compute"]
    with pytest.raises(ConfigError, match=f"stage '{stage}': {key} has no effect with compute '{compute}'; only compute '{mode}' uses it"):
        parse_config(with_setting(stage, key, value))


def test_whole_numbers_written_with_a_decimal_point_count_as_whole(tmp_path, monkeypatch):
    # The CDK CLI reads cdk.json with JavaScript (one number type): the app sees 2 for 2.0. Python's
    # reader (python -m config, the release tool) must judge it the same way; 2.5 is refused by both.
    assert parse_config(with_setting("production", "desired_count", 2.0)).stage("production").desired_count == 2
    assert type(parse_config(with_setting("production", "desired_count", 2.0)).stage("production").desired_count) is int
    context = with_setting("staging", "alarm_thresholds", {"http_5xx_percent": 3.0})
    assert parse_config(context).stage("staging").alarm_thresholds.http_5xx_percent == 3
    with pytest.raises(ConfigError, match="desired_count = 2.5 is not allowed"):
        parse_config(with_setting("production", "desired_count", 2.5))
    document = json.loads(CDK_JSON.read_text())
    text = json.dumps(document).replace('"desired_count": 2,', '"desired_count": NaN,')
    (tmp_path / "cdk.json").write_text(text)
    with pytest.raises(ConfigError, match="no readable context.liftoff"):
        load_config(tmp_path / "cdk.json")


def test_domain_name_needs_its_hosted_zone():
    context = with_setting("production", "domain_name", "app.example.com")
    with pytest.raises(ConfigError, match="stage 'production': domain_name 'app.example.com' needs hosted_zone_id too"):
        parse_config(context)
    context["stages"]["production"].update(hosted_zone_id="Z0123456789ABCDEFGHIJ", hosted_zone_name="example.org")
    with pytest.raises(ConfigError, match='domain_name = "app.example.com" is not allowed; expected the zone\'s name or a name under it'):
        parse_config(context)
    context["stages"]["production"]["hosted_zone_name"] = "example.com"
    stage = parse_config(context).stage("production")
    assert stage.serves_https and stage.warnings() == ()
    with pytest.raises(ConfigError, match='hosted_zone_id = "Z0123456789ABCDEFGHIJ" is not allowed; expected no hosted zone without domain_name'):
        parse_config(with_setting("production", "hosted_zone_id", "Z0123456789ABCDEFGHIJ"))
    with pytest.raises(ConfigError, match='domain_name = "App.example.com." is not allowed; expected a lowercase DNS name'):
        parse_config(with_setting("production", "domain_name", "App.example.com."))


def test_a_protected_stage_without_https_warns_and_still_parses():
    config = parse_config(shipped_stages())
    (warning,) = config.stage("production").warnings()
    assert "stage 'production' is protected (deletion_protection: true) but serves plain HTTP" in warning
    assert config.stage("staging").warnings() == ()
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"
    assert parse_config(with_setting("production", "certificate_arn", arn)).stage("production").warnings() == ()


def test_alarm_settings_are_checked():
    stage = parse_config(shipped_stages()).stage("production")
    assert stage.alarm_emails == ()
    assert (stage.alarm_thresholds.http_5xx_percent, stage.alarm_thresholds.latency_p99_ms) == (5, 1000)
    # 70 % of PostgreSQL's default limit for 1 GiB of memory (112).
    assert stage.db_connections_alarm_threshold == 78
    context = with_setting("production", "alarm_emails", ["ops@example.com", "oncall@example.com"])
    context["stages"]["production"]["alarm_thresholds"] = {"latency_p99_ms": 400, "db_connections": 50}
    stage = parse_config(context).stage("production")
    assert stage.alarm_emails == ("ops@example.com", "oncall@example.com")
    assert (stage.alarm_thresholds.latency_p99_ms, stage.db_connections_alarm_threshold) == (400, 50)
    with pytest.raises(ConfigError, match='alarm_emails = \\["ops"\\] is not allowed; expected email addresses like ops@example.com'):
        parse_config(with_setting("production", "alarm_emails", ["ops"]))
    with pytest.raises(ConfigError, match="unknown key 'alarm_thresholds.cpu'; allowed keys: http_5xx_percent"):
        parse_config(with_setting("production", "alarm_thresholds", {"cpu": 1}))
    with pytest.raises(ConfigError, match="alarm_thresholds.http_5xx_percent = 0 is not allowed; expected a whole number from 1 to 100"):
        parse_config(with_setting("production", "alarm_thresholds", {"http_5xx_percent": 0}))
    with pytest.raises(ConfigError, match="alarm_thresholds.db_free_storage_gib = 20 is not allowed; expected less than db_allocated_storage_gib"):
        parse_config(with_setting("production", "alarm_thresholds", {"db_free_storage_gib": 20}))


@pytest.mark.parametrize("key", ["alb_access_logs", "enhanced_monitoring"])
def test_paid_switches_are_booleans_and_off_by_default(key):
    assert getattr(parse_config(shipped_stages()).stage("production"), key) is False
    with pytest.raises(ConfigError, match=f'{key} = "yes" is not allowed; expected true or false'):
        parse_config(with_setting("production", key, "yes"))


def test_access_logs_need_a_pinned_region():
    with pytest.raises(ConfigError, match="alb_access_logs = true is not allowed; expected false on a stage without account and region"):
        parse_config(with_setting("production", "alb_access_logs", True))
    context = with_setting("production", "alb_access_logs", True)
    context["stages"]["production"].update(account="123456789012", region="eu-west-1")
    context["stages"]["staging"].update(account="123456789012", region="eu-west-1")
    assert parse_config(context).stage("production").alb_access_logs is True


def test_config_command_prints_the_plain_http_warning(capsys, monkeypatch):
    from config import main

    monkeypatch.chdir(CDK_JSON.parent)
    assert main(["production"]) == 0
    err = capsys.readouterr().err
    assert err.count("serves plain HTTP") == 1


def test_a_class_whose_connection_limit_cannot_be_estimated_needs_an_explicit_threshold():
    # db.x2g exists only in RDS: AWS's EC2 instance data has no x2g type to take the memory from.
    context = with_setting("staging", "db_instance_class", "x2g.large")
    with pytest.raises(ConfigError, match="stage 'staging': cannot estimate the connection limit of db_instance_class 'x2g.large' .*; set alarm_thresholds.db_connections"):
        parse_config(context)
    context["stages"]["staging"]["alarm_thresholds"] = {"db_connections": 100}
    assert parse_config(context).stage("staging").db_connections_alarm_threshold == 100


def test_every_postgres_class_but_x2g_has_an_estimated_connection_limit():
    from config import db_connections_limit, rds_postgres_instance_classes

    classes = rds_postgres_instance_classes(None)
    estimated = {c: db_connections_limit(c) for c in classes if not c.startswith("x2g.")}
    assert estimated["t4g.micro"] == 112 and estimated["t4g.medium"] == 450 and estimated["r6g.large"] == 1802
    assert all(0 < limit <= 5000 for limit in estimated.values())
    assert len(estimated) > 200


def test_a_null_value_counts_as_absent_as_it_does_at_synth():
    # At synth the context reaches app.py through jsii, which drops every key whose value is null;
    # python -m config and the release tool must see the same thing.
    context = with_setting("production", "alarm_emails", None)
    context["stages"]["production"]["certificate_arn"] = None
    assert parse_config(context).stage("production") == parse_config(shipped_stages()).stage("production")
    context = shipped_stages()
    assert context["github"]["repository"] is None
    del context["github"]["repository"]
    assert parse_config(context).github is None  # absent, like the shipped null: no CD stack


# Release shape: how a host switches, how long the old version stays warm, how ECS deploys.

def test_shipped_ec2_stage_activates_with_two_slots_and_fits_two_containers():
    production = parse_config(shipped_stages()).stage("production")
    assert production.activation == "slots"
    assert production.bake_seconds > 0


@pytest.mark.parametrize("key, value", [
    ("activation", "blue"), ("activation", True), ("bake_seconds", -1), ("bake_seconds", 3601),
    ("container_memory_mib", 64), ("container_memory_mib", 512.5),
])
def test_release_shape_values_are_checked(key, value):
    with pytest.raises(ConfigError, match=rf"stage 'production': {key} = {json.dumps(value)} is not allowed"):
        parse_config(with_setting("production", key, value))


def test_deployment_strategy_is_an_ecs_choice():
    with pytest.raises(ConfigError, match="deployment_strategy = \"waves\" is not allowed; expected one of rolling, blue_green"):
        parse_config(with_setting("staging", "deployment_strategy", "waves"))
    with pytest.raises(ConfigError, match="deployment_strategy has no effect with compute 'ec2'"):
        parse_config(with_setting("production", "deployment_strategy", "blue_green"))
    with pytest.raises(ConfigError, match="activation has no effect with compute 'ecs'"):
        parse_config(with_setting("staging", "activation", "restart"))


def test_shipped_ecs_stage_deploys_blue_green_with_a_whole_minute_bake():
    staging = parse_config(shipped_stages()).stage("staging")
    assert staging.deployment_strategy == "blue_green"
    assert staging.bakes and staging.bake_seconds % 60 == 0 and staging.bake_seconds > 0
    assert staging.traffic_shift is None  # blue/green moves all traffic at once


def with_strategy(strategy: str, **settings) -> dict:
    context = with_setting("staging", "deployment_strategy", strategy)
    if strategy == "rolling":
        del context["stages"]["staging"]["bake_seconds"]  # shipped staging bakes blue/green; rolling has no bake
    context["stages"]["staging"].update(settings)
    return context


def test_canary_and_linear_have_defaults_and_take_a_percent_and_a_step():
    assert parse_config(with_strategy("canary")).stage("staging").traffic_shift == (5.0, 300)
    assert parse_config(with_strategy("linear")).stage("staging").traffic_shift == (20.0, 120)
    stage = parse_config(with_strategy("canary", traffic_shift_percent=2.5, traffic_shift_step_seconds=600)).stage("staging")
    assert stage.traffic_shift == (2.5, 600)
    # 10.0 in cdk.json reaches the app as 10 (JavaScript's one number type): the same stage.
    assert parse_config(with_strategy("linear", traffic_shift_percent=10.0)).stage("staging").traffic_shift == (10.0, 120)


@pytest.mark.parametrize("strategy, settings, message", [
    ("canary", {"traffic_shift_percent": 0}, 'traffic_shift_percent = 0 is not allowed; expected a percentage from 0.1 to 100 in steps of 0.1'),
    ("canary", {"traffic_shift_percent": 2.55}, 'traffic_shift_percent = 2.55 is not allowed; expected a percentage from 0.1 to 100'),
    ("canary", {"traffic_shift_percent": "5"}, 'traffic_shift_percent = "5" is not allowed'),
    ("canary", {"traffic_shift_percent": True}, 'traffic_shift_percent = true is not allowed'),
    ("linear", {"traffic_shift_percent": 2}, "traffic_shift_percent = 2 is not allowed; expected a percentage from 3 to 100 in steps of 0.1 for deployment_strategy 'linear'"),
    ("linear", {"traffic_shift_step_seconds": 90}, "traffic_shift_step_seconds = 90 is not allowed; expected a whole number of minutes in seconds"),
    ("linear", {"traffic_shift_step_seconds": 86460}, "traffic_shift_step_seconds = 86460 is not allowed; expected a whole number from 0 to 86400"),
    ("blue_green", {"bake_seconds": 90}, "bake_seconds = 90 is not allowed; expected a whole number of minutes in seconds .* deployment_strategy 'blue_green'"),
    ("blue_green", {"traffic_shift_percent": 5}, "traffic_shift_percent has no effect with deployment_strategy 'blue_green'; only canary and linear"),
    ("rolling", {"traffic_shift_step_seconds": 60}, "traffic_shift_step_seconds has no effect with deployment_strategy 'rolling'"),
])
def test_traffic_shift_values_are_checked_against_the_strategy(strategy, settings, message):
    with pytest.raises(ConfigError, match=rf"stage 'staging': {message}"):
        parse_config(with_strategy(strategy, **settings))


def test_bake_seconds_with_rolling_is_refused_and_its_default_is_not():
    # The default (300) applies to every stage; only a bake_seconds written for a rolling stage does nothing.
    rolling = parse_config(with_strategy("rolling")).stage("staging")
    assert rolling.bakes is False and rolling.bake_seconds == 300
    for value in (90, 300):
        with pytest.raises(ConfigError) as refused:
            parse_config(with_strategy("rolling", bake_seconds=value))
        assert (f"stage 'staging': bake_seconds = {value} is not allowed; expected no bake_seconds with deployment_strategy "
                "'rolling' (a rolling deployment keeps no previous version to bake: the key has no effect); remove it, "
                "or set deployment_strategy to blue_green, canary or linear") == str(refused.value)
    # Not set at all, deployment_strategy defaults to rolling too.
    context = with_strategy("rolling", bake_seconds=120)
    del context["stages"]["staging"]["deployment_strategy"]
    with pytest.raises(ConfigError, match="bake_seconds = 120 is not allowed; expected no bake_seconds with deployment_strategy 'rolling'"):
        parse_config(context)
    for strategy in ("blue_green", "canary", "linear"):
        assert parse_config(with_strategy(strategy, bake_seconds=120)).stage("staging").bake_seconds == 120
    # ec2 hosts bake in both activations (restart still watches the release alarms for bake_seconds).
    assert parse_config(with_setting("production", "bake_seconds", 120)).stage("production").bake_seconds == 120
    context = with_setting("production", "bake_seconds", 120)
    context["stages"]["production"]["activation"] = "restart"
    assert parse_config(context).stage("production").bake_seconds == 120


def test_ec2_refuses_ecs_strategy_keys():
    with pytest.raises(ConfigError, match="traffic_shift_percent has no effect with compute 'ec2'"):
        parse_config(with_setting("production", "traffic_shift_percent", 5))


def test_release_alarm_thresholds_default_to_express_modes_bar_and_are_checked():
    thresholds = parse_config(shipped_stages()).stage("staging").alarm_thresholds
    assert (thresholds.release_5xx_percent, thresholds.release_unhealthy_targets, thresholds.release_alarm_minutes) == (1, 1, 2)
    context = with_setting("staging", "alarm_thresholds", {"release_5xx_percent": 3, "release_alarm_minutes": 1})
    assert parse_config(context).stage("staging").alarm_thresholds.release_5xx_percent == 3
    with pytest.raises(ConfigError, match="alarm_thresholds.release_alarm_minutes = 6 is not allowed; expected a whole number from 1 to 5"):
        parse_config(with_setting("staging", "alarm_thresholds", {"release_alarm_minutes": 6}))
    with pytest.raises(ConfigError, match="alarm_thresholds.release_unhealthy_targets = 0 is not allowed"):
        parse_config(with_setting("staging", "alarm_thresholds", {"release_unhealthy_targets": 0}))


def test_two_slots_need_memory_for_two_containers_and_the_host():
    context = with_setting("production", "container_memory_mib", 1024)  # t4g.small: 2048 MiB
    with pytest.raises(ConfigError) as refused:
        parse_config(context)
    message = str(refused.value)
    assert "container_memory_mib = 1024 is not allowed; expected at most 768 MiB" in message
    assert "t4g.small has 2048 MiB" in message and "activation: restart" in message
    # One container in place fits where two do not.
    context["stages"]["production"]["activation"] = "restart"
    assert parse_config(context).stage("production").activation == "restart"


def test_a_larger_host_holds_two_slots():
    context = with_setting("production", "container_memory_mib", 1024)
    context["stages"]["production"]["instance_type"] = "t4g.medium"
    assert parse_config(context).stage("production").container_memory_mib == 1024


def test_restart_still_needs_room_for_one_container():
    context = with_setting("production", "activation", "restart")
    context["stages"]["production"]["container_memory_mib"] = 2048
    with pytest.raises(ConfigError, match="at most 1536 MiB: instance_type t4g.small has 2048 MiB and must hold the container"):
        parse_config(context)


@pytest.mark.parametrize("instance_type, mib, architectures", [
    ("t4g.nano", 512, ("arm64",)), ("t4g.small", 2048, ("arm64",)), ("m7g.large", 8192, ("arm64",)),
    ("c7g.2xlarge", 16384, ("arm64",)), ("m7g.metal", 262144, ("arm64",)), ("t3.small", 2048, ("x86_64",)), ("t2.micro", 1024, ("i386", "x86_64")),
    # The families a hand table got wrong: AWS's own figures.
    ("g5g.xlarge", 8192, ("arm64",)), ("inf1.xlarge", 8192, ("x86_64",)), ("d3en.xlarge", 16384, ("x86_64",)),
    ("zz9.mega", None, ()),
])
def test_instance_facts_come_from_aws_data(instance_type, mib, architectures):
    from config import ec2_instance_architectures, ec2_instance_memory_mib

    assert ec2_instance_memory_mib(instance_type) == mib
    assert ec2_instance_architectures(instance_type) == architectures


@pytest.mark.parametrize("instance_type, architecture, memory, container, fits", [
    # Two 4 GiB containers and the host need 8704 MiB: g5g.xlarge has 8 GiB, not the 16 a table once said.
    ("g5g.xlarge", "arm64", 8192, 4096, 3840),
    ("inf1.xlarge", "x86_64", 8192, 4096, 3840),
    ("d3en.xlarge", "x86_64", 16384, 8192, 7936),
])
def test_slots_are_refused_where_two_containers_do_not_fit_by_aws_memory(instance_type, architecture, memory, container, fits):
    context = with_setting("production", "instance_type", instance_type)
    context["stages"]["production"].update(cpu_architecture=architecture, container_memory_mib=container)
    with pytest.raises(ConfigError) as refused:
        parse_config(context)
    assert (f"stage 'production': container_memory_mib = {container} is not allowed; expected at most {fits} MiB: "
            f"instance_type {instance_type} has {memory} MiB and must hold two containers side by side") in str(refused.value)
    context["stages"]["production"]["activation"] = "restart"
    assert parse_config(context).stage("production").container_memory_mib == container
    context["stages"]["production"].update(activation="slots", container_memory_mib=fits)
    assert parse_config(context).stage("production").container_memory_mib == fits


def test_a_type_aws_data_does_not_describe_or_a_mac_is_refused():
    context = with_setting("production", "instance_type", "p3.2xlarge")  # offered (cfn-lint), not described (moto)
    context["stages"]["production"]["cpu_architecture"] = "x86_64"
    with pytest.raises(ConfigError, match='instance_type = "p3.2xlarge" is not allowed; expected an instance type whose memory and architecture AWS\'s instance data lists'):
        parse_config(context)
    context["stages"]["production"]["instance_type"] = "mac2.metal"
    with pytest.raises(ConfigError, match='instance_type = "mac2.metal" is not allowed; expected a Linux instance type'):
        parse_config(context)


# The schema's rollback window: contract steps wait while a version inside it needs the old shape.

def test_rollback_window_defaults_to_the_last_two_releases():
    staging = parse_config(shipped_stages()).stage("staging")
    assert (staging.rollback_window.releases, staging.rollback_window.days) == (2, None)


@pytest.mark.parametrize("value, expected", [
    ({"releases": 0}, (0, None)), ({"releases": 5}, (5, None)), ({"days": 14}, (None, 14)), ({"days": 14.0}, (None, 14)),
])
def test_rollback_window_is_a_release_count_or_days(value, expected):
    window = parse_config(with_setting("staging", "rollback_window", value)).stage("staging").rollback_window
    assert (window.releases, window.days) == expected


@pytest.mark.parametrize("value, says", [
    ({"releases": 2, "days": 3}, 'rollback_window = {"releases": 2, "days": 3} is not allowed; expected an object with exactly one key'),
    ({"weeks": 2}, 'rollback_window = {"weeks": 2} is not allowed'),
    (3, "rollback_window = 3 is not allowed"),
    ({"releases": -1}, "rollback_window.releases = -1 is not allowed; expected a whole number from 0 to 50"),
    ({"releases": 51}, "rollback_window.releases = 51 is not allowed"),
    ({"days": 366}, "rollback_window.days = 366 is not allowed; expected a whole number from 0 to 365"),
    ({"days": True}, "rollback_window.days = true is not allowed"),
    ({"days": 1.5}, "rollback_window.days = 1.5 is not allowed"),
])
def test_rollback_window_values_are_checked(value, says):
    with pytest.raises(ConfigError, match=re.escape(f"stage 'staging': {says}")):
        parse_config(with_setting("staging", "rollback_window", value))

# --- dynamic scaling (max_count + scale_on) ---------------------------------------------------------

def with_scaling(stage: str, **settings) -> dict:
    context = shipped_stages()
    context["stages"][stage].update(settings)
    return context


def test_scaling_is_off_by_default():
    for stage in parse_config(shipped_stages()).stages:
        assert stage.max_count is None and stage.scale_on is None and not stage.scales
        assert stage.ceiling == stage.desired_count


@pytest.mark.parametrize("stage", ["staging", "production"])
@pytest.mark.parametrize(("metric", "target"), [("requests_per_target", 200), ("cpu_percent", 60)])
def test_scaling_parses_in_both_modes(stage, metric, target):
    extra = {"deployment_strategy": "rolling"} if stage == "staging" else {}
    context = with_scaling(stage, desired_count=2, max_count=6, scale_on={metric: target}, **extra)
    if extra:
        del context["stages"][stage]["bake_seconds"]
    parsed = parse_config(context).stage(stage)
    assert parsed.scales and parsed.desired_count == 2 and parsed.ceiling == 6
    assert (parsed.scale_on.metric, parsed.scale_on.target) == (metric, target)


@pytest.mark.parametrize(("settings", "expected"), [
    # the ceiling must be above the floor
    ({"desired_count": 2, "max_count": 2}, r"stage 'production': max_count = 2 is not allowed; expected more than desired_count \(2\)"),
    ({"desired_count": 3, "max_count": 1}, r"max_count = 1 is not allowed; expected more than desired_count \(3\)"),
    ({"max_count": 51}, r"max_count = 51 is not allowed; expected a whole number from 1 to 50"),
    ({"max_count": 4.5}, r"max_count = 4.5 is not allowed; expected a whole number from 1 to 50"),
    ({"max_count": True}, r"max_count = true is not allowed"),
    ({"max_count": "4"}, r'max_count = "4" is not allowed'),
    # a floor of zero never sends the metric that would scale it out
    ({"desired_count": 0, "max_count": 3}, r"desired_count = 0 is not allowed; expected at least 1 when max_count is set"),
    ({"scale_on": {"requests_per_target": 9}}, r"scale_on.requests_per_target = 9 is not allowed; expected a whole number from 10 to 100000"),
    ({"scale_on": {"cpu_percent": 95}}, r"scale_on.cpu_percent = 95 is not allowed; expected a whole number from 10 to 90"),
    ({"scale_on": {"cpu_percent": 60.5}}, r"scale_on.cpu_percent = 60.5 is not allowed"),
    ({"scale_on": {"memory_percent": 60}}, r'scale_on = \{"memory_percent": 60\} is not allowed; expected an object with exactly one target: '
                                           r'\{"requests_per_target": 10-100000\} or \{"cpu_percent": 10-90\}'),
    ({"scale_on": {"cpu_percent": 60, "requests_per_target": 200}}, r"scale_on = .* expected an object with exactly one target"),
    ({"scale_on": {}}, r"scale_on = \{\} is not allowed"),
    ({"scale_on": 60}, r"scale_on = 60 is not allowed"),
])
def test_bad_scaling_values_are_named(settings, expected):
    base = {"desired_count": 2, "max_count": 4, "scale_on": {"cpu_percent": 60}}
    with pytest.raises(ConfigError, match=expected):
        parse_config(with_scaling("production", **{**base, **settings}))


@pytest.mark.parametrize(("settings", "missing"), [
    ({"max_count": 4}, "scale_on"),
    ({"scale_on": {"cpu_percent": 60}}, "max_count"),
])
def test_max_count_and_scale_on_go_together(settings, missing):
    with pytest.raises(ConfigError, match=rf"stage 'staging': dynamic scaling needs both max_count and scale_on; {missing} is missing"):
        parse_config(with_scaling("staging", **settings))


def test_config_command_prints_the_floor_and_the_ceiling(capsys, monkeypatch, tmp_path):
    from config import main

    document = json.loads(CDK_JSON.read_text())
    document["context"]["liftoff"]["stages"]["production"].update(max_count=5, scale_on={"requests_per_target": 300})
    (tmp_path / "cdk.json").write_text(json.dumps(document))
    monkeypatch.chdir(tmp_path)
    assert main(["production"]) == 0
    assert "production: ec2, 2-5 running;" in capsys.readouterr().out


def test_request_count_tracking_needs_one_target_group_on_ecs():
    # blue/green, canary and linear move traffic between two target groups; the metric names one.
    with pytest.raises(ConfigError, match=r"stage 'staging': scale_on = \{\"requests_per_target\": 200\} is not allowed; "
                                          r"expected \{\"cpu_percent\": N\} with deployment_strategy 'blue_green'"):
        parse_config(with_scaling("staging", deployment_strategy="blue_green", max_count=4, scale_on={"requests_per_target": 200}))
    assert parse_config(with_scaling("staging", deployment_strategy="blue_green", max_count=4, scale_on={"cpu_percent": 60})).stage("staging").scales


# --- numbers beyond a double (1e400): synth and python -m config judge them alike ------------------------

def cdk_json_with(tmp_path, stage: str, key: str, text: str):
    """A copy of cdk.json where stage's key is written as `text`, and the context as the CDK CLI hands it
    to the app: JavaScript reads the number as Infinity, JSON.stringify sends null, jsii drops the key."""
    document = json.loads(CDK_JSON.read_text())
    settings = document["context"]["liftoff"]["stages"][stage]
    path = key.split(".")
    for part in path[:-1]:
        settings = settings.setdefault(part, {})
    settings[path[-1]] = "BEYOND"
    (tmp_path / "cdk.json").write_text(json.dumps(document).replace('"BEYOND"', text))
    received = copy.deepcopy(document["context"]["liftoff"])
    settings = received["stages"][stage]
    for part in path[:-1]:
        settings = settings[part]
    del settings[path[-1]]
    return tmp_path / "cdk.json", received


@pytest.mark.parametrize("stage, key, text, allowed", [
    ("production", "desired_count", "1e400", "a whole number from 0 to 50"),  # required: synth said "missing"
    ("staging", "bake_seconds", "-1e400", "a whole number from 0 to 3600"),  # optional: synth took the default
    ("staging", "desired_count", "1" + "0" * 400, "a whole number from 0 to 50"),  # an integer JavaScript makes Infinity
    ("staging", "alarm_thresholds.latency_p99_ms", "2e308", "a whole number from 10 to 60000"),
])
def test_a_number_beyond_a_double_is_refused_by_both_readers_alike(tmp_path, stage, key, text, allowed):
    from config import parse_cli_context

    path, received = cdk_json_with(tmp_path, stage, key, text)
    message = f"stage '{stage}': {key} = {text} is not allowed; expected {allowed}"
    with pytest.raises(ConfigError) as by_config:
        load_config(path)
    with pytest.raises(ConfigError) as by_synth:
        parse_cli_context(received, path)
    assert str(by_config.value) == str(by_synth.value) == message


def test_the_cli_reader_leaves_values_it_received_alone(tmp_path):
    from config import parse_cli_context

    path, received = cdk_json_with(tmp_path, "staging", "bake_seconds", "1e400")
    received["stages"]["staging"]["bake_seconds"] = 120  # given with -c: the CLI's value is the one deployed
    assert parse_cli_context(received, path).stage("staging").bake_seconds == 120
    # No cdk.json beside the app (built in-process): the context is all there is.
    assert parse_cli_context(shipped_stages(), tmp_path / "none.json") == parse_config(shipped_stages())
    # Big but finite numbers are read as JavaScript reads them (rounded beyond 2**53), refused alike.
    path, received = cdk_json_with(tmp_path, "staging", "desired_count", "9007199254740993")
    with pytest.raises(ConfigError, match="desired_count = 9007199254740992 is not allowed"):
        load_config(path)


def test_synth_through_the_cdk_cli_refuses_1e400_as_python_m_config_does(tmp_path):
    from tests.test_app import cli_synth

    synth, config = cli_synth(tmp_path, "1e400")
    message = "stage 'production': desired_count = 1e400 is not allowed; expected a whole number from 0 to 50"
    assert synth.returncode != 0 and message in synth.stderr, synth.stderr
    assert config.returncode == 2 and message in config.stderr, config.stderr


# --- certificates, Fargate sizes ---------------------------------------------------------------------------

def certificate(region: str) -> str:
    return f"arn:aws:acm:{region}:123456789012:certificate/0a1b2c3d-0000-1111-2222-333344445555"


def test_a_certificate_from_another_region_is_refused_naming_both_regions():
    context = in_region(with_setting("production", "certificate_arn", certificate("us-east-1")), "eu-west-1")
    with pytest.raises(ConfigError) as refused:
        parse_config(context)
    assert str(refused.value) == (
        f'stage \'production\': certificate_arn = "{certificate("us-east-1")}" is not allowed; expected a certificate in '
        "the stage's region eu-west-1; this one is in us-east-1 (ACM certificates are regional: request or import one in eu-west-1)")
    context["stages"]["production"]["certificate_arn"] = certificate("eu-west-1")
    assert parse_config(context).stage("production").certificate_arn == certificate("eu-west-1")


def test_a_certificate_on_a_stage_without_region_must_name_a_real_region():
    # An environment-agnostic stage deploys where the credentials point: preflight compares then.
    assert parse_config(with_setting("production", "certificate_arn", certificate("ap-south-1"))).stage("production").serves_https
    with pytest.raises(ConfigError, match=r'certificate_arn = ".*:acm:eu-west-9:.*" is not allowed; expected a certificate in a region AWS offers \(eu-west-9 is not one'):
        parse_config(with_setting("production", "certificate_arn", certificate("eu-west-9")))


def fargate_sizes_cfn_lint_accepts() -> dict[int, set[int]]:
    from config import cfn_lint_data

    sizes = {}
    for branch in cfn_lint_data("aws_ecs_taskdefinition", "fargate_cpu_memory.json")["then"]["anyOf"]:
        (cpu,) = branch["properties"]["Cpu"]["then"]["enum"]
        memory = branch["properties"]["Memory"]["then"]
        sizes[int(cpu)] = set(memory["enum"]) if "enum" in memory else set(range(memory["minimum"], memory["maximum"] + 1, memory["multipleOf"]))
    return sizes


def test_fargate_sizes_are_the_documented_ones_and_cfn_lint_agrees():
    from config import FARGATE_CPU_MEMORY

    # The ECS API reference: 8 vCPU takes 16-60 GiB in 4 GiB steps, 16 vCPU 32-120 GiB in 8 GiB steps.
    assert FARGATE_CPU_MEMORY[8192] == tuple(gib * 1024 for gib in range(16, 61, 4))
    assert FARGATE_CPU_MEMORY[16384] == tuple(gib * 1024 for gib in range(32, 121, 8))
    lint = fargate_sizes_cfn_lint_accepts()
    for cpu, memory in FARGATE_CPU_MEMORY.items():
        assert set(memory) == lint[cpu], cpu


@pytest.mark.parametrize("cpu, memory", [(8192, 16384), (8192, 61440), (8192, 32768), (16384, 32768), (16384, 122880), (16384, 65536)])
def test_eight_and_sixteen_vcpu_tasks_are_accepted(cpu, memory):
    context = with_setting("staging", "task_cpu", cpu)
    context["stages"]["staging"]["task_memory_mib"] = memory
    stage = parse_config(context).stage("staging")
    assert (stage.task_cpu, stage.task_memory_mib) == (cpu, memory)


@pytest.mark.parametrize("cpu, memory, allowed", [
    (8192, 18432, "a Fargate memory size for 8192 CPU units: 16384, 20480, 24576"),  # 18 GiB: not a 4 GiB step
    (8192, 65536, "a Fargate memory size for 8192 CPU units: 16384"),
    (16384, 36864, "a Fargate memory size for 16384 CPU units: 32768, 40960"),
    (16384, 131072, "a whole number from 512 to 122880"),
    (32768, 65536, "a whole number from 256 to 16384"),
    (6144, 16384, "one of 256, 512, 1024, 2048, 4096, 8192, 16384"),
])
def test_fargate_sizes_outside_the_table_are_refused(cpu, memory, allowed):
    context = with_setting("staging", "task_cpu", cpu)
    context["stages"]["staging"]["task_memory_mib"] = memory
    with pytest.raises(ConfigError) as refused:
        parse_config(context)
    assert str(refused.value).startswith("stage 'staging': task_")
    assert allowed in str(refused.value)


def test_every_from_config_import_in_the_repository_resolves():
    # config is a package split by what it checks; its __init__ keeps `from config import X` working.
    import ast

    import config
    from tests.helpers.synth import REPO

    wanted = set()
    sources = [REPO / "app.py", *(path for folder in ("components", "stacks", "release", "pipeline", "tools", "tests", "local",
                                                      "bench", "service") for path in (REPO / folder).rglob("*.py"))]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "config" and node.level == 0:
                wanted |= {(alias.name, str(path.relative_to(REPO))) for alias in node.names}
    assert len({name for name, _ in wanted}) > 20
    missing = sorted((name, where) for name, where in wanted if not hasattr(config, name))
    assert missing == []


# The canary on each ec2 host (activation slots): the new slot's share of the host's requests before the flip.

def test_shipped_ec2_stage_runs_the_default_canary_and_ecs_and_restart_have_none():
    from config import Canary

    config = parse_config(shipped_stages())
    assert config.stage("production").canary == Canary(
        percent=10, seconds=20, min_requests=10, max_error_percent=5, max_added_latency_ms=250)
    # ECS shifts traffic with its own deployment_strategy; restart has no second slot.
    assert config.stage("staging").canary is None
    assert parse_config(with_setting("production", "activation", "restart")).stage("production").canary is None


def test_canary_keys_set_every_value_and_zero_percent_turns_it_off():
    context = shipped_stages()
    context["stages"]["production"].update({
        "canary_percent": 50, "canary_seconds": 600, "canary_min_requests": 1, "canary_max_error_percent": 0,
        "canary_max_added_latency_ms": 60000,
    })
    canary = parse_config(context).stage("production").canary
    assert (canary.percent, canary.seconds, canary.min_requests, canary.max_error_percent, canary.max_added_latency_ms) == (
        50, 600, 1, 0, 60000)
    assert parse_config(with_setting("production", "canary_percent", 0)).stage("production").canary.percent == 0
    # 20.0 in cdk.json reaches the app as 20, as every whole number does.
    assert parse_config(with_setting("production", "canary_seconds", 20.0)).stage("production").canary.seconds == 20


@pytest.mark.parametrize("key, value, allowed", [
    ("canary_percent", 51, "a whole number from 0 to 50"),
    ("canary_percent", -1, "a whole number from 0 to 50"),
    ("canary_percent", 2.5, "a whole number from 0 to 50"),
    ("canary_percent", "10", "a whole number from 0 to 50"),
    ("canary_percent", True, "a whole number from 0 to 50"),
    ("canary_seconds", 4, "a whole number from 5 to 600"),
    ("canary_seconds", 601, "a whole number from 5 to 600"),
    ("canary_min_requests", 0, "a whole number from 1 to 100000"),
    ("canary_min_requests", 100001, "a whole number from 1 to 100000"),
    ("canary_max_error_percent", 101, "a whole number from 0 to 100"),
    ("canary_max_error_percent", 0.5, "a whole number from 0 to 100"),
    ("canary_max_added_latency_ms", 0, "a whole number from 1 to 60000"),
    ("canary_max_added_latency_ms", 60001, "a whole number from 1 to 60000"),
])
def test_canary_values_are_checked(key, value, allowed):
    with pytest.raises(ConfigError) as refused:
        parse_config(with_setting("production", key, value))
    assert str(refused.value) == f"stage 'production': {key} = {json.dumps(value)} is not allowed; expected {allowed}"


@pytest.mark.parametrize("key, value", [("canary_percent", 10), ("canary_seconds", 30), ("canary_max_added_latency_ms", 100)])
def test_a_canary_key_on_ecs_is_refused_naming_the_key_its_value_and_why(key, value):
    with pytest.raises(ConfigError) as refused:
        parse_config(with_setting("staging", key, value))
    assert str(refused.value) == (
        f"stage 'staging': {key} = {value} is not allowed; expected no {key} with compute 'ecs' (the canary runs on an "
        "ec2 host's second slot; ECS shifts traffic with its own deployment_strategy: canary or linear, with "
        "traffic_shift_percent); remove it")


def test_a_canary_key_with_restart_is_refused_naming_the_key_its_value_and_why():
    context = with_setting("production", "activation", "restart")
    context["stages"]["production"]["canary_percent"] = 0  # even "off": the key does nothing without a second slot
    with pytest.raises(ConfigError) as refused:
        parse_config(context)
    assert str(refused.value) == (
        "stage 'production': canary_percent = 0 is not allowed; expected no canary_percent with activation 'restart' "
        "(one container is restarted in place: there is no second slot to give a share of the requests to); remove it, "
        "or set activation to slots")
    # The value itself is judged first: an out-of-range value names its range, wherever it is written.
    context["stages"]["production"]["canary_percent"] = 60
    with pytest.raises(ConfigError, match=r"canary_percent = 60 is not allowed; expected a whole number from 0 to 50$"):
        parse_config(context)


def test_a_canary_key_with_slots_written_out_is_accepted():
    context = with_setting("production", "activation", "slots")
    context["stages"]["production"]["canary_seconds"] = 45
    assert parse_config(context).stage("production").canary.seconds == 45
