"""The WSGI application: health, version, and the notes API of one release."""

from __future__ import annotations

import json
import logging
import re
import time
from types import ModuleType
from typing import Callable, Iterable
from urllib.parse import parse_qs

from .api import BadRequest, load_release_api
from .config import Settings
from .db import Database, DatabaseUnavailable

log = logging.getLogger("liftoff.service")

MAX_REQUEST_BYTES = 64 * 1024
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 200
READINESS_TIMEOUT_SECONDS = 2
_NOTE_PATH = re.compile(r"^/notes/(\d{1,18})$")

_REASONS = {
    200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
    415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


def _read_json_body(environ: dict) -> object:
    content_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HttpError(415, f"Content-Type must be application/json, got {content_type or 'none'!r}")
    raw_length = environ.get("CONTENT_LENGTH", "")
    if not raw_length.isdigit():
        raise HttpError(411, "a Content-Length header is required")
    length = int(raw_length)
    if length > MAX_REQUEST_BYTES:
        raise HttpError(413, f"request body is {length} bytes; the limit is {MAX_REQUEST_BYTES}")
    raw = environ["wsgi.input"].read(length)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HttpError(400, f"request body is not valid JSON: {error}") from error


def _list_limit(query_string: str) -> int:
    params = parse_qs(query_string, keep_blank_values=True)
    unknown = sorted(set(params) - {"limit"})
    if unknown:
        raise HttpError(400, f"unknown query parameter(s): {', '.join(unknown)}; allowed: limit")
    values = params.get("limit")
    if not values:
        return DEFAULT_LIST_LIMIT
    raw = values[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST_LIMIT:
        raise HttpError(400, f"limit={raw!r} must be an integer from 1 to {MAX_LIST_LIMIT}")
    return int(raw)


def _allow(method: str, allowed: tuple[str, ...]) -> None:
    if method not in allowed:
        raise HttpError(
            405, f"method {method} is not allowed here; use {', '.join(allowed)}",
            headers=[("Allow", ", ".join(allowed))],
        )


class ServiceApp:
    def __init__(self, settings: Settings, *, api: ModuleType, database: Database) -> None:
        self.settings = settings
        self.api = api
        self.database = database

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.monotonic()
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "") or "/"
        extra_headers: list[tuple[str, str]] = []
        try:
            status, payload = self.route(method, path, environ)
        except HttpError as error:
            status, payload, extra_headers = error.status, {"error": error.message}, error.headers
        except BadRequest as error:
            status, payload = 400, {"error": str(error)}
        except DatabaseUnavailable as error:
            log.warning("database unavailable", extra={"path": path, "error": str(error)})
            status, payload = 503, {"error": "database unavailable; retry later"}
        except Exception:
            log.exception("unhandled error", extra={"method": method, "path": path})
            status, payload = 500, {"error": "internal error"}
        body = json.dumps(payload).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ] + extra_headers
        start_response(f"{status} {_REASONS[status]}", headers)
        if path != "/healthz":  # the ALB probes every few seconds; those lines are noise
            log.info(
                "request",
                extra={
                    "method": method, "path": path, "status": status,
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    "version": self.settings.app_version,
                },
            )
        return [body]

    def route(self, method: str, path: str, environ: dict) -> tuple[int, object]:
        if path == "/healthz":
            _allow(method, ("GET", "HEAD"))
            return 200, {"status": "ok"}
        if path == "/readyz":
            _allow(method, ("GET", "HEAD"))
            return self.readiness()
        if path == "/version":
            _allow(method, ("GET", "HEAD"))
            return 200, {"version": self.settings.app_version}
        if path == "/notes":
            _allow(method, ("GET", "POST"))
            if method == "POST":
                payload = _read_json_body(environ)
                with self.database.connection() as conn:
                    return 201, self.api.create_note(conn, payload)
            limit = _list_limit(environ.get("QUERY_STRING", ""))
            with self.database.connection() as conn:
                return 200, {"notes": self.api.list_notes(conn, limit=limit)}
        match = _NOTE_PATH.match(path)
        if match:
            _allow(method, ("GET",))
            with self.database.connection() as conn:
                note = self.api.get_note(conn, int(match.group(1)))
            if note is None:
                raise HttpError(404, f"note {match.group(1)} does not exist")
            return 200, note
        raise HttpError(404, f"no route for {path}")

    def readiness(self) -> tuple[int, object]:
        try:
            self.database.ping(timeout_seconds=READINESS_TIMEOUT_SECONDS)
        except DatabaseUnavailable as error:
            log.warning("readiness check failed", extra={"error": str(error)})
            return 503, {"status": "unavailable", "database": "unreachable"}
        return 200, {"status": "ready", "database": "ok"}


def create_app(settings: Settings, *, api_release: str, max_connections: int) -> ServiceApp:
    return ServiceApp(
        settings,
        api=load_release_api(api_release),
        database=Database(settings.database, max_connections=max_connections),
    )
