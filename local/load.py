"""Steady load: a bounded, open-loop HTTP load generator (test harness, not product).

It sends GET requests to one URL at a fixed rate for a fixed duration and records every request, so a
benchmark can say what clients saw while a release switched versions.

Bounds (it always stops by itself):
- the URL's host must be an IP literal in 127.0.0.0/8, ::1, or one of the addresses the caller passes
  in `allowed` (e.g. a box's container address). Names are never resolved, so nothing can leave the
  machine by accident; a refused URL raises `AddressNotAllowed` before any thread starts.
- exactly `round(rate * duration)` requests are scheduled, at `start + i / rate`.
- a request not yet sent `grace` seconds after the last scheduled instant is not sent (recorded with
  outcome "not sent"); each request has `timeout` seconds in all. So a run lasts at most
  `duration + grace + timeout` seconds, plus a thread hand-off; in-flight requests past that bound are
  recorded as "timeout" and their late answers dropped.

Open loop: a scheduler thread hands each request to a worker pool that grows on demand (up to
`max_workers`, by default enough to keep the schedule against a server that never answers), so a slow
server does not slow the schedule. A request the pool could not start on time is still sent and
recorded with its real send time. A new TCP connection per request by default (`keep_alive=True`
reuses one connection per worker thread instead). Latencies are measured in this process, so on a busy
machine they include waits for a CPU; `send_lag_p99_ms` in the summary says whether the generator kept
its schedule. Measured here (2 cores, load average 7-9 from other work, a threaded Python server on the
same cores, `python -m local.load http://127.0.0.1:PORT/version --rate R --duration 10 --json`): at 100,
200, 400 and 800 req/s every request was sent and answered 200, send lag p99 5-120 ms (the spikes follow
the other work); at 1200 req/s it falls behind (lag p99 0.3 s, timeouts). The generator used about a
quarter of a core at 800 req/s. A server with a small listen backlog (http.server's default is 5) drops
connection attempts under bursts: those show as ~1 s latencies (SYN retransmits) or timeouts.

API
    check_url(url, allowed=()) -> ParsedTarget      raises AddressNotAllowed / ValueError
    run_load(url, *, rate, duration, timeout=2.0, grace=1.0, allowed=(), version_header=None,
             keep_alive=False, max_workers=None) -> LoadRun          blocking; returns the finished run
    with LoadRun(url, rate=100, duration=15, ...) as run:            runs in the background
        run.mark("switch")                     -> float (monotonic); named instants for windows
        ...                                                          leaving the block waits for the end
        run.stop()                             -> LoadRun; end early (the bound is then only a safety net)
    run.records                                -> list[Record], in schedule order (after stop(): only
                                                  the requests that were due before it)
    run.summary(since=None, until=None, version=None, marker=None) -> Summary
        since/until/marker: a mark name, or a monotonic time (`run.started + offset` for offsets)

Pure functions over records (bench/rollout.py calls them; tests feed them hand-made records):
    summarize(records, *, start, end, since=None, until=None, version=None, marker=None) -> Summary
    longest_gap(records, start, end) -> float
    percentile(values, fraction) -> float | None
    switch_seconds(records, version, marker) -> float | None

A Record holds monotonic times (scheduled, sent, ended), the outcome ("200", "503", "refused", "reset",
"timeout", "empty reply", "bad reply", "not sent", "error: <name>"), the HTTP status, and the version
that answered: the JSON body's "version" (GET /version of the reference service), or the response
header named by `version_header`.

python -m local.load URL --rate N --duration S [--timeout S] [--allow ADDR ...] [--version-header H]
                         [--keep-alive] [--json]     prints the summary of one run
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import queue
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence
from urllib.parse import urlsplit

LOOPBACK_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
MAX_BODY_BYTES = 64 * 1024
MAX_RATE = 2000.0
MAX_DURATION = 3600.0
NOT_SENT = "not sent"
# A client's patience where what counts is whether a request was served, not how fast: the release walk's load and
# the end-to-end tests. They share 2 cores with booting worlds, and in CI the whole machine once stalled ~2 s (the
# generator's own send lag p99 1 s): requests nothing had dropped outlived the 2 s default. 10 s still catches a
# request the product drops or holds (a reset, a refusal, a 5xx, a hang) and stays far below a browser's or an
# ALB's patience (its idle timeout is 60 s). `make bench-rollout` keeps the 2 s default: how fast is its question.
PATIENT_CLIENT_SECONDS = 10.0


class AddressNotAllowed(ValueError):
    """The URL names a host the load generator must not send to."""


@dataclass(frozen=True)
class ParsedTarget:
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Record:
    index: int
    scheduled: float
    sent: float | None  # None: never sent (the pool could not start it within the bound)
    ended: float | None
    outcome: str
    status: int | None = None
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def failed(self) -> bool:
        return self.sent is not None and not self.ok

    @property
    def latency_s(self) -> float | None:
        if self.sent is None or self.ended is None:
            return None
        return self.ended - self.sent


@dataclass(frozen=True)
class Summary:
    sent: int
    failed: int
    not_sent: int
    outcomes: dict[str, int]  # every outcome seen, successes included
    longest_gap_s: float
    p50_ms: float | None  # latency of successful responses only: a refusal's 0.1 ms is not a latency
    p99_ms: float | None
    send_lag_p99_ms: float | None  # how late requests left against their schedule: the generator keeping up
    versions: dict[str, int]
    switch_s: float | None

    def as_dict(self) -> dict:
        return asdict(self)


def check_url(url: str, allowed: Iterable[str] = ()) -> ParsedTarget:
    """Parse `url` and refuse any host that is not loopback or explicitly allowed (never resolves names)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"URL {url!r}: scheme {parts.scheme!r} is not supported; use http://")
    host = parts.hostname
    if not host:
        raise ValueError(f"URL {url!r} has no host")
    allowed_networks = []
    for entry in allowed:
        try:
            allowed_networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as error:
            raise ValueError(f"allowed address {entry!r} is not an IP address or network") from error
    allowed_text = "127.0.0.0/8, ::1" + "".join(f", {net}" for net in allowed_networks)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise AddressNotAllowed(
            f"URL {url!r}: host {host!r} is not an IP address; names are never resolved. Allowed: {allowed_text}"
        ) from None
    if not any(address in net for net in (*LOOPBACK_NETWORKS, *allowed_networks)):
        raise AddressNotAllowed(f"URL {url!r}: address {address} is not allowed. Allowed: {allowed_text}")
    try:
        port = parts.port or 80
    except ValueError as error:
        raise ValueError(f"URL {url!r}: {error}") from error
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedTarget(host=str(address), port=port, path=path)


