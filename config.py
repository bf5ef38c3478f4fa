"""Stage configuration: parsed once from cdk.json context into frozen, typed objects.

This module is the only place that knows the shape of the `liftoff` context; it imports nothing
from the CDK so the release tool can read the same stages without a synth.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

CONTEXT_KEY = "liftoff"

# Release tags are immutable by policy: a semantic version or a git commit sha. `latest` and other
# moving names are refused everywhere (template parameter, release tool, host scripts) so that any
# running version can be named, found in the registry and started again.
RELEASE_TAG_PATTERN = r"^(v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?|[0-9a-f]{7,40})$"
RELEASE_TAG_DESCRIPTION = "a release tag: a semantic version like 1.4.2 or v1.4.2-rc.1, or a 7-40 character git sha"

COMPUTE_MODES = ("ecs", "ec2")
CPU_ARCHITECTURES = ("arm64", "x86_64")
FARGATE_CPU_MEMORY = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
}
STAGE_NAME_PATTERN = r"^[a-z][a-z0-9-]{1,20}$"
ACCOUNT_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"
CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$"
INSTANCE_CLASS_PATTERN = r"^[a-z][a-z0-9]*\.[a-z0-9]+$"
AMI_ID_PATTERN = r"^ami-[0-9a-f]{8,17}$"


class ConfigError(ValueError):
    """A stage configuration that cannot be deployed; the message names stage, key, value and rule."""


@dataclass(frozen=True)
class StageConfig:
    name: str
    compute: str
    desired_count: int
    account: str | None = None
    region: str | None = None
    cpu_architecture: str = "arm64"
    # ecs: Fargate task size
    task_cpu: int = 256
    task_memory_mib: int = 512
    # ec2: host size and image; an explicit AMI keeps hosts from being replaced by a new AMI release
    instance_type: str = "t4g.small"
    ami_id: str | None = None
    db_instance_class: str = "t4g.micro"
    db_allocated_storage_gib: int = 20
    db_max_allocated_storage_gib: int = 100
    db_multi_az: bool = False
    db_backup_retention_days: int = 7
    deletion_protection: bool = False
    health_check_path: str = "/healthz"
    container_port: int = 8080
    drain_seconds: int = 5
    stop_timeout_seconds: int = 10
    log_retention_days: int = 30
    certificate_arn: str | None = None
    share_registry_with: str | None = None

    @property
    def registry_stage(self) -> str:
        """The stage whose registry stack holds this stage's images."""
        return self.share_registry_with or self.name

    @property
    def registry_stack_name(self) -> str:
        return f"{self.registry_stage}-registry"

    @property
    def data_stack_name(self) -> str:
        return f"{self.name}-data"

    @property
    def service_stack_name(self) -> str:
        return f"{self.name}-service"


GITHUB_REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
# Names GitHub allows for branches, tags and environments, with `*` for a wildcard (IAM StringLike).
# The characters IAM or the `sub` claim would read specially (`:`, `?`, spaces) are refused.
GITHUB_REF_PATTERN = r"^[A-Za-z0-9._/*-]{1,100}$"
GITHUB_SUB_FORMATS = ("classic", "immutable")


@dataclass(frozen=True)
class GithubStageAccess:
    """Which GitHub Actions jobs may take a stage's deploy role: by branch, tag or environment."""

    stage: str
    branches: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class GithubConfig:
    """The CD pipeline's trust: one GitHub repository, its OIDC `sub` formats and who deploys where."""

    repository: str  # owner/name
    access: tuple[GithubStageAccess, ...]
    # Where the deploy roles live for stages that pin no account/region of their own.
    account: str | None
    region: str | None
    # The immutable `sub` format (repositories created or renamed from 2026-07-15 on, or opted in)
    # names owner and repository by their numeric ids too: repo:owner@ID/name@ID:...
    owner_id: int | None = None
    repository_id: int | None = None
    sub_formats: tuple[str, ...] = ("classic",)
    # An account holds one provider per issuer URL; set false where one exists already.
    create_oidc_provider: bool = True

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]

    def stage_access(self, stage: str) -> GithubStageAccess | None:
        for access in self.access:
            if access.stage == stage:
                return access
        return None

    def target(self, stage: StageConfig) -> tuple[str, str]:
        """The account and region a stage's deploy role works in: the stage's own if pinned, else the section's."""
        return (stage.account or self.account, stage.region or self.region)

    def role_arn(self, stage: StageConfig) -> str:
        return f"arn:aws:iam::{self.target(stage)[0]}:role/{github_role_name(stage.name)}"


def github_role_name(stage: str) -> str:
    # A fixed name: the workflow must name the role before it holds any credentials to look it up.
    return f"liftoff-{stage}-github-deploy"


