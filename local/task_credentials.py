"""The task role's credentials inside a task, served the way the ECS agent serves them.

On AWS ([Amazon ECS task IAM role](https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html),
[IAM roles for tasks, best practices](https://docs.aws.amazon.com/AmazonECS/latest/bestpracticesguide/security-iam-roles.html)):
every container of a task whose definition names a `taskRoleArn` gets
`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/credentials/<credentials id>`, and the SDKs read the role's temporary
credentials from `http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` as `{"RoleArn", "AccessKeyId",
"SecretAccessKey", "Token", "Expiration"}`. A task without a task role gets no variable. The execution role's
credentials go to the agent only, never to a container.

The ECS stand-in (local/ecs_tasks.py) runs this very file as the process of a task's pause container
(`python3 -c SOURCE serve ID`), so it uses the standard library only (the box image's python3 runs it):
- `serve` sends 169.254.170.2:80 to 127.0.0.1:51679 in the task's network namespace and answers there, as the
  agent's own iptables rule and port do; a container of the task may still listen on port 80 itself;
- `install` (run with `docker exec`) takes the credentials the runner assumed in the emulator's STS on stdin, and
  returns once the endpoint answers with them; the runner installs new ones before the old ones expire.
Error answers are the agent's (aws/amazon-ecs-agent, agent/handlers/task_server_setup_test.go).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELATIVE_URI_VARIABLE = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
ENDPOINT_ADDRESS = "169.254.170.2"
AGENT_PORT = 51679  # the ECS agent's credentials port, where its iptables rule sends 169.254.170.2:80
CREDENTIALS_PATH = "/v2/credentials"
CREDENTIALS_FILE = "/run/liftoff-task-credentials.json"  # in the pause container; read at every request
READY_TIMEOUT_SECONDS = 10.0
# botocore refreshes container credentials from 15 minutes before they expire: new ones are in place well before.
REFRESH_BEFORE_EXPIRY = timedelta(minutes=30)
NOT_FOUND_BODY = "404 page not found\n"  # Go's http.NotFound, what the agent's router answers an unknown path


def relative_uri(credentials_id: str) -> str:
    return f"{CREDENTIALS_PATH}/{credentials_id}"


def container_environment(credentials_id: str) -> dict[str, str]:
    """What the agent adds to every container's environment: the variable only when the task has a role."""
    return {RELATIVE_URI_VARIABLE: relative_uri(credentials_id)} if credentials_id else {}


@dataclass(frozen=True)
class AssumedRole:
    """A role's temporary credentials, as STS AssumeRole returned them."""

    role_arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: datetime

    @classmethod
    def from_sts(cls, role_arn: str, credentials: dict) -> "AssumedRole":
        return cls(role_arn=role_arn, access_key_id=credentials["AccessKeyId"], secret_access_key=credentials["SecretAccessKey"],
                   session_token=credentials["SessionToken"], expiration=credentials["Expiration"].astimezone(timezone.utc))

    def document(self) -> dict[str, str]:
        """The endpoint's answer for the task role."""
        return {"RoleArn": self.role_arn, "AccessKeyId": self.access_key_id, "SecretAccessKey": self.secret_access_key,
                "Token": self.session_token, "Expiration": self.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def client_arguments(self) -> dict[str, str]:
        """boto3 `client(...)` keywords that sign as this role."""
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key,
                "aws_session_token": self.session_token}

    def due_for_refresh(self, now: datetime) -> bool:
        return now >= self.expiration - REFRESH_BEFORE_EXPIRY


def _error(status: int, code: str, message: str) -> tuple[int, str, str]:
    return status, "application/json", json.dumps({"code": code, "message": message, "HTTPErrorCode": status})


def answer(path: str, *, credentials_id: str, document: dict | None) -> tuple[int, str, str]:
    """(status, content type, body) the agent answers `GET path` with, for a task whose credentials id is
    `credentials_id` and whose credentials are `document` (None before the first install)."""
    route = urllib.parse.urlsplit(path).path
    if route != CREDENTIALS_PATH and not route.startswith(CREDENTIALS_PATH + "/"):
        return 404, "text/plain; charset=utf-8", NOT_FOUND_BODY
    requested = route[len(CREDENTIALS_PATH) + 1:]
    if not requested:
        return _error(400, "NoIdInRequest", "CredentialsV2Request: No ID in the request")
    if requested != credentials_id:
        return _error(400, "InvalidIdInRequest", "CredentialsV2Request: Credentials not found")
    if document is None:
        return _error(503, "CredentialsUninitialized", "CredentialsV2Request: Credentials uninitialized for ID")
    return 200, "application/json", json.dumps(document)


def server_source() -> str:
    """This file, for `python3 -c` in the pause container."""
    return Path(__file__).read_text()


# --- inside the pause container ----------------------------------------------------------------

def _installed() -> dict | None:
    try:
        return json.loads(Path(CREDENTIALS_FILE).read_text())
    except FileNotFoundError:
        return None


def serve(credentials_id: str) -> None:
    # The address on lo makes it routable on a network without a gateway; the rule sends it to the agent's port
    # for every process of the namespace (the task's containers share it).
    subprocess.run(["ip", "address", "add", f"{ENDPOINT_ADDRESS}/32", "dev", "lo"], check=True)
    subprocess.run(["iptables", "-t", "nat", "-A", "OUTPUT", "-d", f"{ENDPOINT_ADDRESS}/32", "-p", "tcp", "--dport", "80",
                    "-j", "REDIRECT", "--to-ports", str(AGENT_PORT)], check=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = answer(self.path, credentials_id=credentials_id, document=_installed())
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (BaseHTTPRequestHandler's signature)
            pass  # the credentials would not be in it, but nobody reads the pause container's output

    ThreadingHTTPServer(("127.0.0.1", AGENT_PORT), Handler).serve_forever()


def install(credentials_id: str) -> int:
    document = json.load(sys.stdin)
    written = Path(CREDENTIALS_FILE + ".new")
    written.write_text(json.dumps(document))
    written.chmod(0o600)
    os.replace(written, CREDENTIALS_FILE)  # a request never reads half a file
    url = f"http://{ENDPOINT_ADDRESS}{relative_uri(credentials_id)}"
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if json.load(response).get("AccessKeyId") == document["AccessKeyId"]:
                    return 0
                problem = "it answered other credentials"
        except (OSError, ValueError) as error:
            problem = str(error)
        if time.monotonic() > deadline:
            print(f"the task credentials endpoint {url} did not answer within {READY_TIMEOUT_SECONDS:.0f} s: {problem}",
                  file=sys.stderr)
            return 1
        time.sleep(0.05)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("serve", "install"):
        sys.exit("usage: python3 -c SOURCE serve|install CREDENTIALS_ID")
    sys.exit(serve(sys.argv[2]) if sys.argv[1] == "serve" else install(sys.argv[2]))