def _error_kind(error: BaseException) -> str:
    # RemoteDisconnected is a ConnectionResetError: the peer closed without a status line.
    if isinstance(error, http.client.RemoteDisconnected):
        return "empty reply"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(error, http.client.IncompleteRead):
        return "reset"
    if isinstance(error, http.client.HTTPException):
        return "bad reply"
    return f"error: {type(error).__name__}"


def _version_from(response: http.client.HTTPResponse, body: bytes, version_header: str | None) -> str | None:
    if version_header:
        return response.getheader(version_header)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    version = payload.get("version") if isinstance(payload, dict) else None
    return version if isinstance(version, str) else None


# ---- pure functions over records -------------------------------------------------------------------

def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction in [0, 1]); None for no values."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction {fraction!r} must be between 0 and 1")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def longest_gap(records: Iterable[Record], start: float, end: float) -> float:
    """Longest stretch in [start, end] with no successful response completing.

    Counts the stretch from `start` to the first success and from the last success to `end`; with no
    success at all it is the whole window."""
    if end < start:
        raise ValueError(f"window end {end} is before its start {start}")
    moments = sorted(r.ended for r in records if r.ok and r.ended is not None and start <= r.ended <= end)
    edges = [start, *moments, end]
    return max(b - a for a, b in zip(edges, edges[1:]))


def switch_seconds(records: Iterable[Record], version: str, marker: float) -> float | None:
    """Seconds from `marker` to the first success of `version` after which no other version answered.

    Answers are ordered by completion time. None when another version answered last, or `version` never
    succeeded after the last other answer. 0.0 when that success came before the marker (already switched)."""
    answered = sorted((r for r in records if r.version is not None and r.ended is not None), key=lambda r: r.ended)
    last_other = max((r.ended for r in answered if r.version != version), default=None)
    for record in answered:
        if record.version == version and record.ok and (last_other is None or record.ended > last_other):
            return max(0.0, record.ended - marker)
    return None


