"""The release ledger: service/VERSION (the code's release) and service/releases.json.

releases.json is the one place that says which releases may still be running. Two things read
it: the migrate command (a contract step waits until every release that needs the old shape is
retired) and the tests (every live release must serve against the current schema at once).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parent.parent
VERSION_FILE = SERVICE_DIR / "VERSION"
RELEASES_FILE = SERVICE_DIR / "releases.json"

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class ReleaseLedgerError(ValueError):
    """The VERSION file or releases.json is malformed or inconsistent."""


def parse_version(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ReleaseLedgerError(
            f"release version {text!r} is not MAJOR.MINOR.PATCH semver (e.g. '1.1.0')"
        )
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


@dataclass(frozen=True)
class Release:
    version: str
    live: bool

    @property
    def key(self) -> tuple[int, int, int]:
        return parse_version(self.version)


@dataclass(frozen=True)
class ReleaseLedger:
    releases: tuple[Release, ...]

    def live_versions(self) -> list[str]:
        return [release.version for release in self.releases if release.live]

    def get(self, version: str) -> Release:
        for release in self.releases:
            if release.version == version:
                return release
        known = ", ".join(release.version for release in self.releases)
        raise ReleaseLedgerError(f"release {version!r} is not in releases.json (known: {known})")


def read_current_version(path: Path = VERSION_FILE) -> str:
    text = path.read_text(encoding="utf-8").strip()
    parse_version(text)
    return text


def parse_ledger(document: object) -> ReleaseLedger:
    if not isinstance(document, dict) or set(document) != {"releases"}:
        raise ReleaseLedgerError('releases.json must be an object with exactly one key, "releases"')
    entries = document["releases"]
    if not isinstance(entries, list) or not entries:
        raise ReleaseLedgerError('"releases" must be a non-empty list')
    releases = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"version", "live"}:
            raise ReleaseLedgerError(
                f"releases[{index}] must be an object with exactly the keys "
                f'"version" (string) and "live" (true/false), got {entry!r}'
            )
        if not isinstance(entry["version"], str) or not isinstance(entry["live"], bool):
            raise ReleaseLedgerError(
                f'releases[{index}]: "version" must be a string and "live" a boolean, got {entry!r}'
            )
        releases.append(Release(version=entry["version"], live=entry["live"]))
    keys = [release.key for release in releases]
    if keys != sorted(set(keys)):
        raise ReleaseLedgerError(
            "releases must be listed oldest first with no duplicates, got "
            + ", ".join(release.version for release in releases)
        )
    return ReleaseLedger(releases=tuple(releases))


def read_ledger(path: Path = RELEASES_FILE) -> ReleaseLedger:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ReleaseLedgerError(f"{path} is not valid JSON: {error}") from error
    return parse_ledger(document)
