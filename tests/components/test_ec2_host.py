"""On-host side of the EC2 compute mode: liftoff-app.service and the liftoff-* scripts.

The scripts run for real here, with stand-ins for docker, systemctl, curl and aws
(tests/components/fakes/) first on PATH. Each stand-in appends its argv to a call
log and answers from files the test controls, so the tests assert on what the
scripts would have done to a host.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOST_DIR = REPO / "components" / "ec2_host"
BIN = HOST_DIR / "bin"
UNIT = HOST_DIR / "liftoff-app.service"
SLOT_UNIT = HOST_DIR / "liftoff-slot@.service"
PROXY_UNIT = HOST_DIR / "liftoff-proxy.service"
REPORT_UNIT = HOST_DIR / "liftoff-report.service"
FAKES = Path(__file__).resolve().parent / "fakes"

REPOSITORY_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/liftoff-app"
REGISTRY = REPOSITORY_URI.split("/", 1)[0]
INSTANCE_ID = "i-0aaaaaaaaaaaaaaa1"
OTHER_INSTANCE_ID = "i-0bbbbbbbbbbbbbbb2"
TG_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/liftoff/0123456789abcdef"

HOST_ENV_KEYS = (
    "AWS_REGION",
    "REPOSITORY_URI",
    "CONTAINER_PORT",
    "HEALTH_CHECK_PATH",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_SECRET_ARN",
    "LOG_GROUP",
    "STOP_TIMEOUT_SECONDS",
    "DRAIN_SECONDS",
    "TARGET_GROUP_ARN",
    "HEALTH_TIMEOUT_SECONDS",
    "ACTIVE_TAG_PARAMETER",
    "ACTIVATION",
    "CONTAINER_MEMORY_MIB",
    "SLOT_A_PORT",
    "SLOT_B_PORT",
    "BAKE_SECONDS",
    "CANARY_PERCENT",
    "CANARY_SECONDS",
    "CANARY_MIN_REQUESTS",
    "CANARY_MAX_ERROR_PERCENT",
    "CANARY_MAX_ADDED_MS",
)


def ref(tag: str) -> str:
    return f"{REPOSITORY_URI}:{tag}"


@dataclass(frozen=True)
class AwsRequest:
    operation: str  # as AWS names it: PutLogEvents
    parameters: dict
    via: str  # "curl" (signed by curl) or "cli"


CLI_OPERATIONS = {("logs", "put-log-events"): "PutLogEvents", ("logs", "create-log-stream"): "CreateLogStream",
                  ("ssm", "put-parameter"): "PutParameter", ("ssm", "get-parameter"): "GetParameter",
                  ("ssm", "get-parameters-by-path"): "GetParametersByPath",
                  ("secretsmanager", "get-secret-value"): "GetSecretValue", ("ecr", "get-authorization-token"): "GetAuthorizationToken",
                  ("autoscaling", "describe-auto-scaling-instances"): "DescribeAutoScalingInstances",
                  ("autoscaling", "describe-auto-scaling-groups"): "DescribeAutoScalingGroups"}
# The query APIs' (Auto Scaling's) parameters as their form names: the one list item the scripts pass is member 1.
CLI_PARAMETERS = {"--instance-ids": "InstanceIds.member.1", "--auto-scaling-group-names": "AutoScalingGroupNames.member.1",
                  "--log-group-name": "logGroupName", "--log-stream-name": "logStreamName", "--log-events": "logEvents",
                  "--name": "Name", "--value": "Value", "--type": "Type", "--overwrite": "Overwrite", "--secret-id": "SecretId",
                  "--path": "Path", "--recursive": "Recursive"}


@dataclass
class Host:
    """A fake host: config dir, stand-in state and the environment the scripts run with."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "etc"

    @property
    def state(self) -> Path:
        return self.root / "fake"

    def host_env(self, **overrides: str) -> None:
        values = {
            "AWS_REGION": "eu-west-1",
            "REPOSITORY_URI": REPOSITORY_URI,
            "CONTAINER_PORT": "8080",
            "HEALTH_CHECK_PATH": "/healthz",
            "DB_HOST": "db.internal",
            "DB_PORT": "5432",
            "DB_NAME": "liftoff",
            "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:liftoff-db-AbCdEf",
            "LOG_GROUP": "/liftoff/app",
            "STOP_TIMEOUT_SECONDS": "20",
            "DRAIN_SECONDS": "0",
            "TARGET_GROUP_ARN": "",
            "HEALTH_TIMEOUT_SECONDS": "1",
            "ACTIVE_TAG_PARAMETER": "/liftoff/active-image-tag",
            # These stand-ins model one container restarted in place; the two slots run for real
            # on the host boxes (tests/local/host_boxes_world/test_host_gates.py).
            "ACTIVATION": "restart",
            "CONTAINER_MEMORY_MIB": "512",
        }
        values.update(overrides)
        (self.config / "host.env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    def running(self, tag: str, *, image_present: bool = True) -> None:
        """The host as left by an earlier activation of `tag`."""
        (self.config / "active.env").write_text(f"IMAGE_TAG={tag}\n")
        (self.state / "running_tag").write_text(f"{tag}\n")
        if image_present:
            self.has_images(tag)

    def has_images(self, *tags: str) -> None:
        with (self.state / "images").open("a") as f:
            f.writelines(f"{ref(t)}\n" for t in tags)

    def unhealthy(self, *tags: str) -> None:
        (self.state / "unhealthy_tags").write_text("".join(f"{t}\n" for t in tags))

    def crash_looping(self, *tags: str) -> None:
        """Each tag's container exits at every start: it never answers, and systemd keeps restarting its unit."""
        self.unhealthy(*tags)
        (self.state / "crash_looping_tags").write_text("".join(f"{t}\n" for t in tags))

    def restarted_before(self, count: int) -> None:
        """systemd's NRestarts for the unit before the gate runs (earlier crashes, long since over)."""
        (self.state / "nrestarts").write_text(f"{count}\n")

    def behind_load_balancer(self, *healthy_others: str) -> None:
        self.host_env(TARGET_GROUP_ARN=TG_ARN)
        targets = [INSTANCE_ID, *healthy_others]
        (self.state / "target_health.json").write_text(
            json.dumps(
                {
                    "TargetHealthDescriptions": [
                        {"Target": {"Id": t, "Port": 8080}, "TargetHealth": {"State": "healthy"}}
                        for t in targets
                    ]
                }
            )
        )

    def run(self, script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = env or {}
        env = {
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(self.root),
            "LIFTOFF_CONFIG_DIR": str(self.config),
            "LIFTOFF_RUN_DIR": str(self.root / "run" / "liftoff"),
            "LIFTOFF_LOCK_FILE": str(self.root / "run" / "lock" / "liftoff.lock"),
            "LIFTOFF_LOG_STREAMS_DIR": str(self.root / "run" / "liftoff-log-streams"),
            "LIFTOFF_HEALTH_POLL_SECONDS": "0.1",
            "FAKE_STATE": str(self.state),
            **extra,
        }
        return subprocess.run(
            [str(BIN / script), *args], env=env, capture_output=True, text=True, timeout=30
        )

    def calls(self, program: str | None = None) -> list[list[str]]:
        log = self.state / "calls.log"
        if not log.exists():
            return []
        rows = [line.split("\t") for line in log.read_text().splitlines()]
        return [r for r in rows if program is None or r[0] == program]

    def requests(self, operation: str | None = None) -> list[AwsRequest]:
        """The small AWS calls the scripts made (a log line, a log stream, a host report, a parameter, the secret),
        signed by curl or made with the CLI where curl cannot sign: each as AWS sees it, in order."""
        made = []
        for call in self.calls():
            if call[0] == "curl" and "--aws-sigv4" in call:
                body = call[call.index("--data-binary") + 1]
                target = next((h for h in call if h.startswith("X-Amz-Target: ")), None)
                if target is None:  # a query API: the action and its parameters in a form
                    form = dict(urllib.parse.parse_qsl(body, strict_parsing=True))
                    assert form.pop("Version") == "2011-01-01", body
                    made.append(AwsRequest(form.pop("Action"), form, "curl"))
                else:
                    made.append(AwsRequest(target.removeprefix("X-Amz-Target: ").split(".")[1], json.loads(body), "curl"))
            elif call[0] == "aws" and tuple(call[1:3]) in CLI_OPERATIONS:
                flags = {arg: call[i + 1] if i + 1 < len(call) and not call[i + 1].startswith("--") else True
                         for i, arg in enumerate(call) if arg.startswith("--")}
                parameters = {CLI_PARAMETERS[flag]: value for flag, value in flags.items() if flag in CLI_PARAMETERS}
                if "logEvents" in parameters:
                    parameters["logEvents"] = json.loads(parameters["logEvents"])
                made.append(AwsRequest(CLI_OPERATIONS[tuple(call[1:3])], parameters, "cli"))
        return [request for request in made if operation is None or request.operation == operation]

    def called(self, *prefix: str) -> bool:
        return any(c[: len(prefix)] == list(prefix) for c in self.calls())

    def index_of(self, *prefix: str) -> int:
        """Position of the first call starting with prefix (fails the test when absent)."""
        for i, c in enumerate(self.calls()):
            if c[: len(prefix)] == list(prefix):
                return i
        raise AssertionError(f"no call {prefix} in {self.calls()}")

    def restarts(self) -> list[str]:
        """The tag active.env held at each (re)start of liftoff-app, in order."""
        path = self.state / "restarts"
        return path.read_text().split() if path.exists() else []

    def active(self) -> str:
        return (self.config / "active.env").read_text()


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path)
    h.config.mkdir()
    h.state.mkdir()
    (h.state / "instance_id").write_text(INSTANCE_ID)
    h.host_env()
    return h


# --- the unit -----------------------------------------------------------------


@pytest.mark.parametrize("unit", [UNIT, SLOT_UNIT, PROXY_UNIT, REPORT_UNIT], ids=lambda path: path.name)
def test_unit_passes_systemd_analyze_verify_without_warnings(tmp_path: Path, unit: Path) -> None:
    # `systemd-analyze verify` exits 0 on unknown keys and bad values (it only warns
    # on stderr), and exits 1 when docker.service or an Exec binary is missing. So:
    # a stub docker.service on SYSTEMD_UNIT_PATH ("dir:" = that dir, then the
    # defaults), and a rendered copy whose host paths (/usr/bin/docker,
    # /opt/liftoff/bin) point at files that exist on this machine.
    assert shutil.which("systemd-analyze"), "needs systemd-analyze (apt-get install systemd)"
    text = unit.read_text()
    rendered = text.replace("/usr/bin/docker ", f"{FAKES / 'docker'} ").replace(
        "/opt/liftoff/bin/", f"{BIN}/"
    ).replace("/usr/sbin/haproxy ", f"{shutil.which('true')} ")
    assert "/usr/bin/docker" not in rendered and "/opt/liftoff" not in rendered.split("[Service]")[1]
    name = unit.name.replace("@.", "@a.")
    (tmp_path / unit.name).write_text(rendered)
    (tmp_path / "docker.service").write_text("[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / name)],
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _unit_settings(unit: Path = UNIT) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    logical = unit.read_text().replace("\\\n", " ")
    for line in logical.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(" ".join(value.split()))
    return settings


def test_unit_runs_the_active_tag_with_config_and_secrets_from_files() -> None:
    s = _unit_settings()
    assert s["Restart"] == ["always"]
    assert "docker.service" in s["Requires"][0] and "docker.service" in s["After"][0]
    assert s["EnvironmentFile"] == ["/etc/liftoff/host.env", "/etc/liftoff/active.env"]
    assert s["ExecStartPre"][0] == "/opt/liftoff/bin/liftoff-db-env"
    # What a crash, a reboot or a start stopped mid-way leaves would hold the names the start needs.
    assert s["ExecStartPre"][1] == "-/usr/bin/docker rm --force liftoff-app liftoff-migrate"
    # The schema is migrated (expand only) by the version itself before it serves.
    migrate = s["ExecStartPre"][2]
    assert migrate.startswith("/usr/bin/docker run --rm --name liftoff-migrate")
    assert migrate.endswith("${REPOSITORY_URI}:${IMAGE_TAG} migrate")
    assert "--env-file /run/liftoff/db.env" in migrate
    assert "--volume /run/liftoff/db-password:/run/secrets/db-password:ro" in migrate
    assert "--env DB_PASSWORD_FILE=/run/secrets/db-password" in migrate
    run = s["ExecStart"][0]
    for expected in (
        "--env APP_VERSION=${IMAGE_TAG}",
        "--env PORT=${CONTAINER_PORT}",
        "--env DB_HOST=${DB_HOST}",
        "--env DB_PORT=${DB_PORT}",
        "--env DB_NAME=${DB_NAME}",
        "--env-file /run/liftoff/db.env",
        "--volume /run/liftoff/db-password:/run/secrets/db-password:ro",
        "--env DB_PASSWORD_FILE=/run/secrets/db-password",
        "--publish ${CONTAINER_PORT}:${CONTAINER_PORT}",
        "--log-driver awslogs",
        "--log-opt awslogs-region=${AWS_REGION}",
        "--log-opt awslogs-group=${LOG_GROUP}",
    ):
        assert expected in run
    assert run.endswith("${REPOSITORY_URI}:${IMAGE_TAG}")
    assert s["ExecStop"] == ["/usr/bin/docker stop --time ${STOP_TIMEOUT_SECONDS} liftoff-app"]
    # Credentials reach the container only through the files in the root-only directory.
    assert "DB_PASSWORD=" not in UNIT.read_text() and "DB_USER" not in UNIT.read_text()


@pytest.mark.parametrize("unit", [UNIT, SLOT_UNIT], ids=lambda path: path.name)
def test_unit_only_references_documented_host_env_keys(unit: Path) -> None:
    # A typo in ${...} expands to an empty string silently under systemd.
    referenced = set(re.findall(r"\$\{(\w+)\}", unit.read_text()))
    assert referenced <= set(HOST_ENV_KEYS) | {"IMAGE_TAG", "SLOT_PORT"}, referenced - set(HOST_ENV_KEYS)


def test_slot_unit_runs_its_slot_on_loopback_with_its_own_credentials() -> None:
    s = _unit_settings(SLOT_UNIT)
    assert s["EnvironmentFile"] == ["/etc/liftoff/host.env", "/etc/liftoff/slot-%i.env"]
    assert s["Environment"] == ["LIFTOFF_RUN_DIR=/run/liftoff-slot-%i"]
    assert s["RuntimeDirectory"] == ["liftoff-slot-%i"]
    run = s["ExecStart"][0]
    # Only the host proxy may reach a slot: a slot's port is never the load balancer's.
    assert "--publish 127.0.0.1:${SLOT_PORT}:${CONTAINER_PORT}" in run
    assert "--memory ${CONTAINER_MEMORY_MIB}m" in run
    assert "--name liftoff-app-%i" in run and "/run/liftoff-slot-%i/db-password" in run
    assert s["ExecStartPre"][1] == "-/usr/bin/docker rm --force liftoff-app-%i liftoff-migrate-%i"
    assert s["ExecStartPre"][2].startswith("/usr/bin/docker run --rm --name liftoff-migrate-%i ")
    assert s["ExecStop"] == ["/usr/bin/docker stop --time ${STOP_TIMEOUT_SECONDS} liftoff-app-%i"]


# --- shellcheck -----------------------------------------------------------------


def _shell_files(directory: Path) -> list[Path]:
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        head = path.read_text(errors="replace").split("\n", 2)[:2]
        if path.suffix == ".sh" or (head and re.match(r"#!.*\b(ba)?sh\b", head[0])) or any(
            "shellcheck shell=" in line for line in head
        ):
            found.append(path)
    return found


def test_every_host_script_passes_shellcheck() -> None:
    assert shutil.which("shellcheck"), "needs shellcheck: apt-get install -y shellcheck"
    scripts = _shell_files(HOST_DIR) + _shell_files(FAKES)
    names = {p.name for p in scripts}
    assert {"liftoff-common.sh", "liftoff-stage", "liftoff-activate", "liftoff-boot", "liftoff-db-env"} <= names
    # The timeout only stops a hang: ~6 CPU-s, which took over a minute beside a loaded run (seen).
    result = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, scripts)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_host_scripts_are_executable_and_strict() -> None:
    for name in ("liftoff-stage", "liftoff-activate", "liftoff-boot", "liftoff-db-env", "liftoff-unit-event", "liftoff-retire"):
        path = BIN / name
        assert path.stat().st_mode & stat.S_IXUSR, f"{name} is not executable"
        assert "set -euo pipefail" in path.read_text()


# --- tag gate ---------------------------------------------------------------------

BAD_TAGS = [
    "latest",
    "1.2",
    "foo;rm -rf /",
    "",
    "V1.2.3",
    "1.2.3+build.5",
    "01.2.3",
    "1.2.3\n",
    "$(reboot)",
    "ABCDEF1",  # upper-case is not how git prints a sha
    "abc123",  # 6 hex digits: too short to name a commit
    "a" * 41,
]


@pytest.mark.parametrize("script", ["liftoff-stage", "liftoff-activate"])
@pytest.mark.parametrize("tag", BAD_TAGS)
def test_bad_tag_is_refused_before_anything_runs(host: Host, script: str, tag: str) -> None:
    host.running("1.0.0")
    result = host.run(script, tag)
    assert result.returncode == 2, result.stderr
    assert host.calls() == []
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert not (host.config / "active.env.previous").exists()
    assert "semver" in result.stderr and "git sha" in result.stderr
    if tag.strip():
        assert tag.strip() in result.stderr


@pytest.mark.parametrize("script", ["liftoff-stage", "liftoff-activate"])
@pytest.mark.parametrize("args", [(), ("1.0.0", "1.1.0")])
def test_wrong_argument_count_is_a_usage_error(host: Host, script: str, args: tuple[str, ...]) -> None:
    result = host.run(script, *args)
    assert result.returncode == 2
    assert "usage" in result.stderr
    assert host.calls() == []


@pytest.mark.parametrize("tag", ["1.4.2", "v1.4.2", "1.4.2-rc.1", "0.0.1", "abcdef0", "0123456789abcdef0123456789abcdef01234567"])
def test_release_tags_are_accepted(host: Host, tag: str) -> None:
    result = host.run("liftoff-stage", tag)
    assert result.returncode == 0, result.stderr
    assert ["docker", "pull", "--quiet", ref(tag)] in host.calls("docker")


def test_missing_host_config_key_is_named(host: Host) -> None:
    (host.config / "host.env").write_text("AWS_REGION=eu-west-1\n")
    result = host.run("liftoff-stage", "1.0.0")
    assert result.returncode == 1
    assert "REPOSITORY_URI" in result.stderr and "DB_SECRET_ARN" in result.stderr
    assert host.calls() == []


# --- stage ------------------------------------------------------------------------


def test_stage_logs_in_to_ecr_and_pulls_without_restarting(host: Host, signing: str) -> None:
    host.running("1.0.0")
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert [(asked.parameters, asked.via) for asked in host.requests("GetAuthorizationToken")] == [({}, signing)]
    assert ["docker", "login", "--username", "AWS", "--password-stdin", REGISTRY] in host.calls("docker")
    assert (host.state / "docker_login_stdin").read_text().strip() == "fake-ecr-password"
    assert host.index_of("docker", "login") < host.index_of("docker", "pull")
    assert ["docker", "pull", "--quiet", ref("1.1.0")] in host.calls("docker")
    assert host.calls("systemctl") == []
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert not (host.config / "active.env.previous").exists()


def test_stage_fails_when_the_pull_fails(host: Host) -> None:
    (host.state / "pull_fails").touch()
    result = host.run("liftoff-stage", "1.1.0")
    assert result.returncode != 0
    assert host.calls("systemctl") == []


# --- activate -----------------------------------------------------------------------


def test_activate_pulls_a_missing_image_restarts_and_waits_for_health(host: Host) -> None:
    host.running("1.0.0")
    (host.state / "health_failures").write_text("2")  # the new container needs a moment
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert ["docker", "image", "inspect", ref("1.1.0")] in host.calls("docker")
    assert ["docker", "pull", "--quiet", ref("1.1.0")] in host.calls("docker")
    assert host.index_of("docker", "pull") < host.index_of("systemctl", "restart")
    assert ["systemctl", "restart", "liftoff-app.service"] in host.calls("systemctl")
    assert host.restarts() == ["1.1.0"]
    assert host.active() == "IMAGE_TAG=1.1.0\n"
    assert (host.config / "active.env.previous").read_text() == "IMAGE_TAG=1.0.0\n"
    restart = host.index_of("systemctl", "restart")
    health = [i for i, c in enumerate(host.calls()) if c[0] == "curl" and c[-1] == "http://127.0.0.1:8080/healthz"]
    assert len([i for i in health if i > restart]) == 3  # polled through the two failures
    # No target group configured: nothing to drain.
    assert host.calls("aws") == [c for c in host.calls("aws") if c[1] == "ecr"]


def test_activate_does_not_pull_an_image_already_present(host: Host) -> None:
    host.running("1.0.0")
    host.has_images("1.1.0")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert not host.called("docker", "pull")
    assert not host.called("aws", "ecr")
    assert host.restarts() == ["1.1.0"]


def test_activate_rolls_back_when_health_never_comes(host: Host) -> None:
    host.running("1.0.0")
    host.unhealthy("1.1.0")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert host.restarts() == ["1.1.0", "1.0.0"]
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert "1.0.0 is serving again" in result.stderr


def test_activate_gives_up_on_a_container_that_keeps_exiting_without_waiting_out_the_health_timeout(host: Host) -> None:
    host.running("1.0.0")
    host.crash_looping("1.1.0")
    # Long enough that only the crash limit can end the wait with this message (the timeout says "within 30s").
    host.host_env(HEALTH_TIMEOUT_SECONDS="30")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert "ERROR: 1.1.0 exited 3 times in a row without answering on /healthz" in result.stderr, result.stderr
    assert host.restarts() == ["1.1.0", "1.0.0"]
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert "1.0.0 is serving again" in result.stderr


def test_restarts_from_before_the_gate_do_not_count_against_the_new_version(host: Host) -> None:
    host.running("1.0.0")
    host.restarted_before(7)
    host.unhealthy("1.1.0")  # never answers, but its unit is not restarting
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert "ERROR: 1.1.0 did not answer on /healthz within 1s" in result.stderr, result.stderr
    assert "1.0.0 is serving again" in result.stderr


def test_activate_says_so_when_the_old_version_is_unhealthy_too(host: Host) -> None:
    host.running("1.0.0")
    host.unhealthy("1.0.0", "1.1.0")
    host.host_env(HEALTH_TIMEOUT_SECONDS="0")  # one probe each: keeps the test fast
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert host.restarts() == ["1.1.0", "1.0.0"]
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert "not healthy either" in result.stderr
    assert "serving again" not in result.stderr


def test_activating_the_active_healthy_tag_is_a_no_op(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer(OTHER_INSTANCE_ID)
    result = host.run("liftoff-activate", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stderr
    assert host.restarts() == []
    assert not host.called("docker", "pull")
    assert host.calls("aws") == []


def test_activating_the_active_tag_when_unhealthy_restarts_it(host: Host) -> None:
    host.running("1.0.0")
    (host.state / "running_tag").unlink()  # the unit is down
    result = host.run("liftoff-activate", "1.0.0")
    assert result.returncode == 0, result.stderr
    assert host.restarts() == ["1.0.0"]
    assert not (host.config / "active.env.previous").exists()


def test_single_instance_restarts_in_place_without_deregistering(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer()  # only this instance is healthy
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert host.called("aws", "elbv2", "describe-target-health")
    assert not host.called("aws", "elbv2", "deregister-targets")
    assert not host.called("aws", "elbv2", "register-targets")
    assert host.restarts() == ["1.1.0"]


def test_several_instances_drain_this_one_around_the_restart(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer(OTHER_INSTANCE_ID)
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 0, result.stderr
    targets = ["--target-group-arn", TG_ARN, "--targets", f"Id={INSTANCE_ID}"]
    region = ["--region", "eu-west-1"]
    assert ["aws", "elbv2", "deregister-targets", *region, *targets] in host.calls("aws")
    assert ["aws", "elbv2", "register-targets", *region, *targets] in host.calls("aws")
    assert ["aws", "elbv2", "wait", "target-in-service", *region, *targets] in host.calls("aws")
    deregister = host.index_of("aws", "elbv2", "deregister-targets")
    restart = host.index_of("systemctl", "restart")
    register = host.index_of("aws", "elbv2", "register-targets")
    assert deregister < restart < register
    # The instance id came from IMDSv2, token first.
    token = host.index_of("curl", "-fsS", "--max-time", "5", "-X", "PUT")
    assert token < host.index_of("curl", "-fsS", "--max-time", "5", "-H", "X-aws-ec2-metadata-token: fake-imds-token")


def test_several_instances_rollback_re_registers_after_the_old_version_is_back(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer(OTHER_INSTANCE_ID)
    host.host_env(TARGET_GROUP_ARN=TG_ARN, HEALTH_TIMEOUT_SECONDS="0")  # one probe: fast
    host.unhealthy("1.1.0")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert host.restarts() == ["1.1.0", "1.0.0"]
    registers = [c for c in host.calls("aws") if c[1:3] == ["elbv2", "register-targets"]]
    assert len(registers) == 1
    restarts = [i for i, c in enumerate(host.calls()) if c[:2] == ["systemctl", "restart"]]
    assert restarts[-1] < host.index_of("aws", "elbv2", "register-targets")
    assert host.active() == "IMAGE_TAG=1.0.0\n"


def test_a_version_that_fails_to_start_is_rolled_back_and_re_registered(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer(OTHER_INSTANCE_ID)
    host.host_env(TARGET_GROUP_ARN=TG_ARN, HEALTH_TIMEOUT_SECONDS="0")  # one probe: fast
    (host.state / "unstartable_tags").write_text("1.1.0\n")
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 1
    assert host.restarts() == ["1.1.0", "1.0.0"]
    assert host.active() == "IMAGE_TAG=1.0.0\n"
    assert host.called("aws", "elbv2", "register-targets")
    assert "1.0.0 is serving again" in result.stderr


def test_unhealthy_other_targets_do_not_count_as_serving(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer()
    health = json.loads((host.state / "target_health.json").read_text())
    health["TargetHealthDescriptions"].append(
        {"Target": {"Id": OTHER_INSTANCE_ID}, "TargetHealth": {"State": "unhealthy"}}
    )
    (host.state / "target_health.json").write_text(json.dumps(health))
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 0, result.stderr
    assert not host.called("aws", "elbv2", "deregister-targets")


def test_activate_reports_when_the_load_balancer_never_takes_it_back(host: Host) -> None:
    host.running("1.0.0")
    host.behind_load_balancer(OTHER_INSTANCE_ID)
    (host.state / "wait_fails").touch()
    result = host.run("liftoff-activate", "1.1.0")
    assert result.returncode == 3
    assert host.called("aws", "elbv2", "register-targets")
    assert host.active() == "IMAGE_TAG=1.1.0\n"


# --- boot and the secret ---------------------------------------------------------------


def test_boot_starts_the_tag_recorded_in_ssm(host: Host, signing: str) -> None:
    (host.state / "ssm_active_tag").write_text("1.3.0\n")
    result = host.run("liftoff-boot")
    assert result.returncode == 0, result.stderr
    (asked,) = host.requests("GetParameter")
    assert (asked.parameters, asked.via) == ({"Name": "/liftoff/active-image-tag"}, signing)
    assert host.active() == "IMAGE_TAG=1.3.0\n"
    assert host.index_of("systemctl", "enable", "--now", "docker.service") < host.index_of("docker", "pull")
    assert ["docker", "pull", "--quiet", ref("1.3.0")] in host.calls("docker")
    assert host.index_of("docker", "pull") < host.index_of("systemctl", "enable", "--now", "liftoff-app.service")
    assert host.restarts() == ["1.3.0"]


def test_boot_refuses_a_mutable_tag_in_ssm(host: Host) -> None:
    (host.state / "ssm_active_tag").write_text("latest\n")
    result = host.run("liftoff-boot")
    assert result.returncode == 2
    assert "latest" in result.stderr
    assert not (host.config / "active.env").exists()
    assert host.calls("systemctl") == [] and host.calls("docker") == []


def test_db_env_writes_credentials_root_only_and_literally(host: Host, signing: str) -> None:
    password = "p@ss w0rd$HOME\"'`"
    (host.state / "secret_string").write_text(
        json.dumps({"username": "liftoff", "password": password, "engine": "postgres"})
    )
    result = host.run("liftoff-db-env")
    assert result.returncode == 0, result.stderr
    run_dir = host.root / "run" / "liftoff"
    db_env = run_dir / "db.env"
    assert db_env.read_text() == "DB_USER=liftoff\n"
    assert stat.S_IMODE(db_env.stat().st_mode) == 0o600
    db_password = run_dir / "db-password"
    assert db_password.read_text() == password
    # Read by the container's own user through the bind mount; the directory keeps the host's users out.
    assert stat.S_IMODE(db_password.stat().st_mode) == 0o444
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    # Nothing else is written: the secret's answer stays in memory until these two files.
    assert sorted(path.name for path in run_dir.iterdir()) == ["db-password", "db.env"]
    (asked,) = host.requests("GetSecretValue")
    assert asked.parameters == {"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:liftoff-db-AbCdEf"}
    assert asked.via == signing
    assert password not in result.stderr + result.stdout
    assert password not in (host.state / "calls.log").read_text()  # never on a command line


def test_db_env_refuses_a_secret_without_username_and_password(host: Host) -> None:
    (host.state / "secret_string").write_text(json.dumps({"user": "liftoff"}))
    result = host.run("liftoff-db-env")
    assert result.returncode != 0
    assert not (host.root / "run" / "liftoff" / "db.env").exists()
    assert not (host.root / "run" / "liftoff" / "db-password").exists()
    assert list((host.root / "run" / "liftoff").iterdir()) == []


# --- unit events in CloudWatch -----------------------------------------------------


@pytest.fixture(params=["curl", "cli"])
def signing(request, host: Host) -> str:
    """Both ways a host makes its small AWS calls: curl signs them, or (a curl built without AWS auth) the CLI."""
    if request.param == "cli":
        (host.state / "curl_cannot_sign").touch()
    return request.param


def _put_events(host: Host) -> list[dict]:
    return [request.parameters["logEvents"][0] for request in host.requests("PutLogEvents")]


def test_unit_reports_its_starts_and_stops_without_failing_on_them() -> None:
    s = _unit_settings()
    # "-": a CloudWatch outage must never keep the service from starting or restarting.
    assert s["ExecStartPost"] == ["-/opt/liftoff/bin/liftoff-unit-event started"]
    assert s["ExecStopPost"] == ["-/opt/liftoff/bin/liftoff-unit-event stopped"]


def test_a_crash_reaches_the_log_group_with_systemds_verdict(host: Host, signing: str) -> None:
    host.running("1.2.0")
    env_crash = {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "3"}
    stopped = host.run("liftoff-unit-event", "stopped", env=env_crash)
    started = host.run("liftoff-unit-event", "started")
    assert (stopped.returncode, started.returncode) == (0, 0), stopped.stderr + started.stderr
    events = _put_events(host)
    assert [e["message"] for e in events] == [
        "liftoff-app stopped version=1.2.0 result=exit-code exit=exited/3",
        "liftoff-app started version=1.2.0",
    ]
    assert all(isinstance(e["timestamp"], int) and e["timestamp"] > 1_600_000_000_000 for e in events)
    put = host.requests("PutLogEvents")[0]
    assert (put.parameters["logGroupName"], put.parameters["logStreamName"]) == ("/liftoff/app", f"{INSTANCE_ID}/liftoff-app.service")
    assert {request.via for request in host.requests()} == {signing}


def test_curl_signs_with_the_instance_roles_credentials_which_never_reach_a_command_line(host: Host) -> None:
    host.running("1.2.0")
    assert host.run("liftoff-unit-event", "started").returncode == 0
    signed = [call for call in host.calls("curl") if "--aws-sigv4" in call]
    assert [call[call.index("--aws-sigv4") + 1] for call in signed] == ["aws:amz:eu-west-1:logs"] * 2
    assert {call[-1] for call in signed} == {"https://logs.eu-west-1.amazonaws.com/"}
    assert all("Content-Type: application/x-amz-json-1.1" in call for call in signed)
    # The keys IMDS handed out went to curl on its standard input, and nowhere else.
    (config, *_) = [call for call in host.calls() if call[0] == "curl-config"]
    assert 'user = "ASIAFAKEHOSTKEY:fake/host+secret"' in config and 'header = "X-Amz-Security-Token: fake-session-token"' in config
    assert not [call for call in host.calls() if call[0] != "curl-config" and any("fake/host+secret" in arg for arg in call)]


def credentials_config(credentials: str, path: str = "/usr/bin:/bin") -> str:
    script = f'. "{BIN / "liftoff-common.sh"}"; credentials_config "$1"'
    return subprocess.run([shutil.which("bash"), "-c", script, "credentials", credentials], capture_output=True, text=True, check=True,
                          env={"PATH": path}).stdout


@pytest.mark.parametrize("credentials", [
    '{"Code": "Success", "AccessKeyId": "ASIAKEY", "SecretAccessKey": "se/cr+et", "Token": "to+k/en=="}',
    '{"AccessKeyId":"ASIAKEY","SecretAccessKey":"se/cr+et","Token":"to+k/en==","Expiration":"2026-12-05T12:00:00Z"}',
], ids=["as IMDS writes them", "compact"])
def test_the_roles_keys_are_read_without_jq_as_imds_writes_them(credentials: str, tmp_path: Path) -> None:
    # No jq on the PATH: bash reads them itself (each jq run costs ~15 ms of CPU, and every AWS call needs the keys).
    no_jq = tmp_path / "bin"
    no_jq.mkdir()
    for tool in ("basename", "dirname"):  # what sourcing liftoff-common.sh runs
        (no_jq / tool).symlink_to(shutil.which(tool))
    assert credentials_config(credentials, path=str(no_jq)) == \
        'user = "ASIAKEY:se/cr+et"\nheader = "X-Amz-Security-Token: to+k/en=="\n'


def test_keys_written_with_json_escapes_are_read_by_jq() -> None:
    escaped = '{"AccessKeyId": "ASIAKEY", "SecretAccessKey": "se\\/cr+et", "Token": "to\\u002bken"}'
    assert credentials_config(escaped) == 'user = "ASIAKEY:se/cr+et"\nheader = "X-Amz-Security-Token: to+ken"\n'


def test_a_throttled_call_is_tried_again_as_the_cli_would(host: Host) -> None:
    host.running("1.2.0")
    (host.state / "aws_throttled").write_text("2")
    result = host.run("liftoff-unit-event", "started", env={"LIFTOFF_AWS_RETRY_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    # The stream's creation throttled twice, made at the third attempt; then the line.
    assert [request.operation for request in host.requests()] == ["CreateLogStream"] * 3 + ["PutLogEvents"]
    assert [e["message"] for e in _put_events(host)] == ["liftoff-app started version=1.2.0"]


def test_a_call_still_failing_after_three_attempts_fails_with_aws_reason(host: Host) -> None:
    host.running("1.2.0")
    (host.state / "aws_unavailable").touch()
    result = host.run("liftoff-unit-event", "started", env={"LIFTOFF_AWS_RETRY_SECONDS": "0"})
    assert result.returncode != 0
    assert "ServiceUnavailableException: try again later" in result.stderr, result.stderr
    assert [request.operation for request in host.requests()] == ["CreateLogStream"] * 3 + ["PutLogEvents"] * 3


def _logs_calls(host: Host) -> list[str]:
    return [request.operation for request in host.requests() if request.operation != "PutParameter"]


def test_an_existing_stream_is_reused_and_a_logs_outage_is_reported(host: Host, signing: str) -> None:
    host.running("1.2.0")
    (host.state / "log_stream_exists").touch()
    assert host.run("liftoff-unit-event", "started").returncode == 0
    assert _logs_calls(host) == ["CreateLogStream", "PutLogEvents"]
    (host.state / "logs_fail").touch()
    failed = host.run("liftoff-unit-event", "started")
    # Non-zero for the journal; the unit's "-" prefix keeps the service running regardless.
    assert failed.returncode != 0
    # The remembered stream's line was refused: made again (in case it was deleted) and tried once more.
    assert _logs_calls(host)[2:] == ["PutLogEvents", "CreateLogStream", "PutLogEvents"]
    if signing == "curl":
        assert "ServiceUnavailableException: The service is unavailable" in failed.stderr, failed.stderr


def test_a_stream_is_made_once_then_each_line_is_one_call(host: Host, signing: str) -> None:
    host.running("1.2.0")
    for event in ("started", "stopped", "started"):
        assert host.run("liftoff-unit-event", event).returncode == 0
    assert _logs_calls(host) == ["CreateLogStream", "PutLogEvents", "PutLogEvents", "PutLogEvents"]
    assert [e["message"].split()[1] for e in _put_events(host)] == ["started", "stopped", "started"]


def test_a_stream_made_before_a_reboot_is_made_again_after_it(host: Host, signing: str) -> None:
    host.running("1.2.0")
    assert host.run("liftoff-unit-event", "started").returncode == 0
    shutil.rmtree(host.root / "run" / "liftoff-log-streams")  # /run is a tmpfs: a reboot empties it
    assert host.run("liftoff-unit-event", "started").returncode == 0
    assert _logs_calls(host) == ["CreateLogStream", "PutLogEvents"] * 2


def test_unit_event_takes_only_started_or_stopped(host: Host) -> None:
    result = host.run("liftoff-unit-event", "crashed")
    assert result.returncode == 2
    assert "usage: liftoff-unit-event started|stopped" in result.stderr
    assert host.calls() == []
