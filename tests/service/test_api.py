"""The notes API of the current release, served by gunicorn against a real, migrated database."""

from __future__ import annotations

import http.client
import json

import pytest

from service_harness import free_port, http_request, run_migrate

from liftoff_service.config import DatabaseSettings
from liftoff_service.releases import read_current_version


@pytest.fixture(scope="module")
def service(make_database, start_module_service):
    database = make_database()
    assert run_migrate(database).returncode == 0
    return start_module_service(database, version="1.1.0-test")


def test_liveness_version_and_readiness(service):
    assert service.request("GET", "/healthz").json() == {"status": "ok"}
    assert service.request("GET", "/version").json() == {"version": "1.1.0-test"}
    ready = service.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready", "database": "ok"})


def test_the_image_serves_the_release_in_VERSION(service):
    # Keeps this module honest when VERSION moves on: the tests below are about 1.1.0's API.
    assert read_current_version() == "1.1.0"


def test_create_get_and_list_notes(service):
    created = service.request("POST", "/notes", {"title": "Groceries", "body": "milk\neggs"})
    assert created.status == 201
    note = created.json()
    assert note["title"] == "Groceries" and note["body"] == "milk\neggs"
    assert isinstance(note["id"], int) and note["created_at"].endswith("+00:00")

    fetched = service.request("GET", f"/notes/{note['id']}")
    assert (fetched.status, fetched.json()) == (200, note)

    second = service.request("POST", "/notes", {"body": "second"}).json()
    listed = service.request("GET", "/notes").json()["notes"]
    assert [n["id"] for n in listed[:2]] == [second["id"], note["id"]]  # newest first
    assert service.request("GET", "/notes?limit=1").json()["notes"] == [second]


def test_a_note_without_title_gets_its_first_line(service):
    note = service.request("POST", "/notes", {"body": "\n  Call Alice \nabout the lease"}).json()
    assert note["title"] == "Call Alice"
    long_line = "x" * 250
    assert service.request("POST", "/notes", {"body": long_line}).json()["title"] == "x" * 200


@pytest.mark.parametrize(
    ("payload", "expected_error"),
    [
        ([1, 2], "request body must be a JSON object"),
        ({}, 'field "body" is required'),
        ({"body": 42}, 'field "body" must be a string, got int'),
        ({"body": "   "}, 'field "body" must not be blank'),
        ({"body": "x" * 10_001}, 'field "body" is 10001 characters; the limit is 10000'),
        ({"body": "ok", "title": "t" * 201}, 'field "title" is 201 characters; the limit is 200'),
        ({"body": "ok", "colour": "red"}, "unknown field(s): colour; allowed: body, title"),
    ],
)
def test_invalid_notes_are_rejected_with_the_reason(service, payload, expected_error):
    response = service.request("POST", "/notes", payload)
    assert response.status == 400
    assert expected_error in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "expected_error"),
    [
        ("POST", "/notes", b"{not json", {"Content-Type": "application/json"}, 400,
         "request body is not valid JSON"),
        ("POST", "/notes", b'{"body": "x"}', {"Content-Type": "text/plain"}, 415,
         "Content-Type must be application/json"),
        ("POST", "/notes", b"x" * 70_000, {"Content-Type": "application/json"}, 413,
         "the limit is 65536"),
        ("GET", "/notes/999999", None, {}, 404, "note 999999 does not exist"),
        ("GET", "/notes/abc", None, {}, 404, "no route for /notes/abc"),
        ("GET", "/nope", None, {}, 404, "no route for /nope"),
        ("DELETE", "/notes/1", None, {}, 405, "method DELETE is not allowed here; use GET"),
        ("POST", "/healthz", None, {}, 405, "use GET, HEAD"),
        ("GET", "/notes?limit=0", None, {}, 400, "limit='0' must be an integer from 1 to 200"),
        ("GET", "/notes?limit=500", None, {}, 400, "limit='500' must be an integer from 1 to 200"),
        ("GET", "/notes?page=2", None, {}, 400, "unknown query parameter(s): page"),
    ],
)
def test_bad_requests_get_a_clear_error(service, method, path, body, headers, status,
                                        expected_error):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    assert response.status == status
    assert expected_error in json.loads(payload)["error"]
    if status == 405:
        assert response.getheader("Allow")


def test_previous_release_rejects_a_title_it_does_not_know(make_database, start_service):
    database = make_database()
    assert run_migrate(database).returncode == 0
    old = start_service(database, release="1.0.0", version="1.0.0")
    response = old.request("POST", "/notes", {"body": "b", "title": "t"})
    assert response.status == 400
    assert "unknown field(s): title; allowed: body" in response.json()["error"]


def test_liveness_holds_and_readiness_fails_without_a_database(start_service):
    nowhere = DatabaseSettings(host="127.0.0.1", port=free_port(), name="absent",
                               user="nobody", password="x")
    service = start_service(nowhere, version="1.1.0")
    assert service.request("GET", "/healthz").status == 200
    ready = service.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "unavailable", "database": "unreachable"})
    notes = service.request("GET", "/notes")
    assert (notes.status, notes.json()) == (503, {"error": "database unavailable; retry later"})
    # After those failures liveness must still answer: the ALB would otherwise kill a healthy
    # instance because of a DB outage.
    assert http_request(service.port, "GET", "/healthz").status == 200


def test_every_log_line_is_json_and_requests_carry_the_version(make_database, start_service):
    database = make_database()
    assert run_migrate(database).returncode == 0
    service = start_service(database, version="1.1.0")
    service.request("POST", "/notes", {"body": "logged"})
    service.request("GET", "/healthz")
    assert service.stop() == 0

    lines = [json.loads(line) for line in service.logs().splitlines()]  # fails on any non-JSON
    requests = [line for line in lines if line["message"] == "request"]
    assert [(r["method"], r["path"], r["status"], r["version"]) for r in requests] == [
        ("POST", "/notes", 201, "1.1.0"),  # /healthz is not logged: the ALB probes it constantly
    ]
    assert any(line["logger"] == "gunicorn.error" for line in lines)
