"""SIGTERM: stop taking connections, finish what is in flight, exit within the stop timeout."""

from __future__ import annotations

import signal
import threading
import time

from service_harness import connect, http_request, run_migrate, wait_until

# The platform's stop timeout is 10-15 s; after it comes SIGKILL.
PLATFORM_STOP_TIMEOUT_SECONDS = 10


def service_backend_waiting_on_a_lock(database) -> bool:
    with connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'liftoff-service' AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] > 0


def refuses_new_requests(port: int) -> bool:
    try:
        http_request(port, "GET", "/healthz", timeout=0.5)
    except OSError:
        return True
    return False


def test_an_in_flight_request_completes_after_sigterm(database, start_service):
    assert run_migrate(database).returncode == 0
    service = start_service(database, version="1.1.0")
    results: dict[str, object] = {}

    with connect(database) as locker:
        # Hold the table so the POST below is provably in flight (blocked inside the DB).
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")

        def post_note():
            try:
                results["response"] = service.request("POST", "/notes", {"body": "in flight"},
                                                      timeout=30)
            except Exception as error:  # the assertion below reports it
                results["error"] = error

        client = threading.Thread(target=post_note)
        client.start()
        wait_until(lambda: service_backend_waiting_on_a_lock(database), deadline_seconds=10,
                   what="the request to block on the table lock")

        signalled_at = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: refuses_new_requests(service.port), deadline_seconds=5,
                   what="the service to stop taking new requests")
        assert service.process.poll() is None, "exited with a request still in flight"

        locker.execute("COMMIT")

    client.join(timeout=30)
    assert "error" not in results, results.get("error")
    response = results["response"]
    assert response.status == 201 and response.json()["body"] == "in flight"

    service.process.wait(timeout=PLATFORM_STOP_TIMEOUT_SECONDS)
    assert service.process.returncode == 0
    assert time.monotonic() - signalled_at < PLATFORM_STOP_TIMEOUT_SECONDS
    with connect(database) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("in flight",)]


def test_a_stuck_request_cannot_hold_the_exit_past_the_stop_timeout(database, start_service):
    assert run_migrate(database).returncode == 0
    service = start_service(database, version="1.1.0")
    with connect(database) as locker:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        client = threading.Thread(
            target=lambda: _ignore_errors(lambda: service.request("GET", "/notes", timeout=30)),
        )
        client.start()
        wait_until(lambda: service_backend_waiting_on_a_lock(database), deadline_seconds=10,
                   what="the request to block on the table lock")

        signalled_at = time.monotonic()
        service.process.send_signal(signal.SIGTERM)
        service.process.wait(timeout=PLATFORM_STOP_TIMEOUT_SECONDS)
        assert time.monotonic() - signalled_at < PLATFORM_STOP_TIMEOUT_SECONDS
        locker.execute("ROLLBACK")
    client.join(timeout=30)


def _ignore_errors(call):
    try:
        call()
    except Exception:
        pass
