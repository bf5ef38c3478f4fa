"""The opt-in `github` section: off as shipped, validated whole, every error naming key, value and rule."""
from __future__ import annotations

import copy

import pytest

from config import ConfigError, github_role_name, parse_config
from tests.helpers.synth import cdk_context

ON = {"repository": "my-org/my-service", "account": "111111111111"}


def context(**github) -> dict:
    liftoff = copy.deepcopy(cdk_context()["liftoff"])
    liftoff["github"].update(github)
    return liftoff


def test_shipped_section_is_off_and_valid():
    liftoff = copy.deepcopy(cdk_context()["liftoff"])
    assert liftoff["github"]["repository"] is None
    assert parse_config(liftoff).github is None


def test_the_shipped_section_as_the_cdk_cli_passes_it_is_off():
    # The CLI drops null context values: the app receives the section without `repository` and `account`.
    liftoff = copy.deepcopy(cdk_context()["liftoff"])
    liftoff["github"] = {key: value for key, value in liftoff["github"].items() if value is not None}
    assert "repository" not in liftoff["github"]
    assert parse_config(liftoff).github is None


def test_absent_section_is_off():
    liftoff = copy.deepcopy(cdk_context()["liftoff"])
    del liftoff["github"]
    assert parse_config(liftoff).github is None


def test_switched_on_it_names_each_stage_role():
    config = parse_config(context(**ON))
    github = config.github
    assert (github.owner, github.name, github.sub_formats) == ("my-org", "my-service", ("classic",))
    assert github.stage_access("production").environments == ("production-update", "production")
    assert github.stage_access("staging").branches == ("main",) and github.stage_access("staging").tags == ("v*",)
    assert github.role_arn(config.stage("staging")) == "arn:aws:iam::111111111111:role/liftoff-staging-github-deploy"
    assert github_role_name("production") == "liftoff-production-github-deploy"


def test_a_stage_pinned_elsewhere_uses_its_own_account_and_region():
    liftoff = context(**ON)
    liftoff["stages"]["production"].update(account="222222222222", region="eu-west-1")
    liftoff["stages"]["staging"].update(account="222222222222", region="eu-west-1")  # the shared registry's stage
    config = parse_config(liftoff)
    assert config.github.target(config.stage("production")) == ("222222222222", "eu-west-1")


@pytest.mark.parametrize(
    ("github", "message"),
    [
        ({"repository": "not a repo"}, 'github: repository = "not a repo" is not allowed; expected OWNER/NAME'),
        ({"repository": "my-org/my-service", "account": None}, "github: account = null is not allowed; expected the AWS account of stage 'staging'"),
        ({**ON, "account": "12345"}, 'github: account = "12345" is not allowed; expected a 12-digit AWS account id'),
        ({**ON, "region": "mars"}, 'github: region = "mars" is not allowed'),
        ({**ON, "sub_formats": ["immutable"]}, "github: owner_id = null is not allowed; expected GitHub's numeric id"),
        ({**ON, "sub_formats": ["classic", "classic"]}, "github: sub_formats = [\"classic\", \"classic\"] is not allowed"),
        ({**ON, "sub_formats": ["legacy"]}, "expected a non-empty list of distinct values from: classic, immutable"),
        ({**ON, "owner_id": "123"}, 'github: owner_id = "123" is not allowed'),
        ({**ON, "create_oidc_provider": "yes"}, 'github: create_oidc_provider = "yes" is not allowed; expected true or false'),
        ({**ON, "stages": {"qa": {"branches": ["main"]}}}, 'github: stages = "qa" is not allowed; expected a configured stage: staging, production'),
        ({**ON, "stages": {"staging": {"branches": ["*"]}}}, "a lone * would trust every job"),
        ({**ON, "stages": {"staging": {"branches": ["feature:x"]}}}, 'stages.staging.branches = ["feature:x"] is not allowed'),
        ({**ON, "stages": {"staging": {}}}, "expected at least one branch, tag or environment"),
        ({**ON, "stages": {"staging": {"environment": ["staging"]}}}, "stages.staging: unknown key 'environment'"),
        ({**ON, "token": "x"}, "github: unknown key 'token'"),
    ],
)
def test_bad_github_settings_are_refused_by_name(github, message):
    with pytest.raises(ConfigError) as error:
        parse_config(context(**github))
    assert message in str(error.value)


def test_immutable_format_takes_both_ids():
    github = parse_config(context(**ON, owner_id=123456, repository_id=456789, sub_formats=["classic", "immutable"])).github
    assert (github.owner_id, github.repository_id, github.sub_formats) == (123456, 456789, ("classic", "immutable"))


@pytest.mark.parametrize("region", ["eu-west-9", "us-gov-east-7"])
def test_the_region_is_one_aws_offers(region):
    # Both have the shape of a region name; neither is a region.
    with pytest.raises(ConfigError) as refused:
        parse_config(context(**ON, region=region))
    assert f'github: region = "{region}" is not allowed; expected a region AWS offers (cfn-lint\'s list: ' in str(refused.value)
    assert "eu-west-1" in str(refused.value)
    # Checked while the section is off too: a typo waits for no one to switch it on.
    with pytest.raises(ConfigError, match=f'github: region = "{region}" is not allowed'):
        parse_config(context(region=region))


@pytest.mark.parametrize("region", ["eu-west-1", "ap-southeast-2", "us-east-1"])
def test_a_region_aws_offers_is_accepted(region):
    assert parse_config(context(**ON, region=region)).github.region == region