@dataclass(frozen=True)
class LiftoffConfig:
    stages: tuple[StageConfig, ...]
    github: GithubConfig | None = None

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"unknown stage {name!r}; configured stages: {', '.join(self.stage_names)}")

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)


# Allowed values per key: (type, check, what is allowed). Types are exact: JSON true is not a count.
_INT_RANGES = {
    "desired_count": (0, 50),
    "task_cpu": (256, 4096),
    "task_memory_mib": (512, 30720),
    "db_allocated_storage_gib": (20, 65536),
    "db_max_allocated_storage_gib": (20, 65536),
    "db_backup_retention_days": (1, 35),
    "container_port": (1024, 65535),
    "drain_seconds": (0, 3600),
    # The host unit allows systemd 120 s to stop the container; stay below it with room for docker.
    "stop_timeout_seconds": (2, 110),
}
_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
_PATTERNS = {
    "account": (ACCOUNT_PATTERN, "a 12-digit AWS account id"),
    "region": (REGION_PATTERN, "an AWS region name like eu-west-1"),
    "certificate_arn": (CERTIFICATE_ARN_PATTERN, "an ACM certificate ARN"),
    "db_instance_class": (INSTANCE_CLASS_PATTERN, "an instance class without the db. prefix, like t4g.micro"),
    "instance_type": (INSTANCE_CLASS_PATTERN, "an EC2 instance type like t4g.small"),
    "ami_id": (AMI_ID_PATTERN, "an AMI id like ami-0123456789abcdef0"),
    "health_check_path": (r"^/[A-Za-z0-9/_.-]*$", "an absolute URL path like /healthz"),
}
_CHOICES = {
    "compute": COMPUTE_MODES,
    "cpu_architecture": CPU_ARCHITECTURES,
    "log_retention_days": _LOG_RETENTION_DAYS,
}
_BOOLS = ("db_multi_az", "deletion_protection")
_OPTIONAL = ("account", "region", "certificate_arn", "ami_id", "share_registry_with")
_REQUIRED = ("compute", "desired_count")
_KEYS = tuple(f.name for f in fields(StageConfig) if f.name != "name")


def _fail(stage: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"stage {stage!r}: {key} = {json.dumps(value)} is not allowed; expected {allowed}")


def _check_value(stage: str, key: str, value: Any) -> None:
    if value is None and key in _OPTIONAL:
        return
    if key in _INT_RANGES:
        low, high = _INT_RANGES[key]
        if type(value) is not int or not low <= value <= high:
            raise _fail(stage, key, value, f"a whole number from {low} to {high}")
    elif key in _BOOLS:
        if type(value) is not bool:
            raise _fail(stage, key, value, "true or false")
    elif key in _CHOICES:
        if value not in _CHOICES[key] or type(value) is bool:
            raise _fail(stage, key, value, "one of " + ", ".join(str(choice) for choice in _CHOICES[key]))
    elif key in _PATTERNS:
        pattern, allowed = _PATTERNS[key]
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise _fail(stage, key, value, allowed)
    elif key == "share_registry_with":
        if not isinstance(value, str):
            raise _fail(stage, key, value, "the name of another stage")


def _parse_stage(name: str, raw: Any) -> StageConfig:
    if not re.fullmatch(STAGE_NAME_PATTERN, name):
        raise ConfigError(
            f"stage name {name!r} is not allowed; expected lowercase letters, digits and dashes, "
            "starting with a letter, 2-21 characters"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"stage {name!r}: expected an object of settings, got {json.dumps(raw)}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"stage {name!r}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_KEYS))}"
        )
    missing = [key for key in _REQUIRED if key not in raw]
    if missing:
        raise ConfigError(f"stage {name!r}: missing required key {missing[0]!r}")
    for key, value in raw.items():
        _check_value(name, key, value)
    stage = StageConfig(name=name, **raw)
    _check_stage(stage)
    return stage


def _check_stage(stage: StageConfig) -> None:
    if stage.db_max_allocated_storage_gib < stage.db_allocated_storage_gib:
        raise _fail(
            stage.name, "db_max_allocated_storage_gib", stage.db_max_allocated_storage_gib,
            f"at least db_allocated_storage_gib ({stage.db_allocated_storage_gib})",
        )
    if stage.compute == "ecs":
        allowed_memory = FARGATE_CPU_MEMORY.get(stage.task_cpu)
        if allowed_memory is None:
            raise _fail(stage.name, "task_cpu", stage.task_cpu, "one of " + ", ".join(map(str, FARGATE_CPU_MEMORY)))
        if stage.task_memory_mib not in allowed_memory:
            raise _fail(
                stage.name, "task_memory_mib", stage.task_memory_mib,
                f"a Fargate memory size for {stage.task_cpu} CPU units: " + ", ".join(map(str, allowed_memory)),
            )
    graviton = re.match(r"^[a-z]+[0-9]+g", stage.instance_type) is not None
    if stage.compute == "ec2" and graviton != (stage.cpu_architecture == "arm64"):
        raise _fail(
            stage.name, "instance_type", stage.instance_type,
            f"an instance type built for cpu_architecture {stage.cpu_architecture!r}"
            + (" (a Graviton type such as t4g.small)" if stage.cpu_architecture == "arm64" else " (such as t3.small)"),
        )
    if (stage.account is None) != (stage.region is None):
        raise ConfigError(
            f"stage {stage.name!r}: account and region go together; set both for a pinned environment "
            "or neither for an environment-agnostic one"
        )


