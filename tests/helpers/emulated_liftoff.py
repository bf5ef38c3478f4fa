"""`python -m tests.helpers.emulated_liftoff ARGS...`: the release tool, unchanged, on a stage in a running moto_server.

The pipeline's scripts call the release tool through $LIFTOFF; the end-to-end test points it here.
This runs `release.cli.main` with the emulator's stand-in runtime (local/runtime.py, the same one
`make deploy` uses): CloudFormation, ECR, the ledger and the lock are the emulator's for real; only
"what runs" (tasks, hosts, target health) repeats what the stack recorded, since moto runs nothing.
The tool calls AWS with the credentials in the environment (AWS_ACCESS_KEY_ID, ...: in the end-to-end test, a GitHub
deploy role's session, held to that role's policies by the emulator); only the stand-in's own reads (the stack's
record, the emulator's blob store) go as the harness. Every client goes to $AWS_ENDPOINT_URL, never to a real account.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import boto3

from config import load_config
from local.aws import FAKE_ENVIRONMENT, EndpointSession, fake_session
from local.runtime import EmulatedRuntime
from release import cli


def main(argv: list[str]) -> int:
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    if not endpoint.startswith(("http://localhost:", "http://127.0.0.1:")):
        print(f"emulated_liftoff: AWS_ENDPOINT_URL={endpoint!r} is not a loopback emulator; refusing", file=sys.stderr)
        return 2
    stage_name = argv[argv.index("--stage") + 1] if "--stage" in argv else None
    config_path = Path(argv[argv.index("--config") + 1]) if "--config" in argv else Path("cdk.json")
    if stage_name is None:
        return cli.main(argv)  # argparse names the missing option
    try:
        stage = load_config(config_path).stage(stage_name)
    except Exception:  # the tool itself reports a bad stage or config with its own exit code
        return cli.main(argv)
    # No instance metadata to fall back on: a step without credentials fails at once instead of probing for them.
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    caller = boto3.Session()  # the step's own credentials and region, from AWS_* variables
    runtime = EmulatedRuntime(service_stack=stage.service_stack_name, registry_stack=stage.registry_stack_name,
                              region=caller.region_name or FAKE_ENVIRONMENT["AWS_REGION"],
                              session=EndpointSession(caller, endpoint),
                              stand_in_session=EndpointSession(fake_session(), endpoint))
    return cli.main(argv, aws=runtime)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
