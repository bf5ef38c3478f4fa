"""A database outage under load, on the real image against a real PostgreSQL that is stopped and
started again (issue 22): requests that need no database keep succeeding, the liveness check keeps
answering inside the load balancer's health check timeout (so no host leaves the load balancer), and
requests that need the database answer 503 quickly instead of holding the worker's threads.

The figures (answer times of /healthz, /version and /notes during the outage) are printed; with `-s`
they show what the breaker changes (docs/service-contract.md quotes them).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest

from container_harness import Containers, database_env, own_postgres
from service_harness import http_request, wait_until

pytestmark = pytest.mark.cost(minutes=0.75)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

# The target group's health check (components/load_balancer.py): a probe slower than this fails.
HEALTH_CHECK_TIMEOUT_SECONDS = 3.0
HEALTH_CHECK_INTERVAL_SECONDS = 1.0
OUTAGE_SECONDS = 30.0
NOTES_PER_SECOND = 10
VERSION_PER_SECOND = 10


@dataclass
class Outcome:
    path: str
    sent_at: float
    status: int
    seconds: float


@dataclass
class Traffic:
    """Open-loop requests (each on its own thread and connection, as new clients arrive), recorded."""
    port: int
    outcomes: list[Outcome] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _one(self, path: str, timeout: float) -> None:
        began = time.monotonic()
        try:
            status = http_request(self.port, "GET", path, timeout=timeout).status
        except OSError:
            status = 0
        with self._lock:
            self.outcomes.append(Outcome(path, began, status, time.monotonic() - began))

    def _send(self, path: str, per_second: float, timeout: float) -> None:
        interval, next_at = 1.0 / per_second, time.monotonic()
        while not self.stop.is_set():
            threading.Thread(target=self._one, args=(path, timeout), daemon=True).start()
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> list[threading.Thread]:
        senders = [threading.Thread(target=self._send, args=args, daemon=True) for args in (
            ("/notes?limit=5", NOTES_PER_SECOND, 30.0),
            ("/version", VERSION_PER_SECOND, 30.0),
            # The load balancer's probe: it gives up after its timeout.
            ("/healthz", 1 / HEALTH_CHECK_INTERVAL_SECONDS, HEALTH_CHECK_TIMEOUT_SECONDS))]
        for sender in senders:
            sender.start()
        return senders

    def between(self, path: str, start: float, end: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.path.startswith(path) and start <= o.sent_at < end]


def summary(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "none"
    times = sorted(o.seconds for o in outcomes)
    statuses: dict[int, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    return (f"{len(outcomes)} requests, statuses {dict(sorted(statuses.items()))}, "
            f"median {times[len(times) // 2] * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")


@pytest.fixture
def containers(docker_daemon):
    made = Containers(docker_daemon)
    try:
        yield made
    finally:
        made.remove_all()


def test_a_database_outage_under_load_keeps_liveness_and_database_free_requests_answering(
        containers, service_image):
    with own_postgres("notes", "app", "outage-pw") as (database, server):
        env = {**database_env(database), "APP_VERSION": "1.1.0"}
        migrated = containers.run_to_exit(service_image, "migrate", env=env)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        container = containers.serve(service_image, env=env)
        assert container.request("GET", "/notes").status == 200

        traffic = Traffic(container.port)
        senders = traffic.start()
        try:
            time.sleep(3)
            server.stop()
            down_at = time.monotonic()  # the server has shut down: from here on nothing reaches it
            time.sleep(OUTAGE_SECONDS)
            # The outage ends when the restart begins: a request sent while it starts may already be served.
            restarting_at = time.monotonic()
            server.start()
            up_at = time.monotonic()
            # The service finds the database again by itself (a probe after the breaker's window).
            wait_until(lambda: container.request("GET", "/notes?limit=1", timeout=10).status == 200,
                       deadline_seconds=30, what="/notes answering 200 after the database came back")
            recovered_at = time.monotonic()
            time.sleep(2)
        finally:
            traffic.stop.set()
            for sender in senders:
                sender.join(5)
        time.sleep(HEALTH_CHECK_TIMEOUT_SECONDS + 1)  # the last probes' answers (or timeouts) are in

    health = traffic.between("/healthz", down_at, restarting_at)
    versions = traffic.between("/version", down_at, restarting_at)
    notes = traffic.between("/notes", down_at, restarting_at)
    print(f"\noutage {OUTAGE_SECONDS:.0f} s, {NOTES_PER_SECOND}/s /notes beside {VERSION_PER_SECOND}/s /version:"
          f"\n  /healthz: {summary(health)}\n  /version: {summary(versions)}\n  /notes:   {summary(notes)}"
          f"\n  /notes answered 200 again {recovered_at - up_at:.1f} s after the database was back")
    assert len(health) >= OUTAGE_SECONDS / HEALTH_CHECK_INTERVAL_SECONDS - 2
    # No probe failed (a 0 is a probe that timed out): the load balancer never sees this host unhealthy.
    assert [o.status for o in health] == [200] * len(health), summary(health)
    assert max(o.seconds for o in health) < HEALTH_CHECK_TIMEOUT_SECONDS
    assert versions and {o.status for o in versions} == {200}, summary(versions)
    # Database-backed requests fail quickly and say so; they do not time out.
    # A request still waiting when the restart began (the breaker's probe connecting) may be served once the
    # database is back, and rightly so: only answers given while it was down are the outage's.
    answered_while_down = [o for o in notes if o.sent_at + o.seconds < restarting_at]
    assert answered_while_down and {o.status for o in answered_while_down} == {503}, (summary(answered_while_down), [
        (o.status, round(o.sent_at - down_at, 2), round(o.seconds, 2)) for o in answered_while_down if o.status != 503])
    assert sorted(o.seconds for o in notes)[len(notes) // 2] < 0.5, summary(notes)