def parse_config(context: Any) -> LiftoffConfig:
    """Validate the whole `liftoff` context before anything is built; raise ConfigError on the first problem."""
    if not isinstance(context, Mapping):
        raise ConfigError(f"cdk.json context {CONTEXT_KEY!r} must be an object with a 'stages' key")
    unknown = sorted(set(context) - {"stages", "github"})
    if unknown:
        raise ConfigError(f"context {CONTEXT_KEY!r}: unknown key {unknown[0]!r}; allowed keys: github, stages")
    raw_stages = context.get("stages")
    if not isinstance(raw_stages, Mapping) or not raw_stages:
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'stages' must be a non-empty object of stage name to settings")
    stages = tuple(_parse_stage(name, raw) for name, raw in raw_stages.items())
    by_name = {stage.name: stage for stage in stages}
    for stage in stages:
        if stage.share_registry_with is None:
            continue
        owner = by_name.get(stage.share_registry_with)
        if owner is None or owner.name == stage.name or owner.share_registry_with is not None:
            allowed = [s.name for s in stages if s.name != stage.name and s.share_registry_with is None]
            raise _fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                "another stage that owns its registry: " + (", ".join(allowed) or "none configured"),
            )
        if (owner.account, owner.region) != (stage.account, stage.region):
            raise _fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                f"a stage in the same account and region (stage {owner.name!r} is in "
                f"{owner.account or 'any'}/{owner.region or 'any'})",
            )
    github = _parse_github(context["github"], stages) if context.get("github") is not None else None
    return LiftoffConfig(stages=stages, github=github)


_GITHUB_KEYS = ("repository", "account", "region", "owner_id", "repository_id", "sub_formats", "create_oidc_provider", "stages")
_GITHUB_ACCESS_KEYS = ("branches", "tags", "environments")


def _github_fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"github: {key} = {json.dumps(value)} is not allowed; expected {allowed}")


def _parse_github(raw: Any, stages: tuple[StageConfig, ...]) -> GithubConfig | None:
    """The opt-in CD section, validated whole; `repository: null` (as shipped) means no GitHub OIDC stack is built."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'github' must be an object (or null to leave the CD stack out), got {json.dumps(raw)}")
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
    for key, (pattern, allowed) in (("account", _PATTERNS["account"]), ("region", _PATTERNS["region"])):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not re.fullmatch(pattern, value)):
            raise _github_fail(key, value, allowed)
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
                                   f"({_PATTERNS[key][1]}), since the stage pins no {key} of its own")
    return GithubConfig(repository=repository, access=tuple(access), account=raw.get("account"), region=raw.get("region"), owner_id=ids["owner_id"], repository_id=ids["repository_id"],
                        sub_formats=tuple(sub_formats), create_oidc_provider=create_provider)


def load_config(cdk_json: Path) -> LiftoffConfig:
    """Read the stages straight from cdk.json, for tools that run without a synth."""
    try:
        context = json.loads(cdk_json.read_text())["context"][CONTEXT_KEY]
    except FileNotFoundError:
        raise ConfigError(f"{cdk_json} not found; run from the liftoff checkout") from None
    except (KeyError, json.JSONDecodeError) as error:
        raise ConfigError(f"{cdk_json}: no readable context.{CONTEXT_KEY} ({error})") from None
    return parse_config(context)


def check_release_tag(tag: str) -> str:
    if not isinstance(tag, str) or not re.fullmatch(RELEASE_TAG_PATTERN, tag):
        raise ConfigError(f"image tag {tag!r} is not allowed; expected {RELEASE_TAG_DESCRIPTION}")
    return tag


def main(argv: list[str] | None = None) -> int:
    """`python -m config [STAGE]`: validate cdk.json (and a stage name) without a synth; print the stage's stacks."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(Path("cdk.json"))
        stages = [config.stage(args[0])] if args else list(config.stages)
    except ConfigError as error:
        print(f"liftoff config: {error}", file=sys.stderr)
        return 2
    for stage in stages:
        print(f"{stage.name}: {stage.compute}, {stage.desired_count} running; stacks "
              f"{stage.registry_stack_name} {stage.data_stack_name} {stage.service_stack_name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
