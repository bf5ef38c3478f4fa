"""The load generator (local/load.py): bounded, counts every request, and its summary is right.

Runs against a small threaded HTTP server on 127.0.0.1 started here; rates and durations are small and
the only time bounds asserted are generous ceilings (the run must stop by itself)."""
from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from local import load
from local.load import AddressNotAllowed, LoadRun, Record, longest_gap, percentile, summarize, switch_seconds


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        with server.lock:
            server.hits += 1
            mode, version = server.mode, server.version
        if mode == "hang":
            server.release.wait(10)
            return
        if mode == "close":
            return  # closes without a status line
        status = 503 if mode == "5xx" else 200
        body = json.dumps({"version": version}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Release", version)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server:
    """A /version server whose version and behaviour (ok, 5xx, close, hang) the test switches."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.hits = 0
        self.httpd.mode = "ok"
        self.httpd.version = "1.0.0"
        self.httpd.release = threading.Event()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/version"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    def set(self, **state):
        with self.httpd.lock:
            for key, value in state.items():
                setattr(self.httpd, key, value)

    @property
    def hits(self) -> int:
        with self.httpd.lock:
            return self.httpd.hits

    def stop(self):
        if self.running:
            self.running = False
            self.httpd.release.set()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.stop()


def _load_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("load-")]


def test_every_scheduled_request_is_sent_and_recorded(server):
    run = load.run_load(server.url, rate=50, duration=1.0)
    records = run.records
    assert len(records) == 50 == server.hits
    assert [r.index for r in records] == list(range(50))
    summary = run.summary()
    assert (summary.sent, summary.failed, summary.not_sent) == (50, 0, 0)
    assert summary.outcomes == {"200": 50}
    assert summary.versions == {"1.0.0": 50}
    assert summary.p50_ms is not None and summary.p50_ms <= summary.p99_ms
    # Open loop: each request is scheduled 1/rate after the previous one, and sent at or after its slot.
    gaps = {round(b.scheduled - a.scheduled, 6) for a, b in zip(records, records[1:])}
    assert gaps == {0.02}
    assert all(r.sent >= r.scheduled and r.ended >= r.sent for r in records)
    assert not _load_threads()


def test_keep_alive_reuses_connections_and_still_counts_every_request(server):
    run = load.run_load(server.url, rate=40, duration=0.5, keep_alive=True)
    assert run.summary().outcomes == {"200": 20}
    assert server.hits == 20


def test_a_server_stopped_mid_run_shows_as_refused_connections_and_a_gap(server):
    with LoadRun(server.url, rate=40, duration=1.5) as run:
        time.sleep(0.5)
        run.mark("stop")
        server.stop()
        closed = time.monotonic()
    summary = run.summary()
    assert summary.sent == 60
    assert summary.outcomes["refused"] > 0
    # A request in flight as the listener closes may see a reset or an empty reply instead.
    assert set(summary.outcomes) <= {"200", "refused", "reset", "empty reply"}
    assert summary.failed == 60 - summary.outcomes["200"]
    # No success for a request sent after the listener closed (one sent before may still be answered, however
    # late a busy machine lets it finish): the longest gap runs from the last success to the end of the run.
    assert max(r.sent for r in run.records if r.ok) <= closed
    last_success = max(r.ended for r in run.records if r.ok)
    assert summary.longest_gap_s == pytest.approx(run.finished - last_success, abs=1e-3)
    # Only the window after the stop: nothing succeeded in it.
    after = run.summary(since="stop")
    assert after.failed == after.sent > 0 and after.versions == {}


@pytest.mark.parametrize("mode, outcome", [("5xx", "503"), ("close", "empty reply")])
def test_server_errors_are_failures_by_kind(server, mode, outcome):
    server.set(mode=mode)
    summary = load.run_load(server.url, rate=20, duration=0.5).summary()
    assert summary.outcomes == {outcome: 10}
    assert summary.failed == 10
    assert summary.p50_ms is None  # latency is over successful responses only


def test_a_version_switch_mid_run_shows_in_versions_and_switch_s(server):
    with LoadRun(server.url, rate=40, duration=1.5) as run:
        time.sleep(0.5)
        marker = run.mark("switch")
        server.set(version="2.0.0")
    summary = run.summary(version="2.0.0", marker="switch")
    assert set(summary.versions) == {"1.0.0", "2.0.0"}
    assert sum(summary.versions.values()) == 60
    assert summary.switch_s is not None and summary.switch_s >= 0
    # From marker + switch_s on only 2.0.0 answered, and 2.0.0 answered right then.
    switched = marker + summary.switch_s
    assert {r.version for r in run.records if r.ended > switched + 1e-3} == {"2.0.0"}
    assert any(abs(r.ended - switched) < 1e-3 and r.version == "2.0.0" for r in run.records)
    assert any(r.version == "1.0.0" and r.ended < switched for r in run.records)
    # The window from the switch on saw the new version answer.
    assert run.summary(since="switch").versions.get("2.0.0", 0) > 0


def test_version_from_a_named_header(server):
    server.set(version="3.1.4")
    run = load.run_load(server.url.replace("/version", "/anything"), rate=10, duration=0.3, version_header="X-Release")
    assert run.summary().versions == {"3.1.4": 3}


def test_it_stops_by_itself_when_the_server_hangs(server):
    server.set(mode="hang")
    began = time.monotonic()
    run = load.run_load(server.url, rate=20, duration=0.5, timeout=0.5, grace=0.2)
    took = time.monotonic() - began
    summary = run.summary()
    assert summary.outcomes == {"timeout": 10}
    assert summary.failed == 10 and summary.versions == {}
    # Generous ceiling over the documented bound duration + grace + timeout.
    assert took < 0.5 + 0.2 + 0.5 + 2.0
    assert all(r.ended - r.sent <= 0.5 + 0.2 + 2.0 for r in run.records)


def test_requests_the_pool_cannot_start_on_time_are_sent_late_or_recorded_as_not_sent(server):
    # A one-thread pool against a hung server cannot send on time: late sends carry their real send
    # time, and what cannot be sent within the grace is recorded as not sent, never dropped.
    server.set(mode="hang")
    run = load.run_load(server.url, rate=20, duration=0.5, timeout=0.3, grace=0.1, max_workers=1)
    records = run.records
    assert len(records) == 10
    summary = run.summary()
    assert summary.sent + summary.not_sent == 10
    assert summary.not_sent > 0 and summary.sent > 0
    late = [r for r in records if r.sent is not None and r.index > 0]
    assert all(r.sent - r.scheduled > 0.2 for r in late)


def test_an_error_inside_the_block_stops_the_run_and_records_only_what_was_due(server):
    with pytest.raises(RuntimeError, match="boom"):
        with LoadRun(server.url, rate=20, duration=5) as run:
            time.sleep(0.3)
            raise RuntimeError("boom")
    records = run.records
    summary = run.summary()
    assert summary.sent == server.hits and 0 < summary.sent < 100
    assert len(records) == summary.sent + summary.not_sent < 100
    assert [r.index for r in records] == list(range(len(records)))
    assert summary.outcomes.get("200") == summary.sent
    assert not _load_threads()


def test_stop_ends_a_long_run_early_and_its_summary_counts_only_what_was_due(server):
    run = LoadRun(server.url, rate=20, duration=600).start()
    time.sleep(0.5)
    run.stop()
    summary = run.summary()
    assert 0 < summary.sent == server.hits < 40
    assert summary.not_sent <= 1 and summary.failed == 0
    assert run.finished - run.started < 30  # generous: nowhere near the 600 s bound
    assert not _load_threads()


@pytest.mark.parametrize("url", ["http://10.1.2.3:8080/version", "http://localhost:{port}/version",
                                 "http://example.com/version", "http://[fe80::1]/version"])
def test_addresses_that_are_not_loopback_or_allowed_are_refused_before_anything_is_sent(server, url):
    url = url.format(port=server.port)
    with pytest.raises(AddressNotAllowed) as raised:
        LoadRun(url, rate=10, duration=1)
    assert "127.0.0.0/8, ::1" in str(raised.value)
    assert server.hits == 0 and not _load_threads()


def test_an_address_the_caller_allows_is_accepted_and_others_are_still_refused():
    target = load.check_url("http://172.18.0.5:8080/version", allowed=["172.18.0.5"])
    assert (target.host, target.port, target.path) == ("172.18.0.5", 8080, "/version")
    with pytest.raises(AddressNotAllowed, match="172.18.0.6"):
        load.check_url("http://172.18.0.6:8080/version", allowed=["172.18.0.5"])
    assert load.check_url("http://[::1]:9/v?x=1") == load.ParsedTarget("::1", 9, "/v?x=1")
    assert load.check_url("http://127.0.0.2/").port == 80
    with pytest.raises(ValueError, match="scheme 'https'"):
        load.check_url("https://127.0.0.1/version")
    with pytest.raises(ValueError, match="rate=0"):
        LoadRun("http://127.0.0.1:1/", rate=0, duration=1)


def test_cli_prints_the_summary_as_json(server):
    out, err = io.StringIO(), io.StringIO()
    code = load.main([server.url, "--rate", "20", "--duration", "0.5", "--json"], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    summary = json.loads(out.getvalue())
    assert (summary["sent"], summary["failed"], summary["versions"]) == (10, 0, {"1.0.0": 10})


def test_cli_refuses_a_non_loopback_address_with_exit_2():
    out, err = io.StringIO(), io.StringIO()
    code = load.main(["http://10.1.2.3/version", "--rate", "5", "--duration", "1"], stdout=out, stderr=err)
    assert code == 2 and "10.1.2.3 is not allowed" in err.getvalue() and out.getvalue() == ""


# ---- pure functions on hand-made records ------------------------------------------------------------

def _ok(index, ended, version="1", sent=None):
    sent = ended - 0.01 if sent is None else sent
    return Record(index, scheduled=sent, sent=sent, ended=ended, outcome="200", status=200, version=version)


def _fail(index, ended, outcome="refused"):
    return Record(index, scheduled=ended - 0.01, sent=ended - 0.01, ended=ended, outcome=outcome)


def test_longest_gap_counts_the_stretch_before_the_first_and_after_the_last_success():
    assert longest_gap([_ok(0, 1.0), _ok(1, 2.0)], 0.0, 10.0) == 8.0  # after the last
    assert longest_gap([_ok(0, 7.0), _ok(1, 8.0)], 0.0, 10.0) == 7.0  # before the first
    assert longest_gap([_ok(0, 1.0), _ok(1, 5.5), _ok(2, 6.0)], 0.0, 6.5) == 4.5  # in between
    assert longest_gap([_fail(0, 1.0), _fail(1, 2.0)], 0.0, 3.0) == 3.0  # no success: the whole window
    assert longest_gap([], 2.0, 2.0) == 0.0
    # Successes outside the window do not shorten it; failures never count.
    assert longest_gap([_ok(0, 1.0), _fail(1, 3.0), _ok(2, 9.0)], 2.0, 5.0) == 3.0
    with pytest.raises(ValueError, match="before its start"):
        longest_gap([], 5.0, 1.0)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile([1], 1.5)


def test_switch_s_waits_for_the_last_answer_of_another_version():
    records = [_ok(0, 1.0, "1"), _ok(1, 2.0, "2"), _ok(2, 3.0, "1"), _ok(3, 4.0, "2"), _ok(4, 5.0, "2")]
    # "1" answered again at 3.0 after "2" first did at 2.0: the switch completes at 4.0.
    assert switch_seconds(records, "2", marker=0.5) == 3.5
    # The old version answered last: not switched.
    assert switch_seconds([*records, _ok(5, 6.0, "1")], "2", marker=0.5) is None
    # The new version never answered.
    assert switch_seconds([_ok(0, 1.0, "1")], "2", marker=0.5) is None
    # A failure carrying the new version does not complete the switch; the next success does.
    failing_new = Record(9, 3.4, 3.4, 3.5, "503", 503, "2")
    assert switch_seconds([_ok(0, 1.0, "1"), failing_new, _ok(1, 4.5, "2")], "2", marker=1.0) == 3.5
    # Already switched before the marker: 0.
    assert switch_seconds([_ok(0, 1.0, "2"), _ok(1, 2.0, "2")], "2", marker=1.5) == 0.0


def test_summarize_counts_a_window_and_the_whole_run():
    records = [_ok(0, 1.0, "1"), _fail(1, 2.0), _fail(2, 3.0, "503"), _ok(3, 4.0, "2"),
               Record(4, 4.5, None, None, load.NOT_SENT), _ok(5, 5.0, "2")]
    whole = summarize(records, start=0.0, end=6.0, version="2", marker=1.5)
    assert (whole.sent, whole.failed, whole.not_sent) == (5, 2, 1)
    assert whole.outcomes == {"200": 3, "503": 1, "not sent": 1, "refused": 1}
    assert whole.versions == {"1": 1, "2": 2}
    assert whole.longest_gap_s == 3.0  # from 1.0 to 4.0
    assert whole.switch_s == 2.5
    assert whole.p50_ms == pytest.approx(10.0) and whole.p99_ms == pytest.approx(10.0)
    assert whole.send_lag_p99_ms == 0.0
    late = Record(6, scheduled=5.5, sent=5.75, ended=5.8, outcome="200", status=200, version="2")
    assert summarize([*records, late], start=0.0, end=6.0).send_lag_p99_ms == pytest.approx(250.0)
    # The window [1.5, 3.5] holds the two failures (by scheduled time) and no success.
    window = summarize(records, start=0.0, end=6.0, since=1.5, until=3.5)
    assert (window.sent, window.failed, window.versions, window.p50_ms) == (2, 2, {}, None)
    assert window.longest_gap_s == 2.0
    assert window.switch_s is None
