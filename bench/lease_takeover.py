#!/usr/bin/env python3
"""How long a stage stays blocked by a killed release, and how long a refused one waits: the lease in figures.

Starts the local emulator with staging deployed (`python -m local up`, the real CDK CLI), then, from
separate processes as a second shell would (LIFTOFF_RUNTIME=local.runtime:emulator_unhealthy keeps an activation in
its verification): an `activate` holds the lock; a second `activate` is refused (live heartbeat); the
first is killed with SIGKILL; a `rollback` takes the dead lock over and goes back. Stops the emulator.
Not a test; prints JSON.

    .venv/bin/python bench/lease_takeover.py [--lease-seconds 60]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    args = parser.parse_args()
    lease = f"{args.lease_seconds:g}"
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "state"
        up = subprocess.run([sys.executable, "-m", "local", "up", "--state-dir", str(state), "--adapted", str(Path(scratch) / "adapted")],
                            cwd=REPO, capture_output=True, text=True)
        if up.returncode != 0:
            print(up.stdout + up.stderr, file=sys.stderr)
            return 1
        try:
            export = next(line.strip() for line in up.stdout.splitlines() if line.strip().startswith("export "))
            env = {**os.environ, **dict(pair.split("=", 1) for pair in export.split()[1:])}
            target = re.search(r"liftoff activate (\S+) ", up.stdout).group(1)

            def liftoff(*argv, runtime="local.runtime:emulator", **kwargs):
                command = [sys.executable, "-m", "release", *argv, "--stage", "staging", "--yes", "--poll-interval", "0.2"]
                return command, {**env, "LIFTOFF_RUNTIME": runtime}

            command, holder_env = liftoff("activate", target, "--lease-seconds", lease, "--verify-timeout", "3600", runtime="local.runtime:emulator_unhealthy")
            holder = subprocess.Popen(command, cwd=REPO, env=holder_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    status = subprocess.run([sys.executable, "-m", "release", "lock", "--stage", "staging", "--json"],
                                            cwd=REPO, env=env, capture_output=True, text=True)
                    lock = json.loads(status.stdout).get("lock") or {}
                    if lock.get("activity", "").startswith("verifying"):
                        break
                    time.sleep(0.2)
                command, other_env = liftoff("activate", target, "--force")
                started = time.monotonic()
                refused = subprocess.run(command, cwd=REPO, env=other_env, capture_output=True, text=True)
                refused_after = time.monotonic() - started
                holder.send_signal(signal.SIGKILL)
                holder.wait()
                killed_at = time.monotonic()
                command, rollback_env = liftoff("rollback")
                rollback = subprocess.run(command, cwd=REPO, env=rollback_env, capture_output=True, text=True)
                rollback_after = time.monotonic() - killed_at
            finally:
                if holder.poll() is None:
                    holder.kill()
                    holder.wait()
        finally:
            subprocess.run([sys.executable, "-m", "local", "down", "--state-dir", str(state)], cwd=REPO, capture_output=True)
    print(json.dumps({
        "lease_seconds": args.lease_seconds,
        "live_lock_refused": {"exit_code": refused.returncode, "seconds": round(refused_after, 1)},
        "after_sigkill_rollback": {"exit_code": rollback.returncode, "seconds": round(rollback_after, 1),
                                   "took_over": "took over the lock" in rollback.stdout},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
