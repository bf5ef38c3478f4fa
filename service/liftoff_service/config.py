"""Configuration comes only from the environment the platform sets.

The one file ever read is the one DB_PASSWORD_FILE names: a secret mounted as a file stays out of
the container's environment, so `docker inspect` and process listings never show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_PORT = 8080


class ConfigError(ValueError):
    """An environment variable is missing or has a value the service cannot use."""


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    name: str
    user: str
    password: str = ""

    def conninfo_kwargs(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.name,
            "user": self.user,
            "password": self.password,
            # A DB that does not answer must fail quickly, not hang a worker thread (2 s: libpq's minimum).
            "connect_timeout": 2,
            "application_name": "liftoff-service",
        }


@dataclass(frozen=True)
class Settings:
    port: int
    app_version: str
    database: DatabaseSettings


def _require(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is required and must not be empty")
    return value


def _port(environ: Mapping[str, str], name: str, default: int | None) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        if default is None:
            raise ConfigError(f"environment variable {name} is required (a TCP port, 1-65535)")
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"environment variable {name}={raw!r} must be a TCP port, 1-65535")
    return int(raw)


def _password(environ: Mapping[str, str]) -> str:
    inline = environ.get("DB_PASSWORD", "")
    path = environ.get("DB_PASSWORD_FILE", "").strip()
    if not path:
        # Empty is allowed: local trust/peer auth needs none; RDS always gets one from the secret.
        return inline
    if inline:
        raise ConfigError(
            "environment variables DB_PASSWORD and DB_PASSWORD_FILE are both set; "
            "set at most one of them (DB_PASSWORD_FILE keeps the password out of the environment)"
        )
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"DB_PASSWORD_FILE={path!r} cannot be read: {reason}") from None
    # Files written by `echo` or editors end with a newline that is not part of the password.
    password = content.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError(f"DB_PASSWORD_FILE={path!r} is empty; it must hold the database password")
    return password


def database_settings_from_env(environ: Mapping[str, str]) -> DatabaseSettings:
    return DatabaseSettings(
        host=_require(environ, "DB_HOST"),
        port=_port(environ, "DB_PORT", default=5432),
        name=_require(environ, "DB_NAME"),
        user=_require(environ, "DB_USER"),
        password=_password(environ),
    )


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    return Settings(
        port=_port(environ, "PORT", default=DEFAULT_PORT),
        app_version=_require(environ, "APP_VERSION"),
        database=database_settings_from_env(environ),
    )
