"""Stage configuration: parsed once from cdk.json context into frozen, typed objects.

This package is the only place that knows the shape of the `liftoff` context; it imports nothing
from the CDK so the release tool can read the same stages without a synth. Its modules follow what
they check:

- model: what a stage is (frozen dataclasses) and the choices its keys take;
- keys: one key at a time (types, ranges, patterns, the nested objects);
- rules: rules across a stage's keys, and against what AWS offers;
- aws_facts: what AWS offers, from the data cfn-lint and moto ship;
- github: the opt-in CD section;
- context: the whole context, judged alike from the CDK CLI, from cdk.json or as given;
- command: `python -m config`.

Everything is imported from here (`from config import load_config`).
"""
from config.aws_facts import (
    FARGATE_CPU_MEMORY,
    POSTGRES_ENGINE_VERSION,
    cfn_lint_data,
    db_connections_limit,
    ec2_instance_architectures,
    ec2_instance_memory_mib,
    ec2_instance_types,
    known_regions,
    rds_postgres_instance_classes,
)
from config.command import main
from config.context import load_config, parse_cli_context, parse_config
from config.errors import ConfigError
from config.github import GITHUB_REF_PATTERN, GITHUB_REPOSITORY_PATTERN, GITHUB_SUB_FORMATS
from config.keys import (
    ACCOUNT_PATTERN,
    AMI_ID_PATTERN,
    CERTIFICATE_ARN_PATTERN,
    EMAIL_PATTERN,
    HOSTED_ZONE_ID_PATTERN,
    HOSTNAME_PATTERN,
    INSTANCE_CLASS_PATTERN,
    MAX_DESIRED_COUNT,
    REGION_PATTERN,
    STAGE_NAME_PATTERN,
)
from config.model import (
    CANARY_KEYS,
    COMPUTE_MODES,
    CONTEXT_KEY,
    CPU_ARCHITECTURES,
    EC2_ACTIVATIONS,
    ECS_DEPLOYMENT_STRATEGIES,
    HOST_RESERVED_MIB,
    MODE_ONLY_KEYS,
    RELEASE_TAG_DESCRIPTION,
    RELEASE_TAG_PATTERN,
    SCALE_ON_TARGETS,
    TRAFFIC_SHIFT_DEFAULTS,
    TRAFFIC_SHIFT_PERCENT_RANGES,
    AlarmThresholds,
    Canary,
    GithubConfig,
    GithubStageAccess,
    LiftoffConfig,
    RollbackWindow,
    ScaleOn,
    StageConfig,
    check_release_tag,
    github_role_name,
    operator_policy_name,
)
from config.rules import containers_per_activation

__all__ = [
    "ACCOUNT_PATTERN", "AMI_ID_PATTERN", "CANARY_KEYS", "CERTIFICATE_ARN_PATTERN", "COMPUTE_MODES", "CONTEXT_KEY", "CPU_ARCHITECTURES",
    "EC2_ACTIVATIONS", "ECS_DEPLOYMENT_STRATEGIES", "EMAIL_PATTERN", "FARGATE_CPU_MEMORY", "GITHUB_REF_PATTERN",
    "GITHUB_REPOSITORY_PATTERN", "GITHUB_SUB_FORMATS", "HOSTED_ZONE_ID_PATTERN", "HOSTNAME_PATTERN", "HOST_RESERVED_MIB",
    "INSTANCE_CLASS_PATTERN", "MAX_DESIRED_COUNT", "MODE_ONLY_KEYS", "POSTGRES_ENGINE_VERSION", "REGION_PATTERN",
    "RELEASE_TAG_DESCRIPTION", "RELEASE_TAG_PATTERN", "SCALE_ON_TARGETS", "STAGE_NAME_PATTERN", "TRAFFIC_SHIFT_DEFAULTS",
    "TRAFFIC_SHIFT_PERCENT_RANGES", "AlarmThresholds", "Canary", "ConfigError", "GithubConfig", "GithubStageAccess", "LiftoffConfig",
    "RollbackWindow", "ScaleOn", "StageConfig", "cfn_lint_data", "check_release_tag", "containers_per_activation",
    "db_connections_limit", "ec2_instance_architectures", "ec2_instance_memory_mib", "ec2_instance_types", "github_role_name", "operator_policy_name",
    "known_regions", "load_config", "main", "parse_cli_context", "parse_config", "rds_postgres_instance_classes",
]