def summarize(records: Sequence[Record], *, start: float, end: float, since: float | None = None,
              until: float | None = None, version: str | None = None, marker: float | None = None) -> Summary:
    """Summary of the records scheduled in [since, until] (default: every record; gaps over [start, end]).

    The longest gap is measured over [since, until] from every success completing in it (whenever it was
    scheduled). switch_s needs `version` and `marker` and looks at every record, not only the window."""
    lo = start if since is None else since
    hi = end if until is None else until
    # Without bounds every record counts, even those a stopped run never got to schedule.
    chosen = [r for r in records if (since is None or r.scheduled >= since) and (until is None or r.scheduled <= until)]
    outcomes: dict[str, int] = {}
    versions: dict[str, int] = {}
    for record in chosen:
        outcomes[record.outcome] = outcomes.get(record.outcome, 0) + 1
        if record.version is not None:
            versions[record.version] = versions.get(record.version, 0) + 1
    latencies = [r.latency_s * 1000 for r in chosen if r.ok and r.latency_s is not None]
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    lag = percentile([(r.sent - r.scheduled) * 1000 for r in chosen if r.sent is not None], 0.99)
    switch = None
    if version is not None and marker is not None:
        switch = switch_seconds(records, version, marker)
    return Summary(
        sent=sum(1 for r in chosen if r.sent is not None),
        failed=sum(1 for r in chosen if r.failed),
        not_sent=sum(1 for r in chosen if r.sent is None),
        outcomes=dict(sorted(outcomes.items())),
        longest_gap_s=round(longest_gap(records, lo, hi), 4),
        p50_ms=None if p50 is None else round(p50, 2),
        p99_ms=None if p99 is None else round(p99, 2),
        send_lag_p99_ms=None if lag is None else round(lag, 2),
        versions=dict(sorted(versions.items())),
        switch_s=None if switch is None else round(switch, 4),
    )


# ---- the run -----------------------------------------------------------------------------------

