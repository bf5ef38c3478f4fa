"""The task role's credentials endpoint (local/task_credentials.py), without Docker: the variable every container
gets, the JSON the SDKs read, the ECS agent's answers to a wrong id or path, when credentials are renewed, and that
the file runs on a bare python3 (the pause container runs it with `python3 -c`)."""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from local.task_credentials import (NOT_FOUND_BODY, RELATIVE_URI_VARIABLE, AssumedRole, answer,
                                    container_environment, relative_uri, server_source)

CREDENTIALS_ID = "12345678-90ab-cdef-1234-567890abcdef"
TASK_ROLE = "arn:aws:iam::123456789012:role/staging-task"
STS_CREDENTIALS = {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret", "SessionToken": "token",
                   # botocore gives Expiration in the machine's zone; the endpoint says it in UTC.
                   "Expiration": datetime(2026, 12, 3, 18, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))}


def role() -> AssumedRole:
    return AssumedRole.from_sts(TASK_ROLE, STS_CREDENTIALS)


def test_every_container_of_a_task_with_a_role_gets_the_relative_uri_and_without_one_nothing():
    assert relative_uri(CREDENTIALS_ID) == f"/v2/credentials/{CREDENTIALS_ID}"
    assert container_environment(CREDENTIALS_ID) == {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": f"/v2/credentials/{CREDENTIALS_ID}"}
    assert RELATIVE_URI_VARIABLE == "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
    assert container_environment("") == {}


def test_the_endpoint_answers_the_task_roles_credentials_as_the_sdks_read_them():
    assert role().document() == {"RoleArn": TASK_ROLE, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "secret",
                                 "Token": "token", "Expiration": "2026-12-03T16:30:05Z"}


def test_a_role_signs_boto3_clients_with_its_session_token():
    assert role().client_arguments() == {"aws_access_key_id": "ASIAEXAMPLE", "aws_secret_access_key": "secret",
                                         "aws_session_token": "token"}


def test_credentials_are_renewed_half_an_hour_before_they_expire():
    expiration = role().expiration
    assert not role().due_for_refresh(expiration - timedelta(minutes=31))
    assert role().due_for_refresh(expiration - timedelta(minutes=30))
    assert role().due_for_refresh(expiration + timedelta(seconds=1))


def test_the_tasks_own_id_gets_its_credentials_whatever_the_query():
    document = role().document()
    for path in (relative_uri(CREDENTIALS_ID), relative_uri(CREDENTIALS_ID) + "?x=1"):
        status, content_type, body = answer(path, credentials_id=CREDENTIALS_ID, document=document)
        assert (status, content_type, json.loads(body)) == (200, "application/json", document)


@pytest.mark.parametrize("path, status, code, message", [
    ("/v2/credentials/00000000-0000-0000-0000-000000000000", 400, "InvalidIdInRequest", "CredentialsV2Request: Credentials not found"),
    (f"/v2/credentials/{CREDENTIALS_ID}x", 400, "InvalidIdInRequest", "CredentialsV2Request: Credentials not found"),
    ("/v2/credentials/", 400, "NoIdInRequest", "CredentialsV2Request: No ID in the request"),
    ("/v2/credentials", 400, "NoIdInRequest", "CredentialsV2Request: No ID in the request"),
], ids=["another id", "a longer id", "no id", "no slash"])
def test_another_or_no_id_is_the_agents_json_error(path, status, code, message):
    answered_status, content_type, body = answer(path, credentials_id=CREDENTIALS_ID, document=role().document())
    assert (answered_status, content_type) == (status, "application/json")
    assert json.loads(body) == {"code": code, "message": message, "HTTPErrorCode": status}


@pytest.mark.parametrize("path", ["/", "/v2/metadata", "/v2/credentialsX", "/v1/credentials?id=x", "/latest/meta-data/"])
def test_any_other_path_is_not_found_as_the_agents_router_answers(path):
    assert answer(path, credentials_id=CREDENTIALS_ID, document=role().document()) == (404, "text/plain; charset=utf-8",
                                                                                       NOT_FOUND_BODY)


def test_before_the_first_credentials_are_installed_the_agent_says_uninitialized():
    status, _, body = answer(relative_uri(CREDENTIALS_ID), credentials_id=CREDENTIALS_ID, document=None)
    assert status == 503 and json.loads(body)["code"] == "CredentialsUninitialized"


def test_the_file_runs_on_a_bare_python3_without_the_repository(tmp_path):
    # -I: no repository on the path, no site packages; a usage error proves every import is the standard library's.
    run = subprocess.run([sys.executable, "-I", "-c", server_source(), "help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 1 and run.stderr.startswith("usage: python3 -c SOURCE serve|install")
