"""Config is validated before anything is built; every bad input names stage, key, value and rule."""
from __future__ import annotations

import copy
import json

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


def test_ec2_instance_type_must_match_architecture():
    context = with_setting("staging", "compute", "ec2")
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
