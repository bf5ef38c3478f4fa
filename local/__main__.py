"""python -m local deploy|up|down [--stage NAME] [--port N]: liftoff on a local AWS emulator.

deploy  start an emulator, deploy the stage with the real CDK CLI, walk stage -> activate -> rollback with
        the release tool and print its ledger, stop the emulator
up      the same deploy and walk, but leave the emulator running (recorded in .local/) for you to explore; with
        Docker the hosts (ec2) or the service's tasks (ecs) stay too, kept by a supervisor (local/supervisor.py). `up`
        while it runs updates the stacks in place from cdk.json (a changed desired_count: the group boots or drains
        hosts, or the ECS stand-in starts or stops tasks, to match)
down    stop what `up` left running, each by its recorded pid, and remove the records (nothing recorded: says so)
"""
from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
from pathlib import Path

from config import ConfigError, load_config
from local import botocore_data, boxes, docker, images
from local import deploy as flow
from local import emulator as emulators
from local import supervisor as supervisors
from local.emulator import free_port
from local.runtime import shell_exports

EXIT_FAILED = 1
EXIT_USAGE = 2


def _raise_on_signal(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so every `finally` (stopping the emulator) runs.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    botocore_data.share_one_loader()  # a session per emulator client: each would parse botocore's JSON again
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
        return down(args.state_dir)
    try:
        stage = load_config(flow.REPO / "cdk.json").stage(args.stage)
    except ConfigError as error:
        print(f"liftoff local: {error}", file=sys.stderr)
        return EXIT_USAGE
    running = emulators.recorded(args.state_dir)
    if running is not None and emulators.is_ours(running):
        if args.command == "deploy":
            print(f"liftoff local: an emulator is already running (pid {running.pid}, port {running.port}); "
                  "`make local-down` stops it", file=sys.stderr)
            return EXIT_FAILED
        return update(stage, running, args)
    if running is not None or supervisors.recorded(args.state_dir) is not None:
        down(args.state_dir)  # left by a run that crashed, or by a reboot: recorded by us, so ours to clear

    started_at = time.monotonic()
    emulator = None
    keep = False
    try:
        with flow.step(f"starting the emulator (moto_server on {emulators.HOST}, port {args.port or 'free'})"):
            emulator = emulators.start(args.state_dir, port=args.port)
        flow.log(f"  emulator pid {emulator.pid} at {emulator.endpoint}")
        deployed = flow.run(stage, emulator, source=args.assembly, target=args.adapted, keep_world=args.command == "up",
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
    flow.log(flow.HOSTS_NOTE if deployed.real_hosts else flow.TASKS_NOTE if deployed.real_tasks else flow.EMULATOR_NOTE)
    if keep:
        record = None
        if deployed.real_hosts or deployed.real_tasks:
            try:
                record = keep_world(stage, deployed, args.state_dir)
            except supervisors.SupervisorError as error:
                print(f"liftoff local: {error}", file=sys.stderr)
                down(args.state_dir)
                return EXIT_FAILED
        explore(stage, emulator, record, args.state_dir)
    return 0


def keep_world(stage, deployed: flow.LocalStage, state_dir: Path, *, listen_port: int | None = None) -> supervisors.SupervisorRecord:
    """The supervisor that keeps the hosts or the tasks living after the walk (the walk's followers stopped with it)."""
    if stage.compute == "ec2":
        supervisors.save_associations(state_dir, deployed.associations)
        keeps = "load balancer, State Manager, alarms and Auto Scaling group stand-ins"
    else:
        keeps = ("load balancer and alarm stand-ins, the ECS stand-in and its agent (the service's tasks start again, "
                 "of its current revision)")
    if listen_port is not None and _someone_listens(listen_port):
        listen_port = None
    with flow.step(f"starting the supervisor: {keeps} (log: {state_dir / supervisors.LOG_NAME})"):
        record = supervisors.start(state_dir, stage=stage.name, listen_port=listen_port or free_port(), box_image=deployed.box_image,
                                   docker_host=flow.docker_host())
    flow.log(f"  supervisor pid {record.pid}")
    return record


def _someone_listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def update(stage, emulator: emulators.Emulator, args) -> int:
    """`up` on a running emulator: the stacks updated from cdk.json; the supervisor started again if it is gone."""
    flow.log(f"an emulator is already running (pid {emulator.pid}, port {emulator.port}): updating stage {stage.name} in place")
    try:
        record = supervisors.recorded(args.state_dir)
        if record is not None and record.stage != stage.name:  # refused before anything changes
            raise flow.DeployError(f"the running world keeps stage {record.stage}; `make local-down` first to switch "
                                   f"to {stage.name}")
        deployed = flow.update_stage(stage, emulator, source=args.assembly, target=args.adapted)
        world = boxes.BoxWorld.recorded(args.state_dir)
        if world is not None and (record is None or not supervisors.is_ours(record)):
            flow.log("the supervisor is not running (killed, or the machine restarted): starting it again")
            supervisors.stop_recorded(args.state_dir)
            deployed.box_image = images.box_image(docker.Daemon(host=flow.docker_host()))
            deployed.associations = supervisors.saved_associations(args.state_dir)
            # The load balancer comes back on the address already printed, where it can.
            record = keep_world(stage, deployed, args.state_dir,
                                listen_port=int(record.balancer_url.rsplit(":", 1)[1]) if record is not None else None)
    except (flow.DeployError, supervisors.SupervisorError, docker.DockerError) as error:
        print(f"liftoff local: {error}", file=sys.stderr)
        return EXIT_FAILED
    if record is not None and stage.compute == "ec2":
        flow.log("the supervisor's Auto Scaling group stand-in follows the new size: `liftoff status` or its log shows the hosts")
    elif record is not None:
        flow.log("the supervisor's ECS stand-in follows the stack (a new desired count starts or stops tasks): "
                 "`liftoff status` or its log shows the tasks")
    explore(stage, emulator, record, args.state_dir)
    return 0


def down(state_dir: Path) -> int:
    """Stop everything `up` left running, each by its recorded pid; idempotent."""
    stopped = supervisors.stop_recorded(state_dir)
    if stopped is not None:
        flow.log(f"stopped the supervisor (pid {stopped.pid}) and its load balancer ({stopped.balancer_url})")
    emulator = emulators.stop_recorded(state_dir)
    flow.log(f"stopped the emulator (pid {emulator.pid}, port {emulator.port})" if emulator else
             "no emulator recorded; nothing to stop")
    for what in flow.stop_kept_world(state_dir):
        flow.log(f"stopped {what}")
    (state_dir / supervisors.ASSOCIATIONS_NAME).unlink(missing_ok=True)  # what those hosts' associations last ran
    return 0


def explore(stage, emulator: emulators.Emulator, record: supervisors.SupervisorRecord | None, state_dir: Path) -> None:
    """How to reach what `up` left running, from another shell."""
    flow.log(f"the emulator keeps running (pid {emulator.pid}, recorded in {state_dir}/{emulators.RECORD_NAME}). "
             "Reach it from another shell with:")
    print(f"  {shell_exports(emulator.endpoint, control_url=record.control_url if record else '', compute=stage.compute)}")
    print(f"  cd {flow.REPO}")
    print(f"  .venv/bin/liftoff status --stage {stage.name}")
    print(f"  .venv/bin/liftoff activate {flow.release_tags()[1]} --stage {stage.name}   # staged by the walk; asks, switches, verifies")
    print(f"  .venv/bin/liftoff rollback --stage {stage.name}")
    if record is not None:
        print(f"load balancer: {record.balancer_url}")
        print(f"  curl -s {record.balancer_url}/version")
        print(f"  watch -n 0.5 curl -s {record.balancer_url}/version   # which version answers, live")
        if stage.compute == "ec2":
            print(f"  tail -f {record.log}   # the hosts' gates and the Auto Scaling group, as they run")
            print("  edit desired_count in cdk.json, then `make local-up` again: the group boots or drains hosts to match")
        else:
            print(f"  tail -f {record.log}   # the ECS stand-in's deployments and tasks, as they run")
            print("  edit desired_count in cdk.json, then `make local-up` again: the ECS stand-in starts or stops tasks to match")
    else:
        print(f"  aws cloudformation describe-stacks --stack-name {stage.service_stack_name}")
    kept = "" if record is None else " and the hosts" if stage.compute == "ec2" else " and the tasks"
    print(f"  make local-down   # stops it{kept}")


if __name__ == "__main__":
    sys.exit(main())
