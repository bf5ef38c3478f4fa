"""python -m local deploy|up|down [--stage NAME] [--port N]: liftoff on a local AWS emulator.

deploy  start an emulator, deploy the stage with the real CDK CLI, walk stage -> activate -> rollback with
        the release tool and print its ledger, stop the emulator
up      the same deploy and walk, but leave the emulator running (recorded in .local/) for you to explore
down    stop the emulator `up` left running, by its recorded PID, and remove the record
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from config import ConfigError, load_config
from local import deploy as flow
from local import emulator as emulators
from local.runtime import shell_exports

EXIT_FAILED = 1
EXIT_USAGE = 2


def _raise_on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so every `finally` (stopping the emulator) runs.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("deploy", "up", "down"))
    parser.add_argument("--stage", default="staging")
    parser.add_argument("--port", type=int, default=None, help="loopback port for the emulator (default: a free one)")
    parser.add_argument("--state-dir", type=Path, default=flow.STATE_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--assembly", type=Path, default=None, help=argparse.SUPPRESS)  # tests: skip the synth
    parser.add_argument("--adapted", type=Path, default=flow.ADAPTED_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_on_signal)

    if args.command == "down":
        stopped = emulators.stop_recorded(args.state_dir)
        flow.log(f"stopped the emulator (pid {stopped.pid}, port {stopped.port})" if stopped else "no emulator recorded; nothing to stop")
        for what in flow.stop_kept_hosts(args.state_dir):
            flow.log(f"stopped {what}")
        return 0

    try:
        stage = load_config(flow.REPO / "cdk.json").stage(args.stage)
    except ConfigError as error:
        print(f"liftoff local: {error}", file=sys.stderr)
        return EXIT_USAGE
    running = emulators.recorded(args.state_dir)
    if running is not None and emulators.is_ours(running):
        print(f"liftoff local: an emulator is already running (pid {running.pid}, port {running.port}); "
              "`make local-down` stops it", file=sys.stderr)
        return EXIT_FAILED

    started_at = time.monotonic()
    emulator = None
    keep = False
    try:
        with flow.step(f"starting the emulator (moto_server on {emulators.HOST}, port {args.port or 'free'})"):
            emulator = emulators.start(args.state_dir, port=args.port)
        flow.log(f"  emulator pid {emulator.pid} at {emulator.endpoint}")
        deployed = flow.run(stage, emulator, source=args.assembly, target=args.adapted, keep_hosts=args.command == "up",
                            state_dir=args.state_dir)
        keep = args.command == "up"
    except (emulators.EmulatorError, flow.DeployError) as error:
        print(f"liftoff local: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("liftoff local: interrupted", file=sys.stderr)
        return 130
    finally:
        if emulator is not None and not keep:
            emulators.stop(emulator, args.state_dir)
            flow.log(f"stopped the emulator (pid {emulator.pid})")
    flow.log(f"total {time.monotonic() - started_at:.1f} s")
    flow.log(flow.HOSTS_NOTE if deployed.real_hosts else flow.EMULATOR_NOTE)
    if keep:
        flow.log(f"the emulator keeps running (pid {emulator.pid}, recorded in {args.state_dir}/{emulators.RECORD_NAME}). "
                 "Reach it from another shell with:")
        print(f"  {shell_exports(emulator.endpoint, kept_hosts=bool(deployed.hosts))}")
        print(f"  cd {flow.REPO}")
        print(f"  aws cloudformation describe-stacks --stack-name {stage.service_stack_name}")
        print(f"  .venv/bin/liftoff status --stage {stage.name}")
        if deployed.hosts:
            # The hosts' State Manager stand-in runs inside the walk only: a shell's activate would switch the stack, not them.
            print(f"  .venv/bin/liftoff history --stage {stage.name}   # activate/rollback on these hosts: `make deploy` "
                  "(from another shell they would switch the stack, not the hosts, and say so)")
        else:
            print(f"  .venv/bin/liftoff activate {flow.release_tags()[1]} --stage {stage.name}   # staged by the walk; asks, switches, verifies")
            print(f"  .venv/bin/liftoff rollback --stage {stage.name}")
        for instance_id, container, address in deployed.hosts:
            print(f"  curl http://{address}:{stage.container_port}/version   # host {instance_id}; "
                  f"docker exec -it {container[:12]} bash for a shell on it")
        print("  make local-down   # stops it" + (" and the hosts" if deployed.hosts else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
