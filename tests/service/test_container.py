"""The service contract, proven on the real image in real containers (docs/service-contract.md).

The image is `service/Dockerfile` built for real (tests/helpers/docker_fixtures.py); containers run
on the host network against the PostgreSQL the tests start (container_harness.py). The container
without a database runs with a read-only root filesystem, so everything it does also proves that
nothing is written to the image's filesystem.
"""

from __future__ import annotations

import json
import threading

import pytest

from container_harness import Containers, database_env, nowhere_env, password_checking_postgres
from service_harness import SERVICE_DIR, applied_ids, columns, connect, json_lines, run_migrate, wait_until

pytestmark = pytest.mark.cost(minutes=0.65)  # alone, on 2 cores: the costliest start first (tests/conftest.py)

# The platform's stop timeout (ECS and the EC2 unit): SIGKILL follows it.
STOP_TIMEOUT_SECONDS = 10
SERVICE_UID = "10001"
PASSWORD_MOUNT = "/run/secrets/db-password"


@pytest.fixture
def containers(docker_daemon):
    made = Containers(docker_daemon)
    try:
        yield made
    finally:
        made.remove_all()


@pytest.fixture(scope="module")
def without_database(docker_daemon, service_image):
    """One container for the module whose database is a port nothing listens on."""
    made = Containers(docker_daemon)
    try:
        # Docker probes its health every second here: the image's own probe (its command), without the 30 s wait
        # for the first one (the image's interval is asserted from its config).
        yield made.serve(service_image, env={**nowhere_env(), "APP_VERSION": "1.1.0"},
                         options=("--read-only", "--health-interval=1s"))
    finally:
        made.remove_all()


def image_config(docker_daemon, image: str) -> dict:
    return json.loads(docker_daemon.run("image", "inspect", "--format", "{{json .Config}}", image,
                                        timeout=30).stdout)


def test_the_image_is_configured_to_run_as_a_numeric_non_root_user(docker_daemon, service_image):
    assert image_config(docker_daemon, service_image)["User"] == f"{SERVICE_UID}:{SERVICE_UID}"


