"""Configuration comes only from the platform's environment; bad values stop the start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service_harness import SERVICE_DIR, free_port, json_lines

from liftoff_service.config import ConfigError, settings_from_env

PLATFORM_ENV = {
    "APP_VERSION": "1.1.0", "DB_HOST": "db.internal", "DB_NAME": "notes",
    "DB_USER": "app", "DB_PASSWORD": "s3cret",
}


def test_defaults_and_values():
    settings = settings_from_env(PLATFORM_ENV)
    assert settings.port == 8080 and settings.app_version == "1.1.0"
    assert (settings.database.host, settings.database.port) == ("db.internal", 5432)
    assert settings_from_env({**PLATFORM_ENV, "PORT": "9000", "DB_PORT": "6543"}).port == 9000


@pytest.mark.parametrize(
    ("overrides", "expected_error"),
    [
        ({"APP_VERSION": ""}, "APP_VERSION is required"),
        ({"DB_HOST": " "}, "DB_HOST is required"),
        ({"DB_NAME": ""}, "DB_NAME is required"),
        ({"DB_USER": ""}, "DB_USER is required"),
        ({"PORT": "http"}, "PORT='http' must be a TCP port, 1-65535"),
        ({"PORT": "70000"}, "PORT='70000' must be a TCP port"),
        ({"DB_PORT": "-1"}, "DB_PORT='-1' must be a TCP port"),
    ],
)
def test_bad_environment_is_refused_with_the_variable_named(overrides, expected_error):
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**PLATFORM_ENV, **overrides})
    assert expected_error in str(raised.value)


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_the_entry_point_exits_with_a_json_error_before_serving(command):
    env = {"PYTHONPATH": str(SERVICE_DIR), **PLATFORM_ENV, "DB_HOST": ""}
    result = subprocess.run([sys.executable, "-m", "liftoff_service", command], env=env,
                            cwd=SERVICE_DIR, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    [line] = json_lines(result.stdout)
    assert line["level"] == "error" and "DB_HOST is required" in line["reason"]


def test_an_unknown_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "liftoff_service", "serv"],
                            env={"PYTHONPATH": str(SERVICE_DIR)}, cwd=SERVICE_DIR,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "invalid choice: 'serv'" in result.stderr


def test_serving_a_release_without_code_is_refused():
    env = {"PYTHONPATH": str(SERVICE_DIR), **PLATFORM_ENV}
    result = subprocess.run([sys.executable, "-m", "liftoff_service", "serve", "--release", "0.1.0"],
                            env=env, cwd=SERVICE_DIR, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no API module liftoff_service.api.release_0_1_0" in json_lines(result.stdout)[0]["reason"]


def test_migrate_without_a_reachable_database_fails_clearly():
    env = {"PYTHONPATH": str(SERVICE_DIR), **PLATFORM_ENV, "DB_HOST": "127.0.0.1",
           "DB_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-m", "liftoff_service", "migrate"], env=env,
                            cwd=SERVICE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    [line] = json_lines(result.stdout)
    assert line["message"] == "migrate failed"
    assert line["reason"].startswith("cannot reach the database 127.0.0.1:")


def without_password(environ: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in environ.items() if key != "DB_PASSWORD"}


@pytest.mark.parametrize("content", ["s3cret\n", "s3cret\r\n", "s3cret"])
def test_the_password_can_come_from_a_file(tmp_path, content):
    secret = tmp_path / "db-password"
    secret.write_bytes(content.encode())
    settings = settings_from_env({**without_password(PLATFORM_ENV), "DB_PASSWORD_FILE": str(secret)})
    # Only the one trailing line break goes: spaces may be part of a password.
    assert settings.database.password == "s3cret"


def test_a_password_file_keeps_inner_and_surrounding_spaces(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text(" two words \n")
    settings = settings_from_env({**without_password(PLATFORM_ENV), "DB_PASSWORD_FILE": str(secret)})
    assert settings.database.password == " two words "


def test_an_empty_inline_password_does_not_count_as_set(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text("from-the-file\n")
    settings = settings_from_env({**PLATFORM_ENV, "DB_PASSWORD": "", "DB_PASSWORD_FILE": str(secret)})
    assert settings.database.password == "from-the-file"


def test_a_password_inline_and_from_a_file_is_refused(tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text("other\n")
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**PLATFORM_ENV, "DB_PASSWORD_FILE": str(secret)})
    message = str(raised.value)
    assert "DB_PASSWORD and DB_PASSWORD_FILE are both set" in message
    assert "at most one" in message
    assert "s3cret" not in message and "other" not in message


@pytest.mark.parametrize("content", ["", "\n", "\r\n"])
def test_an_empty_password_file_is_refused_by_its_path(tmp_path, content):
    secret = tmp_path / "db-password"
    secret.write_text(content)
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**without_password(PLATFORM_ENV), "DB_PASSWORD_FILE": str(secret)})
    assert str(raised.value) == (
        f"DB_PASSWORD_FILE={str(secret)!r} is empty; it must hold the database password")


def test_a_missing_password_file_is_refused_by_its_path(tmp_path):
    missing = tmp_path / "no-such-file"
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**without_password(PLATFORM_ENV), "DB_PASSWORD_FILE": str(missing)})
    assert str(raised.value) == f"DB_PASSWORD_FILE={str(missing)!r} cannot be read: No such file or directory"


def test_a_directory_as_password_file_is_refused_by_its_path(tmp_path):
    with pytest.raises(ConfigError) as raised:
        settings_from_env({**without_password(PLATFORM_ENV), "DB_PASSWORD_FILE": str(tmp_path)})
    assert f"DB_PASSWORD_FILE={str(tmp_path)!r} cannot be read" in str(raised.value)


def test_a_password_file_that_cannot_be_read_stops_the_entry_point_naming_the_path(tmp_path):
    # (A file the service user may not read is proven in the real container: test_container.py.)
    missing = tmp_path / "db-password"
    env = {"PYTHONPATH": str(SERVICE_DIR), **without_password(PLATFORM_ENV),
           "DB_PASSWORD_FILE": str(missing)}
    result = subprocess.run([sys.executable, "-m", "liftoff_service", "migrate"], env=env,
                            cwd=SERVICE_DIR, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = json_lines(result.stdout)
    assert line["reason"] == f"DB_PASSWORD_FILE={str(missing)!r} cannot be read: No such file or directory"
