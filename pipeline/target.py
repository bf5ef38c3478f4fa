"""Where a stage's pipeline jobs go, read from cdk.json: `python3 pipeline/target.py [--require-enabled] STAGE`.

Prints (or appends to $GITHUB_OUTPUT) enabled=true, role_arn, region, the image platform, a GitHub-hosted
runner of that architecture and the stage's stack names, so a workflow can assume the stage's deploy
role before it holds any credentials. While cdk.json's `github.repository` is null (as shipped) it prints
enabled=false and says how to switch it on: the workflows then skip their AWS jobs (with
--require-enabled, as in the jobs that assume a role, it exits 2 instead). Exit 2 names a bad stage. Standard library and config.py only (runs before anything is installed).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import ConfigError, load_config  # noqa: E402

PLATFORMS = {"arm64": "linux/arm64", "x86_64": "linux/amd64"}
# Native builds: a runner of the image's own architecture needs no emulation.
RUNNERS = {"arm64": "ubuntu-24.04-arm", "x86_64": "ubuntu-24.04"}
OFF_MESSAGE = ("the CD pipeline is off: cdk.json's context.liftoff.github.repository is null. Set it (and account) "
               "and deploy the liftoff-github stack to let GitHub Actions deploy (docs/cd-pipeline.md)")


def target(stage_name: str, cdk_json: Path) -> dict[str, str]:
    config = load_config(cdk_json)
    stage = config.stage(stage_name)
    github = config.github
    if github is None:
        return {"enabled": "false"}
    if github.stage_access(stage.name) is None:
        allowed = ", ".join(access.stage for access in github.access)
        raise ConfigError(f"stage {stage.name!r} is not listed in github.stages; stages GitHub may deploy: {allowed}")
    account, region = github.target(stage)
    return {
        "enabled": "true",
        "role_arn": github.role_arn(stage),
        "region": region,
        "platform": PLATFORMS[stage.cpu_architecture],
        "runner": RUNNERS[stage.cpu_architecture],
        "registry_stack": stage.registry_stack_name,
        "service_stack": stage.service_stack_name,
    }


def main(argv: list[str]) -> int:
    require = argv[:1] == ["--require-enabled"]
    arguments = argv[1:] if require else argv
    if len(arguments) != 1 or arguments[0].startswith("-"):
        print("usage: python3 pipeline/target.py [--require-enabled] STAGE", file=sys.stderr)
        return 2
    try:
        values = target(arguments[0], Path(os.environ.get("LIFTOFF_CONFIG", "cdk.json")))
    except ConfigError as error:
        print(f"pipeline: {error}", file=sys.stderr)
        return 2
    if values["enabled"] == "false":
        print(f"pipeline: {OFF_MESSAGE}", file=sys.stderr)
        if require:
            return 2
    lines = "".join(f"{key}={value}\n" for key, value in values.items())
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:
            out.write(lines)
    else:
        sys.stdout.write(lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
