"""Expand/contract migrations on top of yoyo.

Every file in service/migrations/ starts with one header line saying which kind of step it is:

    -- liftoff: expand
    -- liftoff: contract after-retiring 1.0.0

An expand step only adds what every live release can ignore, so `migrate` applies it at once.
A contract step removes or tightens a shape that releases up to the named one rely on, so
`migrate` holds it, and every migration after it, while releases.json declares any of those
releases live. The next `migrate` after they are retired (normally the next release's deploy)
applies it. squawk lints every file; only contract steps may silence it (`-- squawk-ignore`).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from yoyo import get_backend, read_migrations
from yoyo.connections import DatabaseURI

from .config import DatabaseSettings
from .releases import SERVICE_DIR, ReleaseLedger, parse_version, read_ledger

log = logging.getLogger("liftoff.migrate")

MIGRATIONS_DIR = SERVICE_DIR / "migrations"
SQUAWK_CONFIG = SERVICE_DIR / ".squawk.toml"
_HEADER = re.compile(r"^-- liftoff: (?P<kind>expand|contract)(?: after-retiring (?P<release>\S+))?\s*$")


class MigrationError(RuntimeError):
    """A migration file is malformed, or the database refused to apply one."""


@dataclass(frozen=True)
class Step:
    migration_id: str
    path: Path
    kind: str  # "expand" or "contract"
    after_retiring: str | None = None

    def blocking_releases(self, ledger: ReleaseLedger) -> list[str]:
        """Live releases that still need the shape this step removes."""
        if self.kind != "contract":
            return []
        limit = parse_version(self.after_retiring)
        return [r.version for r in ledger.releases if r.live and r.key <= limit]


def read_step(path: Path, ledger: ReleaseLedger) -> Step:
    first_line = path.read_text(encoding="utf-8").split("\n", 1)[0]
    match = _HEADER.match(first_line)
    if not match:
        raise MigrationError(
            f"{path.name}: the first line must be '-- liftoff: expand' or "
            f"'-- liftoff: contract after-retiring X.Y.Z', got {first_line!r}"
        )
    kind, release = match.group("kind"), match.group("release")
    if kind == "contract":
        if release is None:
            raise MigrationError(
                f"{path.name}: a contract step must name the newest release that needs the "
                "old shape: '-- liftoff: contract after-retiring X.Y.Z'"
            )
        parse_version(release)
        ledger.get(release)  # a typo here would silently never (or always) block
    elif release is not None:
        raise MigrationError(f"{path.name}: 'after-retiring' only applies to a contract step")
    return Step(migration_id=path.stem, path=path, kind=kind, after_retiring=release)


def read_steps(migrations_dir: Path, ledger: ReleaseLedger) -> list[Step]:
    paths = sorted(p for p in migrations_dir.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    if not paths:
        raise MigrationError(f"no migrations found in {migrations_dir}")
    return [read_step(path, ledger) for path in paths]


@dataclass(frozen=True)
class Plan:
    to_apply: list[Step]
    held: Step | None
    blocking_releases: list[str]


def plan_steps(steps: list[Step], applied_ids: set[str], ledger: ReleaseLedger) -> Plan:
    to_apply: list[Step] = []
    for step in steps:
        if step.migration_id in applied_ids:
            continue
        blockers = step.blocking_releases(ledger)
        if blockers:
            # Later steps may build on this one, so they wait too: order is never skipped.
            return Plan(to_apply=to_apply, held=step, blocking_releases=blockers)
        to_apply.append(step)
    return Plan(to_apply=to_apply, held=None, blocking_releases=[])


def _backend(settings: DatabaseSettings):
    uri = DatabaseURI(
        scheme="postgresql+psycopg",
        username=settings.user,
        password=settings.password,
        hostname=settings.host,
        port=settings.port,
        database=settings.name,
        args={"connect_timeout": "10", "application_name": "liftoff-migrate"},
    )
    return get_backend(str(uri))


def migrate_database(
    settings: DatabaseSettings,
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
    ledger: ReleaseLedger | None = None,
) -> Plan:
    ledger = ledger or read_ledger()
    steps = read_steps(migrations_dir, ledger)
    migrations = read_migrations(str(migrations_dir))
    by_id = {migration.id: migration for migration in migrations}
    try:
        backend = _backend(settings)
    except Exception as error:
        raise MigrationError(
            f"cannot reach the database {settings.host}:{settings.port}/{settings.name}: {error}"
        ) from error
    try:
        # yoyo's lock serialises two tasks that run `migrate` at the same moment.
        with backend.lock():
            applied_hashes = set(backend.get_applied_migration_hashes())
            applied_ids = {m.id for m in migrations if m.hash in applied_hashes}
            plan = plan_steps(steps, applied_ids, ledger)
            for step in plan.to_apply:
                log.info("applying migration",
                         extra={"migration": step.migration_id, "kind": step.kind})
                backend.apply_one(by_id[step.migration_id])
    except Exception as error:
        if isinstance(error, MigrationError):
            raise
        raise MigrationError(f"{type(error).__name__}: {error}") from error
    finally:
        backend.connection.close()
    if plan.held is not None:
        log.warning(
            "contract step held: releases that need the old shape are still declared live",
            extra={
                "migration": plan.held.migration_id,
                "live_releases_blocking": plan.blocking_releases,
                "next": "retire them in service/releases.json once no instance runs them, "
                "then run migrate again",
            },
        )
    log.info(
        "migrations done",
        extra={"applied": [s.migration_id for s in plan.to_apply],
               "held": plan.held.migration_id if plan.held else None},
    )
    return plan


def squawk_command(paths: list[Path], squawk: str | None = None) -> list[str]:
    # squawk-cli installs the binary next to the venv's python, which may not be on PATH.
    beside_python = Path(sys.executable).parent / "squawk"
    binary = squawk or (str(beside_python) if beside_python.exists() else shutil.which("squawk"))
    if binary is None:
        raise MigrationError("squawk is not installed: pip install -r service/requirements-dev.txt")
    return [binary, "--config", str(SQUAWK_CONFIG), "--reporter", "gcc", *map(str, paths)]


def lint_migrations(migrations_dir: Path = MIGRATIONS_DIR, *, squawk: str | None = None,
                    ledger: ReleaseLedger | None = None) -> str:
    """Run squawk on every migration; raise MigrationError with its findings if any."""
    steps = read_steps(migrations_dir, ledger or read_ledger())
    silenced_expands = [
        step.path.name for step in steps
        if step.kind == "expand" and "squawk-ignore" in step.path.read_text(encoding="utf-8")
    ]
    if silenced_expands:
        raise MigrationError(
            "only a contract step may silence squawk; expand steps with squawk-ignore: "
            + ", ".join(silenced_expands)
        )
    result = subprocess.run(
        squawk_command([step.path for step in steps], squawk),
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise MigrationError(f"squawk found problems:\n{result.stdout}{result.stderr}")
    return result.stdout
