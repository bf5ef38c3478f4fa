"""A loopback HTTP proxy in front of the emulator that can hold, drop, pause or fail one kind of AWS call.

The release tool's truth under faults is tested by making the fault exact: "SIGTERM while UpdateStack
is in flight" needs the UpdateStack call to be in flight when the signal comes, and "the final ledger
write is rejected" needs exactly that write to fail. Point a client at `FaultProxy.endpoint` instead
of the emulator's; every call passes through unchanged except those a `Rule` matches:

- `hold`: the call waits at the proxy (not yet forwarded) until `rule.release()`; `rule.matched` is set
  when it arrives, so a test acts at the very moment the call is in flight;
- `pause`: forwarded after `seconds`;
- `drop`: the connection is closed without an answer (a lost connection; botocore sees it as such);
- `fail`: answered with an AWS error (`code`, `message`, HTTP `status`) in the call's protocol, never
  forwarded (e.g. a rejected DynamoDB write).

A rule matches on the operation (`UpdateStack`, `UpdateItem`: the query protocol's `Action=` or the
JSON protocol's `X-Amz-Target` suffix) and, optionally, a substring of the request body; it applies
to the first `times` matching calls (None: all), and only while armed (`rule.armed`, default on).
`calls` lists every operation seen, in order, with what the proxy did to it.

Harness only: nothing in the product knows it exists.
"""
from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ACTIONS = ("hold", "drop", "pause", "fail")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length"}
HOLD_LIMIT_SECONDS = 120.0  # a forgotten hold must not hang a test run forever


@dataclass
class Rule:
    operation: str
    action: str
    contains: str = ""
    times: int | None = 1
    seconds: float = 0.0
    code: str = "AccessDeniedException"
    message: str = "rejected by the fault proxy"
    status: int = 400
    armed: bool = True
    hits: int = 0
    matched: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ValueError(f"fault proxy action {self.action!r} is not one of {', '.join(ACTIONS)}")

    def release(self) -> None:
        """Let held calls (and any later ones this rule holds) go on to the emulator."""
        self._released.set()

    def wait_matched(self, timeout: float) -> None:
        if not self.matched.wait(timeout):
            raise TimeoutError(f"no {self.operation} call{' containing ' + repr(self.contains) if self.contains else ''} "
                               f"reached the fault proxy within {timeout:.0f} s")

    def applies(self, operation: str, body: bytes) -> bool:
        return (self.armed and operation == self.operation and (self.times is None or self.hits < self.times)
                and (not self.contains or self.contains.encode() in body))


def operation_of(headers, body: bytes) -> str:
    """The AWS operation a request calls: JSON protocol (`X-Amz-Target: DynamoDB_20120810.UpdateItem`) or
    query protocol (`Action=UpdateStack` in the form body)."""
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    try:
        return parse_qs(body.decode("utf-8", "replace")).get("Action", [""])[0]
    except ValueError:
        return ""


def error_answer(headers, rule: Rule) -> tuple[int, dict[str, str], bytes]:
    if headers.get("X-Amz-Target"):
        content_type = headers.get("Content-Type", "application/x-amz-json-1.0")
        return rule.status, {"Content-Type": content_type}, json.dumps({"__type": rule.code, "message": rule.message}).encode()
    body = (f'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>'
            f"<Code>{rule.code}</Code><Message>{rule.message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>")
    return rule.status, {"Content-Type": "text/xml"}, body.encode()


class FaultProxy:
    def __init__(self, upstream: str):
        parsed = urlparse(upstream)
        self.upstream_host, self.upstream_port = parsed.hostname or "localhost", parsed.port or 80
        self.rules: list[Rule] = []
        self.calls: list[tuple[str, str]] = []
        self._mutex = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args):  # quiet: a test reads `calls`
                pass

            def _any(self):
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for rule in self.rules:
            rule.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        # `localhost`, as for the emulator itself (moto derives S3 buckets from the host name).
        return f"http://localhost:{self._server.server_address[1]}"

    def add(self, operation: str, action: str, **kwargs) -> Rule:
        rule = Rule(operation, action, **kwargs)
        with self._mutex:
            self.rules.append(rule)
        return rule

    def seen(self, operation: str) -> list[str]:
        """What the proxy did to each call of `operation`, in order ("passed", "held", "dropped", ...)."""
        return [what for name, what in self.calls if name == operation]

    # --- one request ----------------------------------------------------------------------------

    def _match(self, operation: str, body: bytes) -> Rule | None:
        with self._mutex:
            for rule in self.rules:
                if rule.applies(operation, body):
                    rule.hits += 1
                    return rule
        return None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        operation = operation_of(request.headers, body)
        rule = self._match(operation, body)
        what = {None: "passed", "hold": "held", "pause": "paused", "drop": "dropped", "fail": "failed"}[rule.action if rule else None]
        with self._mutex:
            self.calls.append((operation, what))
        if rule is not None:
            rule.matched.set()
            if rule.action == "drop":
                request.close_connection = True
                return  # nothing written: the client sees the connection close without an answer
            if rule.action == "fail":
                self._answer(request, *error_answer(request.headers, rule))
                return
            if rule.action == "hold":
                rule._released.wait(HOLD_LIMIT_SECONDS)
            elif rule.action == "pause":
                threading.Event().wait(rule.seconds)
        self._forward(request, body)

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            upstream.request(request.command, request.path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            payload = answer.read()
            kept = {k: v for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP}
            self._answer(request, answer.status, kept, payload)
        except OSError:
            request.close_connection = True  # the emulator went away: the client sees a lost connection
        finally:
            upstream.close()

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            request.send_response(status)
            for key, value in headers.items():
                request.send_header(key, value)
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
        except OSError:
            request.close_connection = True  # the client hung up (it was interrupted, or timed out)
