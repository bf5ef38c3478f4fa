#!/usr/bin/env python3
"""Restart gap: from SIGTERM to the next process answering GET /healthz on the same port.

That is the floor of a single instance's downtime on a restart or an in-place deploy (systemd
stop + start): the ALB cannot do better with one target. Not a test; prints JSON.

    .venv/bin/python bench/restart_gap.py [--runs 10]

/healthz never touches the database, so no database is needed; DB_* point at a closed port.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[1] / "service"
POLL_INTERVAL_SECONDS = 0.002
DEADLINE_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int) -> subprocess.Popen:
    env = {
        **os.environ, "PYTHONPATH": str(SERVICE_DIR), "PORT": str(port), "APP_VERSION": "bench",
        "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_NAME": "bench",
        "DB_USER": "bench", "DB_PASSWORD": "",
    }
    return subprocess.Popen([sys.executable, "-m", "liftoff_service", "serve"], env=env,
                            cwd=SERVICE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def answers_healthz(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_healthy(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not answers_healthz(port):
        if process.poll() is not None:
            raise SystemExit(f"service exited with {process.returncode} during start-up")
        if time.monotonic() > deadline:
            raise SystemExit("service did not answer /healthz in time")
        time.sleep(POLL_INTERVAL_SECONDS)


def measure(runs: int) -> dict:
    port = free_port()
    current = start(port)
    wait_healthy(port, current)
    gaps, stops, starts = [], [], []
    try:
        for _ in range(runs):
            signalled = time.monotonic()
            current.send_signal(signal.SIGTERM)
            current.wait(timeout=DEADLINE_SECONDS)
            exited = time.monotonic()
            current = start(port)
            wait_healthy(port, current)
            answered = time.monotonic()
            gaps.append(answered - signalled)
            stops.append(exited - signalled)
            starts.append(answered - exited)
    finally:
        current.send_signal(signal.SIGTERM)
        current.wait(timeout=DEADLINE_SECONDS)

    def summary(values: list[float]) -> dict:
        return {"median_ms": round(statistics.median(values) * 1000),
                "min_ms": round(min(values) * 1000), "max_ms": round(max(values) * 1000)}

    return {
        "runs": runs,
        "restart_gap": summary(gaps),
        "sigterm_to_exit": summary(stops),
        "start_to_healthz": summary(starts),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="restarts to measure (default 10)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(json.dumps(measure(args.runs), indent=2))


if __name__ == "__main__":
    main()