def test_the_image_config_serves_by_default_takes_migrate_as_argument_stops_on_sigterm(docker_daemon,
                                                                                    service_image):
    config = image_config(docker_daemon, service_image)
    assert config["Entrypoint"] == ["python", "-m", "liftoff_service"]
    assert config["Cmd"] == ["serve"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["ExposedPorts"] == {"8080/tcp": {}} and "PORT=8080" in config["Env"]


INSTALLED = """import importlib.metadata as metadata, json, sys
print(json.dumps({"python": list(sys.version_info[:2]),
                  "installed": {d.metadata["Name"].lower().replace("_", "-"): d.version
                                for d in metadata.distributions()}}))"""


def test_the_image_runs_python_3_11_with_the_pinned_requirements(containers, service_image):
    result = containers.run_to_exit(service_image, "-c", INSTALLED, env={},
                                    options=("--entrypoint", "python", "--read-only"))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # The registry base (python:3.11-slim) and the one made from Debian bookworm are both 3.11.
    assert found["python"] == [3, 11]
    pins = [line for line in (SERVICE_DIR / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins
    for pin in pins:
        name, separator, version = pin.partition("==")
        assert separator, f"unpinned requirement in service/requirements.txt: {pin}"
        name = name.split("[")[0].lower().replace("_", "-")
        assert found["installed"].get(name) == version, (pin, found["installed"].get(name))


def test_the_server_is_pid_1_and_runs_as_the_non_root_user(without_database):
    assert without_database.exec("id", "-u").strip() == SERVICE_UID
    assert without_database.exec("id", "-g").strip() == SERVICE_UID
    # PID 1 is what `docker stop` signals: it must be gunicorn itself (serve execs it), not root.
    status = dict(line.split(":", 1) for line in without_database.exec("cat", "/proc/1/status").splitlines())
    assert status["Uid"].split() == [SERVICE_UID] * 4
    assert status["Gid"].split() == [SERVICE_UID] * 4
    assert "gunicorn" in without_database.exec("cat", "/proc/1/cmdline").split("\0")[2]


def test_healthz_answers_without_a_database_and_readyz_does_not(without_database):
    health = without_database.request("GET", "/healthz")
    assert (health.status, health.json()) == (200, {"status": "ok"})
    ready = without_database.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (503, {"status": "unavailable", "database": "unreachable"})
    assert without_database.state()["Running"]


def test_the_root_filesystem_was_read_only_throughout(without_database, docker_daemon):
    # The other tests on this container (serving, health checks) ran on a read-only root.
    read_only = docker_daemon.run("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}",
                                  without_database.id, timeout=30).stdout.strip()
    assert read_only == "true"
    assert without_database.request("GET", "/healthz").status == 200


def test_dockers_healthcheck_reports_healthy_without_a_database(without_database, docker_daemon,
                                                                service_image):
    healthcheck = image_config(docker_daemon, service_image)["Healthcheck"]
    assert "/healthz" in " ".join(healthcheck["Test"]), healthcheck
    # Each probe starts Python: every 30 s (nanoseconds), Docker's default.
    assert healthcheck["Interval"] == 30 * 10**9, healthcheck
    # The image's own HEALTHCHECK command (the fixture's container probes every second).
    health = wait_until(lambda: (without_database.state().get("Health") or {}).get("Status") == "healthy"
                        and without_database.state()["Health"], deadline_seconds=60,
                        what="docker to report the container healthy", interval=0.5)
    assert health["FailingStreak"] == 0
    assert health["Log"] and health["Log"][-1]["ExitCode"] == 0


def test_readyz_follows_the_database(containers, service_image, postgres_server, database):
    container = containers.serve(service_image, env={**database_env(database), "APP_VERSION": "1.1.0"})
    ready = container.request("GET", "/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "ready", "database": "ok"})

    with postgres_server.admin_connect() as admin:
        admin.execute(f'DROP DATABASE "{database.name}" WITH (FORCE)')
    gone = container.request("GET", "/readyz")
    assert (gone.status, gone.json()) == (503, {"status": "unavailable", "database": "unreachable"})
    assert container.request("GET", "/healthz").status == 200

    with postgres_server.admin_connect() as admin:
        admin.execute(f'CREATE DATABASE "{database.name}" OWNER "{database.user}"')
    assert container.request("GET", "/readyz").status == 200


def password_file(tmp_path, password: str, mode: int):
    path = tmp_path / "db-password"
    path.write_text(password + "\n")
    path.chmod(mode)
    return path


def test_migrate_in_the_container_creates_the_schema(containers, service_image, database, tmp_path):
    # The password as the EC2 host passes it: a read-only mounted file, not an environment variable.
    secret = password_file(tmp_path, database.password, 0o444)
    result = containers.run_to_exit(
        service_image, "migrate",
        env={**database_env(database, with_password=False), "DB_PASSWORD_FILE": PASSWORD_MOUNT},
        options=("--volume", f"{secret}:{PASSWORD_MOUNT}:ro"))
    assert result.returncode == 0, result.stdout + result.stderr

    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]
    assert columns(database) == {"id": "NO", "body": "NO", "created_at": "NO", "title": "YES"}
    [done] = [line for line in json_lines(result.stdout) if line["message"] == "schema state"]
    assert done["schema"]["applied_now"] == ["0001_create_notes", "0002_add_note_title"]
    assert done["schema"]["held"] == "0003_require_note_title"  # start-up never contracts


def test_migrate_refuses_a_password_file_its_user_cannot_read(containers, service_image, database,
                                                               tmp_path):
    secret = password_file(tmp_path, database.password, 0o600)  # root's, as written on the host
    result = containers.run_to_exit(
        service_image, "migrate",
        env={**database_env(database, with_password=False), "DB_PASSWORD_FILE": PASSWORD_MOUNT},
        options=("--volume", f"{secret}:{PASSWORD_MOUNT}:ro"))
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = json_lines(result.stdout)
    assert line["reason"] == f"DB_PASSWORD_FILE='{PASSWORD_MOUNT}' cannot be read: Permission denied"
    assert columns(database) == {}


@pytest.fixture(scope="module")
def password_database():
    with password_checking_postgres("notes", "app", "correct horse battery") as database:
        yield database


def test_the_password_file_is_what_the_database_checks_and_never_in_docker_inspect(
        containers, service_image, password_database, tmp_path, docker_daemon):
    readiness = {}
    for label, password in (("right", password_database.password), ("wrong", "not the password")):
        (tmp_path / label).mkdir()
        secret = password_file(tmp_path / label, password, 0o444)
        container = containers.serve(
            service_image, options=("--volume", f"{secret}:{PASSWORD_MOUNT}:ro"),
            env={**database_env(password_database, with_password=False),
                 "DB_PASSWORD_FILE": PASSWORD_MOUNT, "APP_VERSION": "1.1.0"})
        readiness[label] = container.request("GET", "/readyz").status
        inspected = docker_daemon.run("inspect", container.id, timeout=30).stdout
        assert password not in inspected
        assert "DB_PASSWORD=" not in inspected
    assert readiness == {"right": 200, "wrong": 503}


def service_backend_waiting_on_a_lock(database) -> bool:
    with connect(database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = 'liftoff-service' AND wait_event_type = 'Lock'"
        ).fetchone()
    return row[0] > 0


def refuses_new_requests(container) -> bool:
    try:
        container.request("GET", "/healthz", timeout=0.5)
    except OSError:
        return True
    return False


def test_docker_stop_drains_an_in_flight_request_and_exits_0(containers, service_image, database,
                                                              docker_daemon):
    assert run_migrate(database).returncode == 0
    container = containers.serve(service_image, env={**database_env(database), "APP_VERSION": "1.1.0"})
    results: dict[str, object] = {}

    def call(name, function):
        try:
            results[name] = function()
        except Exception as error:  # the assertions below report it
            results[f"{name} error"] = error

    with connect(database) as locker:
        # Hold the table so the POST below is provably in flight (blocked inside the database).
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE notes IN ACCESS EXCLUSIVE MODE")
        client = threading.Thread(target=call, args=("response", lambda: container.request(
            "POST", "/notes", {"body": "in flight"}, timeout=30)))
        client.start()
        wait_until(lambda: service_backend_waiting_on_a_lock(database), deadline_seconds=10,
                   what="the request to block on the table lock")

        stopper = threading.Thread(target=call, args=("stop", lambda: docker_daemon.run(
            "stop", "-t", str(STOP_TIMEOUT_SECONDS), container.id, timeout=STOP_TIMEOUT_SECONDS + 30)))
        stopper.start()
        wait_until(lambda: refuses_new_requests(container), deadline_seconds=5,
                   what="the container to stop taking new requests")
        assert container.state()["Running"], "exited with a request still in flight"

        locker.execute("COMMIT")

    client.join(timeout=30)
    stopper.join(timeout=STOP_TIMEOUT_SECONDS + 30)
    assert "response error" not in results, results.get("response error")
    assert "stop error" not in results, results.get("stop error")
    response = results["response"]
    assert response.status == 201 and response.json()["body"] == "in flight"
    state = container.state()
    # Exit 0, not 137: it left on its own before `docker stop` had to SIGKILL it.
    assert (state["Running"], state["ExitCode"], state["OOMKilled"]) == (False, 0, False), container.logs()
    with connect(database) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("in flight",)]


@pytest.mark.parametrize("version", ["1.0.0", "1.1.0"])
def test_version_reports_the_app_version_the_release_runs_with(containers, release_images, docker_daemon,
                                                                version):
    image = release_images[version]
    assert image_config(docker_daemon, image)["Labels"]["org.opencontainers.image.version"] == version
    container = containers.serve(image, env={**nowhere_env(), "APP_VERSION": version})
    answer = container.request("GET", "/version")
    assert (answer.status, answer.json()) == (200, {"version": version})
    request_lines = [line for line in json_lines(container.logs())
                     if line.get("message") == "request" and line.get("path") == "/version"]
    assert [line["version"] for line in request_lines] == [version]
