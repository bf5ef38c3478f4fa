"""What AWS offers, from data maintained packages ship rather than tables kept by hand: instance
types, database classes and regions (cfn-lint's data, the very data its rules E3025 and E3062 read),
EC2 memory and CPU architectures (AWS's DescribeInstanceTypes answers, shipped in moto), and
Fargate's task sizes (the ECS API reference; a test holds them equal to cfn-lint's)."""
from __future__ import annotations

import gzip
import importlib.util
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from config.errors import ConfigError


FARGATE_CPU_MEMORY = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    # 8 and 16 vCPU: Linux platform 1.4.0 or later (CDK's LATEST), as the ECS API reference documents.
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}


@lru_cache(maxsize=None)
def _package_data(distribution: str, package: str, *parts: str) -> Any:
    # Read a data file a package ships without importing the package (cfn-lint's import alone costs a
    # second on every read of the config).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{distribution} is not installed; it ships the AWS data the config is checked against "
                          "(make setup, or pip install -r requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    raw = path.read_bytes()
    return json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)


def cfn_lint_data(extension: str, file: str) -> Any:
    # cfn-lint ships AWS's per-region instance lists and its rules' data (refreshed with each release).
    return _package_data("cfn-lint", "cfnlint", "data", "schemas", "extensions", extension, file)


@lru_cache(maxsize=None)  # asked for every stage at every read of the config; the installed data does not change
def ec2_instance_types(region: str | None) -> frozenset[str]:
    """EC2 instance types offered in `region` (every region's when None), as cfn-lint ships them."""
    data = {name: value["enum"] for name, value in cfn_lint_data("aws_ec2_instance", "instancetype_enum.json").items()
            if isinstance(value, Mapping) and value.get("enum")}
    if region is None:
        return frozenset(t for types in data.values() for t in types)
    return frozenset(data.get(region, ()))


@lru_cache(maxsize=None)
def _ec2_instance_facts() -> dict[str, tuple[int, tuple[str, ...]]]:
    # moto ships AWS's own DescribeInstanceTypes answers, refreshed from the API with each release:
    # memory and CPU architectures per type. Neither botocore (the EC2 API model only) nor cfn-lint
    # (names per region) has memory.
    return {name: (info["MemoryInfo"]["SizeInMiB"], tuple(info["ProcessorInfo"]["SupportedArchitectures"]))
            for name, info in _package_data("moto", "moto", "ec2", "resources", "instance_types.json.gz").items()}


def ec2_instance_memory_mib(instance_type: str) -> int | None:
    """Memory of an EC2 instance type as AWS describes it, or None for a type the data does not list."""
    facts = _ec2_instance_facts().get(instance_type)
    return facts[0] if facts else None


def ec2_instance_architectures(instance_type: str) -> tuple[str, ...]:
    """CPU architectures of an EC2 instance type as AWS names them (arm64, x86_64, i386, x86_64_mac,
    arm64_mac); () for a type the data does not list."""
    facts = _ec2_instance_facts().get(instance_type)
    return facts[1] if facts else ()


# The engine components/database.py deploys (a test holds the two equal): cfn-lint checks the instance
# class against this very version (E3062), so config does too.
POSTGRES_ENGINE_VERSION = "17.6"


@lru_cache(maxsize=None)  # every stage's config check asks again; the data is cfn-lint's installed files
def rds_postgres_instance_classes(region: str | None, engine_version: str = POSTGRES_ENGINE_VERSION) -> frozenset[str]:
    """RDS for PostgreSQL instance classes (without the db. prefix) that `engine_version` runs on in
    `region` (in any region when None): cfn-lint's two rules on them, E3025 (per region) and E3062
    (per engine version), from the data cfn-lint itself reads."""
    regional: dict[str, set[str]] = {}
    for name, schema in cfn_lint_data("aws_rds_dbinstance", "dbinstanceclass_enum.json").items():
        for rule in schema.get("allOf", ()):
            condition = rule["if"]["properties"]
            if condition.get("Engine", {}).get("const") == "postgres" and condition.get("LicenseModel") is False:
                regional.setdefault(name, set()).update(rule["then"]["properties"]["DBInstanceClass"]["enum"])
    classes = set().union(*regional.values()) if region is None else regional.get(region, set())
    # E3062: every rule whose condition matches the engine and version applies (allOf).
    for rule in cfn_lint_data("aws_rds_dbinstance", "db_instance_class.json")["allOf"]:
        condition = rule["if"]["properties"]
        pattern = condition.get("EngineVersion", {}).get("pattern")
        if condition.get("Engine", {}).get("const") == "postgres" and pattern and re.search(pattern, engine_version):
            classes = classes & set(rule["then"]["properties"]["DBInstanceClass"]["enum"])
    return frozenset(c.removeprefix("db.") for c in classes)


@lru_cache(maxsize=None)
def known_regions() -> tuple[str, ...]:
    data = cfn_lint_data("aws_ec2_instance", "instancetype_enum.json")
    return tuple(sorted(name for name, value in data.items() if isinstance(value, Mapping) and value.get("enum")))


def db_connections_limit(instance_class: str) -> int:
    """RDS for PostgreSQL's default max_connections, LEAST(memory / 9531392, 5000), from the class's
    nominal memory: a db. class has the memory of the EC2 type of the same name. RDS reserves some
    memory first, so the real limit is a little lower; the default alarm threshold (70 %) leaves room
    for that."""
    mib = ec2_instance_memory_mib(instance_class)
    if mib is None:
        raise ConfigError(
            f"cannot estimate the connection limit of db_instance_class {instance_class!r} (AWS's instance data "
            "lists no EC2 type of that name to take its memory from); set alarm_thresholds.db_connections explicitly"
        )
    return min(int(mib * 1024**2 / 9531392), 5000)
