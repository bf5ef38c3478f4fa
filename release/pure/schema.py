"""Pure schema decisions: which versions can run on a stage's schema, which contract steps may run now.

No AWS, no clock, no I/O: the image labels, the stage's recorded schema state, the stack's parameters
and the ledger arrive as plain data (`release.adapters.schema_aws` reads them), and `now` is passed in.

- An image declares its schema contract as labels (service/liftoff_service/schema.py writes them at
  build): its release, the newest migration it ships, the oldest schema it runs against (its newest
  expand step) and the contract steps it ships, each with the newest release that needs the old shape.
- The stage's schema state is what the last `liftoff migrate` saw in the database: the applied steps
  and the applied contract steps with the release each retires.
- A version can run when the step it requires is applied and no applied contract step retires it.
- A contract step runs only when no version that is active, staged, warm or inside the stage's
  rollback window is a release it retires (or declares no release at all: unknown holds).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence

from release.pure import bake, decisions as d

LABEL_RELEASE = "io.liftoff.release"
LABEL_HEAD = "io.liftoff.schema.head"
LABEL_REQUIRES = "io.liftoff.schema.requires"
LABEL_CONTRACTS = "io.liftoff.schema.contracts"

FIT_OK, FIT_NEEDS_MIGRATE, FIT_LEFT_BEHIND, FIT_UNKNOWN = "runs", "needs migrate", "left behind", "unknown"
_SEMVER = re.compile(r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_STEP_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class LabelError(ValueError):
    """An image's schema labels are malformed; the message names the tag, the label and the value."""


def release_key(release: str) -> tuple[int, int, int] | None:
    match = _SEMVER.match(release or "")
    return tuple(int(part) for part in match.groups()) if match else None


@dataclass(frozen=True)
class ImageSchema:
    tag: str
    release: str
    head: str
    requires: str
    contracts: tuple[tuple[str, str], ...] = ()


def parse_labels(tag: str, labels: Mapping[str, str] | None) -> ImageSchema | None:
    """The image's declared contract; None when it declares none (an image built before the labels)."""
    labels = labels or {}
    if not labels.get(LABEL_HEAD):
        return None
    release = labels.get(LABEL_RELEASE, "")
    if release_key(release) is None:
        raise LabelError(f"image {tag}: label {LABEL_RELEASE}={release!r} is not a release like 1.4.2")
    for label in (LABEL_HEAD, LABEL_REQUIRES):
        if labels.get(label) and not _STEP_ID.match(labels[label]):
            raise LabelError(f"image {tag}: label {label}={labels[label]!r} is not a migration id")
    contracts = []
    for item in (labels.get(LABEL_CONTRACTS) or "").split():
        step, _, retiring = item.partition(":")
        if not _STEP_ID.match(step) or release_key(retiring) is None:
            raise LabelError(f"image {tag}: label {LABEL_CONTRACTS} has {item!r}; expected MIGRATION_ID:X.Y.Z items")
        contracts.append((step, retiring))
    return ImageSchema(tag=tag, release=release, head=labels[LABEL_HEAD], requires=labels.get(LABEL_REQUIRES, ""),
                       contracts=tuple(contracts))


@dataclass(frozen=True)
class SchemaState:
    """The stage's schema as the last `liftoff migrate` left it (recorded in the ledger's table)."""

    applied: tuple[str, ...]
    contracts: Mapping[str, str] = field(default_factory=dict)
    recorded_at: str = ""
    version: str = ""  # the image whose migrate recorded it
    release_id: str = ""

    @property
    def head(self) -> str:
        return max(self.applied) if self.applied else ""

    @property
    def contracts_text(self) -> str:
        """The applied contract steps with the release each retires, for people ("" when none)."""
        return ", ".join(f"{step} (after-retiring {retired})" for step, retired in sorted(self.contracts.items()))


@dataclass(frozen=True)
class Fit:
    kind: str
    message: str
    steps: tuple[str, ...] = ()


def fit(image: ImageSchema | None, state: SchemaState | None, *, tag: str = "") -> Fit:
    """Can this image run on the stage's schema?"""
    tag = image.tag if image else tag
    if image is None:
        return Fit(FIT_UNKNOWN, f"{tag} declares no schema contract (no {LABEL_HEAD} label)")
    if state is None:
        return Fit(FIT_UNKNOWN, "the stage has no recorded schema state (run `liftoff migrate` once to record it)")
    own = release_key(image.release)
    behind = sorted(step for step, retiring in state.contracts.items() if own <= (release_key(retiring) or (0, 0, 0)))
    if behind:
        named = ", ".join(f"{step} (after-retiring {state.contracts[step]})" for step in behind)
        return Fit(FIT_LEFT_BEHIND, f"{tag} (release {image.release}) cannot run on this schema: contract step {named} "
                                    "removed what it needs", tuple(behind))
    if image.requires and image.requires not in state.applied:
        return Fit(FIT_NEEDS_MIGRATE, f"{tag} needs expand step {image.requires}, which is not applied (schema head "
                                      f"{state.head or 'empty'})", (image.requires,))
    return Fit(FIT_OK, f"{tag} runs on this schema")


