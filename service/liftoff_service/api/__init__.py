"""The notes API, one frozen module per release that may still be live.

A release module is the part of the service that touches the schema, kept exactly as that
release shipped it. The image serves its own release's module; the tests run every module
that this tree keeps (`releases.kept_versions`), side by side against one database, which is what the
platform does during a rollout. Delete a module once its release is retired.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..releases import parse_version


class BadRequest(ValueError):
    """The client sent something the API cannot accept; the message says what and why."""


def module_name_for(version: str) -> str:
    major, minor, patch = parse_version(version)
    return f"{__name__}.release_{major}_{minor}_{patch}"


def load_release_api(version: str) -> ModuleType:
    name = module_name_for(version)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:
            raise
        raise LookupError(
            f"no API module {name} for release {version}: add service/liftoff_service/api/"
            f"{name.rsplit('.', 1)[1]}.py, or stop serving that release"
        ) from error


def require_object(payload: object) -> dict:
    if not isinstance(payload, dict):
        raise BadRequest("request body must be a JSON object")
    return payload


def reject_unknown_fields(payload: dict, allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def require_text(payload: dict, field: str, *, max_length: int, required: bool) -> str | None:
    value = payload.get(field)
    if value is None:
        if required:
            raise BadRequest(f'field "{field}" is required (a non-empty string)')
        return None
    if not isinstance(value, str):
        raise BadRequest(f'field "{field}" must be a string, got {type(value).__name__}')
    if not value.strip():
        raise BadRequest(f'field "{field}" must not be blank')
    if len(value) > max_length:
        raise BadRequest(f'field "{field}" is {len(value)} characters; the limit is {max_length}')
    return value
