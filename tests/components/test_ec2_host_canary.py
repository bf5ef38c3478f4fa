"""The host canary (components/ec2_host/bin/liftoff-common.sh): its judge, and the real thing on a real HAProxy.

`canary_judge` is a pure function of the two slots' counters, called directly. `run_canary` runs against
HAProxy started from the config `write_proxy_config` writes, two small HTTP servers standing in for the
slots, and steady requests through the proxy: the weights it sets, the counters it reads and its verdict
are HAProxy's own.
"""

from __future__ import annotations

import http.server
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMON = REPO / "components" / "ec2_host" / "bin" / "liftoff-common.sh"

THRESHOLDS = {"CANARY_MIN_REQUESTS": "10", "CANARY_MAX_ERROR_PERCENT": "5", "CANARY_MAX_ADDED_MS": "250"}


def judge(*counters: int) -> str:
    script = f'. "{COMMON}"; canary_judge "$@"'
    run = subprocess.run(["bash", "-c", script, "judge", *map(str, counters)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", **THRESHOLDS}, check=True)
    return run.stdout.strip()


def test_the_judge_waits_for_its_minimum_number_of_requests():
    assert judge(9, 9, 5, 90, 0, 5).startswith("wait 9 of 9 requests failed")
    assert "(judged from 10 requests)" in judge(9, 9, 5, 90, 0, 5)


def test_the_judge_holds_back_a_slot_failing_more_than_its_limit():
    verdict = judge(10, 1, 5, 90, 0, 5)
    assert verdict.startswith("bad 1 of 10 requests failed (10%) against 0 of 90 (0%)")
    assert "more than 5% failed" in verdict


def test_the_judge_compares_with_the_serving_slot_on_the_same_traffic():
    # Both slots fail alike (a dependency down): not the release's fault.
    assert judge(20, 4, 5, 180, 36, 5).startswith("wait")
    assert judge(20, 9, 5, 180, 36, 5).startswith("bad")


def test_the_judge_holds_back_a_clearly_slower_slot():
    assert judge(10, 0, 259, 90, 0, 9).startswith("wait")
    verdict = judge(10, 0, 360, 90, 0, 9)
    assert verdict.startswith("bad") and "more than 250 ms slower" in verdict


# --- on a real HAProxy ----------------------------------------------------------------------------


class Slot:
    """An HTTP server on loopback answering `status` after `delay` seconds, counting what it answered."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        slot = self
        self.answered = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                time.sleep(delay)
                slot.answered += 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except ConnectionError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HostProxy:
    """HAProxy from the host scripts' own config, slot a serving; the scripts' functions run against it."""

    def __init__(self, tmp_path: Path, a: Slot, b: Slot, **canary: str):
        self.dir, self.port = tmp_path, free_port()
        # The proxy unit "is active" (it is: this HAProxy), so route_to_slot talks to its socket.
        (tmp_path / "bin").mkdir()
        (tmp_path / "bin" / "systemctl").write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / "bin" / "systemctl").chmod(0o755)
        self.env = {"PATH": f"{tmp_path / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin", "LIFTOFF_CONFIG_DIR": str(tmp_path),
                    "LIFTOFF_PROXY_SOCKET": str(tmp_path / "admin.sock"), "CONTAINER_PORT": str(self.port),
                    "SLOT_A_PORT": str(a.port), "SLOT_B_PORT": str(b.port), "CANARY_PERCENT": "10",
                    "CANARY_SECONDS": "20", **THRESHOLDS, **canary}
        self.shell("write_proxy_config a")
        self.process = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "proxy.cfg")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (tmp_path / "admin.sock").exists() or not self._answers():
            assert time.monotonic() < deadline, "HAProxy did not come up"
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).read()
            return True
        except (urllib.error.URLError, OSError):
            return False

    def shell(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f'set -euo pipefail; . "{COMMON}"; {command}'], capture_output=True,
                              text=True, env=self.env, timeout=120)

    def server(self, name: str) -> dict:
        stat = self.shell("proxy_command 'show stat'").stdout.splitlines()
        header = stat[0].lstrip("# ").split(",")
        row = next(line.split(",") for line in stat[1:] if line.startswith(f"slots,{name},"))
        return dict(zip(header, row))

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)


class Load:
    """Steady requests through the host proxy (about 40/s), counting answers by status."""

    def __init__(self, port: int, per_second: float = 40):
        self.port, self.interval, self.codes, self._stop = port, 1 / per_second, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as answer:
                    self.codes.append(answer.status)
            except urllib.error.HTTPError as error:
                self.codes.append(error.code)
            except (urllib.error.URLError, OSError):
                self.codes.append(0)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def world(tmp_path):
    if not (shutil.which("haproxy") and shutil.which("socat")):
        pytest.fail("haproxy and socat are needed (.ci/run installs them)")
    made = []

    def make(new: Slot, **canary: str):
        old = Slot()
        proxy = HostProxy(tmp_path, old, new, **canary)
        made.extend([old, new, proxy])
        return old, proxy

    yield make
    for thing in reversed(made):
        thing.stop()


def test_a_failing_canary_is_held_back_after_a_few_requests(world):
    bad = Slot(status=500)
    old, proxy = world(bad)
    load = Load(proxy.port)
    run = proxy.shell('if run_canary b 1.1.0; then echo PASSED; else echo "HELD: $CANARY_VERDICT"; fi')
    answered_by_bad_when_judged = bad.answered
    time.sleep(1.5)
    load.stop()
    assert "HELD: " in run.stdout and "more than 5% failed" in run.stdout, run.stdout + run.stderr
    # Judged from its minimum number of requests (a second's worth at most beyond it), then no more.
    assert 10 <= answered_by_bad_when_judged <= 16
    assert bad.answered == answered_by_bad_when_judged
    assert proxy.server("b")["status"] == "MAINT" and proxy.server("b")["weight"] == "0"
    assert proxy.server("a")["weight"] == "100"
    assert load.codes.count(500) == bad.answered and old.answered > 0
    record = json.loads((proxy.dir / "canary.json").read_text())
    assert record["version"] == "1.1.0" and record["verdict"] == "bad" and record["errors"] >= 10


def test_a_slower_canary_is_held_back(world):
    slow = Slot(delay=0.35)
    _, proxy = world(slow)
    load = Load(proxy.port)
    run = proxy.shell('if run_canary b 1.1.0; then echo PASSED; else echo "HELD: $CANARY_VERDICT"; fi')
    load.stop()
    assert "HELD: " in run.stdout and "more than 250 ms slower" in run.stdout, run.stdout + run.stderr
    assert 0 not in load.codes and set(load.codes) == {200}  # slower, never failed: held back all the same


def test_a_good_canary_takes_its_share_and_passes(world):
    good = Slot()
    old, proxy = world(good, CANARY_SECONDS="5")
    # Four clients: a loaded machine slows each, and the canary is judged only from its 10th request (else "not judged").
    loads = [Load(proxy.port) for _ in range(4)]
    run = proxy.shell('if run_canary b 1.1.0; then echo PASSED; else echo "HELD: $CANARY_VERDICT"; fi')
    for load in loads:
        load.stop()
    assert "PASSED" in run.stdout, run.stdout + run.stderr
    share = good.answered / (good.answered + old.answered)
    assert 0.04 <= share <= 0.2  # about the 10 % asked
    assert {code for load in loads for code in load.codes} == {200}
    assert json.loads((proxy.dir / "canary.json").read_text())["verdict"] == "good"
    # The caller routes next: until then the proxy still splits, and route_to_slot gives b all of it.
    proxy.shell("route_to_slot b")
    assert proxy.server("a")["status"] == "MAINT" and proxy.server("b")["weight"] == "100"


def test_a_quiet_host_is_not_judged_and_says_so(world):
    _, proxy = world(Slot(status=500), CANARY_SECONDS="2")
    run = proxy.shell('if run_canary b 1.1.0; then echo PASSED; else echo "HELD: $CANARY_VERDICT"; fi')
    assert "PASSED" in run.stdout
    assert "canary: not judged (0 of 0 requests failed" in run.stderr
    assert json.loads((proxy.dir / "canary.json").read_text())["verdict"] == "not judged"