# --- who holds a contract step --------------------------------------------------------------------

def describe_window(window) -> str:
    """`window`: the stage's `config.RollbackWindow` (the last `releases` versions replaced, or those replaced in the last `days`)."""
    if window.days is not None:
        return f"the last {window.days} day(s)"
    return f"the last {window.releases} release(s)"


@dataclass(frozen=True)
class Holder:
    version: str
    why: str  # active, staged, warm, rollback window
    leaves: str = ""  # when it stops holding, for people


def _epoch(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def holders(*, active: str | None, staged: str | None, entries: Sequence[d.Entry], now: float, window,
            bake_seconds: int) -> list[Holder]:
    """Every version the stage may still run: active, staged, warm (the one the last switch replaced,
    for `bake_seconds` after it) and the rollback window (`entries` newest first, as the ledger gives them)."""
    found: list[Holder] = []
    seen: set[str] = set()

    def add(version: str | None, why: str, leaves: str = "") -> None:
        if version and version not in seen:
            seen.add(version)
            found.append(Holder(version, why, leaves))

    add(active, "active", "when another version is activated and it leaves the rollback window")
    add(staged, "staged", "when another version is staged")
    warm = bake.warm_window(entries, active=active, bake_seconds=bake_seconds, now=now)  # the one definition of warm
    if warm:
        add(warm["version"], "warm", f"at {_iso(warm['until'])} (bake_seconds {bake_seconds})")
    moved = list(reversed(d.switches(entries, active)))  # newest first
    replaced: list[tuple[str, float | None]] = []
    for entry in moved:
        if entry.from_version and entry.from_version != active and entry.from_version not in {v for v, _ in replaced}:
            replaced.append((entry.from_version, _epoch(entry.finished_at or entry.started_at)))
    for index, (version, at) in enumerate(replaced):
        if window.days is not None:
            if at is not None and now - at < window.days * 86400:
                add(version, f"rollback window ({describe_window(window)})", f"at {_iso(at + window.days * 86400)}")
        elif index < (window.releases or 0):
            more = window.releases - index
            add(version, f"rollback window ({describe_window(window)})", f"after {more} more activation(s) of other versions")
    return found


@dataclass(frozen=True)
class ContractPlan:
    allowed: tuple[str, ...]
    held: str | None = None
    held_after_retiring: str | None = None
    held_by: tuple[Holder, ...] = ()

    def describe(self) -> str:
        if self.held is None:
            return ("contract steps allowed: " + ", ".join(self.allowed)) if self.allowed else "no contract step pending"
        who = "; ".join(f"{h.version} ({h.why}; leaves {h.leaves})" if h.leaves else f"{h.version} ({h.why})"
                        for h in self.held_by)
        return (f"contract step {self.held} (after-retiring {self.held_after_retiring}) held, and every step after it: "
                f"still needed by {who}")


def decide_contracts(image: ImageSchema, state: SchemaState | None, holding: Iterable[Holder],
                     releases: Mapping[str, str | None]) -> ContractPlan:
    """Which of the image's pending contract steps may run now, in order (a held one holds every later one).

    `releases`: each holder version's declared release (None when its image declares none: unknown holds)."""
    holding = list(holding)
    applied = set(state.applied) if state else set()
    allowed: list[str] = []
    for step, retiring in image.contracts:
        if step in applied:
            continue
        limit = release_key(retiring)
        blockers = tuple(h for h in holding
                         if release_key(releases.get(h.version) or "") is None or release_key(releases[h.version]) <= limit)
        if blockers:
            return ContractPlan(tuple(allowed), step, retiring, blockers)
        allowed.append(step)
    return ContractPlan(tuple(allowed))


def migrate_target(requested: str | None, *, active: str | None, staged: str | None) -> str | None:
    """Which version's migrations `liftoff migrate` runs: the one asked for, else the staged (the next to run)."""
    return requested or staged or active


def decide_switch(tag: str, image: ImageSchema | None, state: SchemaState | None, *, stage: str) -> d.Decision | None:
    """May `tag` become the running version on this schema? None: yes (or the schema cannot tell).

    `--force` never overrides this: code the schema has left behind breaks whatever was forced."""
    verdict = fit(image, state, tag=tag)
    if verdict.kind == FIT_LEFT_BEHIND:
        return d.refuse(d.EXIT_REFUSED, verdict.message,
                        f"pick a version the schema still serves (`liftoff versions --stage {stage}` marks them); "
                        "--force does not override this")
    if verdict.kind == FIT_NEEDS_MIGRATE:
        return d.refuse(d.EXIT_REFUSED, f"{verdict.message} on {stage}",
                        f"run `liftoff migrate --stage {stage} --version {tag}` first, or pass --migrate to run it now")
    return None


def parse_state_line(output: str) -> dict | None:
    """The `schema state` line a migrate run prints last (JSON lines on stdout), or None."""
    found = None
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("message") == "schema state" and isinstance(document.get("schema"), dict):
            found = document["schema"]
    return found
