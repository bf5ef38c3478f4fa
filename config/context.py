"""The whole `liftoff` context, judged alike however it arrives: as the CDK CLI hands it to the app
(parse_cli_context), read from cdk.json by tools that run without a synth (load_config), or as given
(parse_config)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from config.errors import ConfigError, fail
from config.github import parse_github
from config.keys import parse_stage
from config.model import CONTEXT_KEY, LiftoffConfig


def parse_config(context: Any) -> LiftoffConfig:
    """Validate the whole `liftoff` context before anything is built; raise ConfigError on the first problem."""
    if not isinstance(context, Mapping):
        raise ConfigError(f"cdk.json context {CONTEXT_KEY!r} must be an object with a 'stages' key")
    context = _as_the_app_sees_it(context)
    unknown = sorted(set(context) - {"stages", "github"})
    if unknown:
        raise ConfigError(f"context {CONTEXT_KEY!r}: unknown key {unknown[0]!r}; allowed keys: github, stages")
    raw_stages = context.get("stages")
    if not isinstance(raw_stages, Mapping) or not raw_stages:
        raise ConfigError(f"context {CONTEXT_KEY!r}: 'stages' must be a non-empty object of stage name to settings")
    stages = tuple(parse_stage(name, raw) for name, raw in raw_stages.items())
    by_name = {stage.name: stage for stage in stages}
    for stage in stages:
        if stage.share_registry_with is None:
            continue
        owner = by_name.get(stage.share_registry_with)
        if owner is None or owner.name == stage.name or owner.share_registry_with is not None:
            allowed = [s.name for s in stages if s.name != stage.name and s.share_registry_with is None]
            raise fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                "another stage that owns its registry: " + (", ".join(allowed) or "none configured"),
            )
        if (owner.account, owner.region) != (stage.account, stage.region):
            raise fail(
                stage.name, "share_registry_with", stage.share_registry_with,
                f"a stage in the same account and region (stage {owner.name!r} is in "
                f"{owner.account or 'any'}/{owner.region or 'any'})",
            )
    github = parse_github(context["github"], stages) if context.get("github") is not None else None
    return LiftoffConfig(stages=stages, github=github)


def _as_the_app_sees_it(value: Any) -> Any:
    """The context as app.py receives it at synth. The CDK CLI reads cdk.json with JavaScript, which
    has one number type, so `2.0` arrives as 2; and the context reaches Python through jsii, which
    drops every key whose value is null. `python -m config`, the release tool and the tests read
    cdk.json with Python; normalising here makes every reader judge a value the same way."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _as_the_app_sees_it(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_as_the_app_sees_it(item) for item in value]
    return value


def load_config(cdk_json: Path) -> LiftoffConfig:
    """Read the stages straight from cdk.json, for tools that run without a synth."""
    return parse_config(_read_context(cdk_json))


def parse_cli_context(context: Any, cdk_json: Path) -> LiftoffConfig:
    """app.py's reader: the context as the CDK CLI hands it to the app, judged as load_config judges
    cdk.json. The CLI reads cdk.json with JavaScript, where a number beyond a double (1e400) becomes
    Infinity, and passes the context on as JSON, where Infinity becomes null, which jsii drops: the
    app would see no key at all (a default, or "missing required key"). Such numbers are put back
    from cdk.json, so synth refuses them with the very message `python -m config` gives."""
    try:
        written = _read_context(cdk_json)
    except ConfigError:
        return parse_config(context)  # not the CLI's cdk.json (an app built in-process): nothing was lost
    return parse_config(_put_back_lost_numbers(context, written))


class _BeyondDouble:
    """A number in cdk.json that a double cannot hold, kept as written: every check refuses it."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _read_number(text: str) -> Any:
    # Python reads 1e400 as inf and a 400-digit integer exactly; JavaScript makes both Infinity, and
    # rounds integers beyond 2**53. Read them as the CLI does, but keep what cannot be a number at all.
    as_double = float(text)
    if math.isinf(as_double):
        return _BeyondDouble(text)
    if re.fullmatch(r"-?[0-9]+", text):
        exact = int(text)
        return exact if abs(exact) <= 2**53 else int(as_double)
    return as_double


def _read_context(cdk_json: Path) -> Any:
    try:
        document = json.loads(cdk_json.read_text(), parse_constant=_refuse_constant, parse_int=_read_number, parse_float=_read_number)
        return document["context"][CONTEXT_KEY]
    except FileNotFoundError:
        raise ConfigError(f"{cdk_json} not found; run from the liftoff checkout") from None
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{cdk_json}: no readable context.{CONTEXT_KEY} ({error})") from None


def _put_back_lost_numbers(received: Any, written: Any) -> Any:
    if isinstance(written, _BeyondDouble):
        return written if received is None else received  # a value given on the command line (-c) wins
    if isinstance(written, Mapping) and isinstance(received, Mapping):
        merged = dict(received)
        for key, value in written.items():
            restored = _put_back_lost_numbers(received.get(key), value)
            if restored is not None:
                merged[key] = restored
        return merged
    if isinstance(written, list) and isinstance(received, list) and len(written) == len(received):
        return [_put_back_lost_numbers(r, w) for r, w in zip(received, written)]
    return received


def _refuse_constant(name: str):
    # JavaScript's JSON (the CDK CLI's reader) refuses NaN and Infinity; so does this one.
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)
