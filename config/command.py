"""`python -m config [STAGE]`: validate cdk.json (and a stage name) without a synth; print the stage's stacks."""
from __future__ import annotations

import sys
from pathlib import Path

from config.context import load_config
from config.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        config = load_config(Path("cdk.json"))
        stages = [config.stage(args[0])] if args else list(config.stages)
    except ConfigError as error:
        print(f"liftoff config: {error}", file=sys.stderr)
        return 2
    for stage in stages:
        running = f"{stage.desired_count}-{stage.max_count} running" if stage.scales else f"{stage.desired_count} running"
        print(f"{stage.name}: {stage.compute}, {running}; stacks "
              f"{stage.registry_stack_name} {stage.data_stack_name} {stage.service_stack_name}")
        for warning in stage.warnings():
            print(f"liftoff config: warning: {warning}", file=sys.stderr)
    return 0