class LoadRun:
    """One bounded run in the background; see the module docstring. Start with `start()` or `with`."""

    def __init__(self, url: str, *, rate: float, duration: float, timeout: float = 2.0, grace: float = 1.0,
                 allowed: Iterable[str] = (), version_header: str | None = None, keep_alive: bool = False,
                 max_workers: int | None = None) -> None:
        self.target = check_url(url, allowed)
        self.url = url
        for name, value, top in (("rate", rate, MAX_RATE), ("duration", duration, MAX_DURATION),
                                 ("timeout", timeout, 60.0), ("grace", grace, 60.0)):
            if not isinstance(value, (int, float)) or not 0 < value <= top:
                raise ValueError(f"{name}={value!r} must be a number above 0 and at most {top}")
        self.rate, self.duration, self.timeout, self.grace = float(rate), float(duration), float(timeout), float(grace)
        self.count = max(1, round(self.rate * self.duration))
        self.version_header = version_header
        self.keep_alive = keep_alive
        # Enough threads to keep the schedule while every request waits out its timeout.
        self.max_workers = max_workers or min(1024, max(8, math.ceil(self.rate * (self.timeout + 0.5)) + 4))
        self.started: float | None = None
        self.finished: float | None = None
        self.marks: dict[str, float] = {}
        self._results: dict[int, Record] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._local = threading.local()
        self._stopped_at: float | None = None
        self._sending: dict[int, float] = {}  # send times of requests in flight, for the hard bound

    # -- lifecycle
    def start(self) -> "LoadRun":
        if self.started is not None:
            raise RuntimeError("this run was already started")
        self.started = time.monotonic()
        self._send_deadline = self.started + (self.count - 1) / self.rate + self.grace
        self._hard_deadline = self._send_deadline + self.timeout
        self._scheduler = threading.Thread(target=self._schedule, name="load-scheduler", daemon=True)
        self._scheduler.start()
        return self

    def wait(self) -> "LoadRun":
        """Block until every request has an outcome, or the hard bound passes (then in-flight = timeout)."""
        if self.started is None:
            raise RuntimeError("this run was never started")
        if self.finished is not None:
            return self
        self._scheduler.join(max(0.0, self._hard_deadline - time.monotonic()) + 0.5)
        for worker in list(self._workers):
            worker.join(max(0.0, self._hard_deadline - time.monotonic()) + 0.2)
        with self._lock:
            now = time.monotonic()
            for index in range(self.count):
                if index not in self._results:
                    scheduled = self.started + index / self.rate
                    if self._stopped_at is not None and scheduled > self._stopped_at:
                        break  # never due: a run stopped early has no record for it
                    sent = self._sending.get(index)
                    self._results[index] = (
                        Record(index, scheduled, sent, now, "timeout") if sent is not None
                        else Record(index, scheduled, None, None, NOT_SENT)
                    )
            self.finished = now
        return self

    def stop(self) -> "LoadRun":
        """Stop now: requests already due but not yet sent are recorded as not sent, later ones not at all;
        requests in flight finish (each within its timeout)."""
        if self._stopped_at is None and self.finished is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        return self.wait()

    def __enter__(self) -> "LoadRun":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.stop()
        else:
            self.wait()

    def mark(self, name: str) -> float:
        """Record a named instant (monotonic) for windows and switch_s."""
        at = time.monotonic()
        self.marks[name] = at
        return at

    # -- results
    @property
    def records(self) -> list[Record]:
        with self._lock:
            return [self._results[i] for i in sorted(self._results)]

    def _instant(self, value: float | str | None) -> float | None:
        if value is None or isinstance(value, (int, float)):
            return value
        if value not in self.marks:
            raise KeyError(f"no mark named {value!r}; marks: {', '.join(self.marks) or 'none'}")
        return self.marks[value]

    def summary(self, since: float | str | None = None, until: float | str | None = None,
                version: str | None = None, marker: float | str | None = None) -> Summary:
        records = self.records
        end = self.finished or time.monotonic()
        return summarize(records, start=self.started, end=end, since=self._instant(since),
                         until=self._instant(until), version=version, marker=self._instant(marker))

    # -- machinery
    def _schedule(self) -> None:
        for index in range(self.count):
            due = self.started + index / self.rate
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            if self._stop.is_set():
                break
            with self._lock:
                grow = self._idle == 0 and len(self._workers) < self.max_workers
                if grow:
                    worker = threading.Thread(target=self._work, name=f"load-worker-{len(self._workers)}", daemon=True)
                    self._workers.append(worker)
                else:
                    self._idle -= 1 if self._idle else 0
            if grow:
                worker.start()
            self._queue.put((index, due))
        for _ in range(len(self._workers)):
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            index, due = item
            record = self._request(index, due)
            with self._lock:
                if self.finished is None:
                    self._results.setdefault(index, record)
                self._idle += 1

    def _request(self, index: int, due: float) -> Record:
        sent = time.monotonic()
        if self._stop.is_set() or sent > self._send_deadline:
            return Record(index, due, None, None, NOT_SENT)
        with self._lock:
            self._sending[index] = sent
        deadline = min(sent + self.timeout, self._hard_deadline)
        conn = None
        try:
            conn = self._connection(deadline - sent)
            conn.request("GET", self.target.path, headers={"Connection": "keep-alive" if self.keep_alive else "close"})
            if conn.sock is not None:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
            response = conn.getresponse()
            if conn.sock is not None:
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
            body = response.read(MAX_BODY_BYTES)
            if response.length:
                response.read()  # drain what we do not look at, so a kept connection stays usable
            version = _version_from(response, body, self.version_header)
            if not self.keep_alive or response.will_close:
                self._drop(conn)
            return Record(index, due, sent, time.monotonic(), str(response.status), response.status, version)
        except Exception as error:  # noqa: BLE001 - every request gets a record, whatever the server did
            if conn is not None:
                self._drop(conn)
            return Record(index, due, sent, time.monotonic(), _error_kind(error))

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None) if self.keep_alive else None
        if conn is None:
            conn = http.client.HTTPConnection(self.target.host, self.target.port, timeout=max(0.001, timeout))
            if self.keep_alive:
                self._local.conn = conn
        elif conn.sock is not None:
            conn.sock.settimeout(max(0.001, timeout))
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None


def run_load(url: str, **options) -> LoadRun:
    """Run to the end (blocking) and return the finished run."""
    return LoadRun(url, **options).start().wait()


def main(argv: list[str] | None = None, stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = argparse.ArgumentParser(prog="python -m local.load", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://ADDRESS:PORT/PATH; ADDRESS loopback or given with --allow")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds per request (default 2)")
    parser.add_argument("--allow", action="append", default=[], metavar="ADDR",
                        help="a non-loopback address (or network) that may be targeted, e.g. a box's")
    parser.add_argument("--version-header", help="read the answering version from this header, not the JSON body")
    parser.add_argument("--keep-alive", action="store_true", help="reuse one connection per worker")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        run = LoadRun(args.url, rate=args.rate, duration=args.duration, timeout=args.timeout, allowed=args.allow,
                      version_header=args.version_header, keep_alive=args.keep_alive)
    except ValueError as error:
        print(f"local.load: {error}", file=stderr)
        return 2
    with run:
        pass
    summary = run.summary()
    if args.json:
        print(json.dumps(summary.as_dict(), sort_keys=True), file=stdout)
    else:
        for key, value in summary.as_dict().items():
            print(f"{key:14} {value}", file=stdout)
        print(f"{'wall_s':14} {run.finished - run.started:.3f}", file=stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
