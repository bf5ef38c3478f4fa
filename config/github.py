"""The opt-in `github` section: the CD pipeline's trust (one repository, its OIDC `sub` formats, who
deploys where), validated whole."""
from __future__ import annotations

import re
from typing import Any, Mapping

from config.aws_facts import known_regions
from config.errors import ConfigError, show
from config.keys import PATTERNS
from config.model import CONTEXT_KEY, GithubConfig, GithubStageAccess, StageConfig


GITHUB_REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
# Names GitHub allows for branches, tags and environments, with `*` for a wildcard (IAM StringLike).
# The characters IAM or the `sub` claim would read specially (`:`, `?`, spaces) are refused.
GITHUB_REF_PATTERN = r"^[A-Za-z0-9._/*-]{1,100}$"
GITHUB_SUB_FORMATS = ("classic", "immutable")

_GITHUB_KEYS = ("repository", "account", "region", "owner_id", "repository_id", "sub_formats", "create_oidc_provider", "stages")
_GITHUB_ACCESS_KEYS = ("branches", "tags", "environments")


def _github_fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"github: {key} = {show(value)} is not allowed; expected {allowed}")


def parse_github(raw: Any, stages: tuple[StageConfig, ...]) -> GithubConfig | None:
    """The opt-in CD section, validated whole; `repository: null` (as shipped) means no GitHub OIDC stack is built."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'github' must be an object (or null to leave the CD stack out), got {show(raw)}")
    unknown = sorted(set(raw) - set(_GITHUB_KEYS))
    if unknown:
        raise ConfigError(f"github: unknown key {unknown[0]!r}; allowed keys: {', '.join(_GITHUB_KEYS)}")
    if "stages" not in raw:
        raise ConfigError("github: missing required key 'stages'")
    # The CDK CLI drops context keys whose value is null before the app sees them, so the shipped
    # `"repository": null` arrives as no key at all: both mean off.
    repository = raw.get("repository")
    if repository is not None and (not isinstance(repository, str) or not re.fullmatch(GITHUB_REPOSITORY_PATTERN, repository)):
        raise _github_fail("repository", repository, "OWNER/NAME of the GitHub repository whose workflows deploy, like my-org/my-service, or null (off)")
    for key, (pattern, allowed) in (("account", PATTERNS["account"]), ("region", PATTERNS["region"])):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(pattern, value)):
            raise _github_fail(key, value, allowed)
    if raw.get("region") is not None and raw["region"] not in known_regions():
        raise _github_fail("region", raw["region"], "a region AWS offers (cfn-lint's list: " + ", ".join(known_regions()) + ")")
    ids = {}
    for key in ("owner_id", "repository_id"):
        value = raw.get(key)
        if value is not None and (type(value) is not int or value <= 0):
            raise _github_fail(key, value, "GitHub's numeric id (a positive whole number; `gh api repos/OWNER/NAME` shows both), or null")
        ids[key] = value
    sub_formats = raw.get("sub_formats", ["classic"])
    if (not isinstance(sub_formats, list) or not sub_formats or len(set(sub_formats)) != len(sub_formats)
            or any(value not in GITHUB_SUB_FORMATS for value in sub_formats)):
        raise _github_fail("sub_formats", sub_formats, "a non-empty list of distinct values from: " + ", ".join(GITHUB_SUB_FORMATS))
    if "immutable" in sub_formats and None in ids.values():
        missing = "owner_id" if ids["owner_id"] is None else "repository_id"
        raise _github_fail(missing, None, "GitHub's numeric id: the immutable sub format (repo:OWNER@ID/NAME@ID:...) names both ids")
    create_provider = raw.get("create_oidc_provider", True)
    if type(create_provider) is not bool:
        raise _github_fail("create_oidc_provider", create_provider, "true or false")
    raw_access = raw["stages"]
    if not isinstance(raw_access, Mapping) or not raw_access:
        raise _github_fail("stages", raw_access, "a non-empty object of stage name to {branches, tags, environments}")
    names = [stage.name for stage in stages]
    access = []
    for stage_name, rules in raw_access.items():
        if stage_name not in names:
            raise _github_fail("stages", stage_name, "a configured stage: " + ", ".join(names))
        if not isinstance(rules, Mapping):
            raise _github_fail(f"stages.{stage_name}", rules, "an object with branches, tags and/or environments")
        unknown = sorted(set(rules) - set(_GITHUB_ACCESS_KEYS))
        if unknown:
            raise ConfigError(f"github: stages.{stage_name}: unknown key {unknown[0]!r}; allowed keys: {', '.join(_GITHUB_ACCESS_KEYS)}")
        values = {}
        for key in _GITHUB_ACCESS_KEYS:
            listed = rules.get(key, [])
            if not isinstance(listed, list) or any(not isinstance(v, str) or not re.fullmatch(GITHUB_REF_PATTERN, v) for v in listed):
                raise _github_fail(f"stages.{stage_name}.{key}", listed,
                                   "a list of names (letters, digits, . _ / - and * as a wildcard), like [\"main\"] or [\"v*\"]")
            if "*" in listed:
                raise _github_fail(f"stages.{stage_name}.{key}", listed, "names that do not match everything: a lone * would trust every job")
            values[key] = tuple(listed)
        if not any(values.values()):
            raise _github_fail(f"stages.{stage_name}", rules, "at least one branch, tag or environment allowed to deploy")
        access.append(GithubStageAccess(stage=stage_name, **values))
    if repository is None:
        return None
    by_name = {stage.name: stage for stage in stages}
    for rule in access:
        stage = by_name[rule.stage]
        for key, pinned in (("account", stage.account), ("region", stage.region)):
            if pinned is None and raw.get(key) is None:
                raise _github_fail(key, None, f"the AWS {key} of stage {stage.name!r}'s deploy role "
                                   f"({PATTERNS[key][1]}), since the stage pins no {key} of its own")
    return GithubConfig(repository=repository, access=tuple(access), account=raw.get("account"), region=raw.get("region"), owner_id=ids["owner_id"], repository_id=ids["repository_id"],
                        sub_formats=tuple(sub_formats), create_oidc_provider=create_provider)
