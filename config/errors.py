"""The one error config raises, and how its messages show a value: as cdk.json writes it."""
from __future__ import annotations

import json
import re
from typing import Any


class ConfigError(ValueError):
    """A stage configuration that cannot be deployed; the message names stage, key, value and rule."""


def fail(stage: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"stage {stage!r}: {key} = {show(value)} is not allowed; expected {allowed}")


def show(value: Any) -> str:
    """A value as cdk.json writes it, numbers beyond a double included."""
    text = json.dumps(value, default=lambda number: f"\x00{number.text}\x00")
    return re.sub(r'"\\u0000(.*?)\\u0000"', r"\1", text)
