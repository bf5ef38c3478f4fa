"""Expand/contract migrations on top of yoyo, applied as the stage decides.

Each step's kind comes from its header (see `liftoff_service.schema`). `migrate` applies every
pending expand step at once: an expand only adds what every running release ignores. A contract
step removes or tightens a shape older releases rely on, so `migrate` applies it only when the
caller names it (`--allow-contract ID`): the release tool decides that from the stage (what is
active, staged, warm or inside the rollback window), never from a file in the image. A contract
step not allowed is held, and every step after it (order is never skipped).

Every contract step applied is also written to `liftoff_schema_contracts` with the release it
retires, so any image, even one that does not ship that step, can tell that the schema has left it
behind: its `migrate` then refuses (exit 4) and the container does not serve. Every run ends with
one `schema state` log line (applied steps, applied contracts, held step), which the release tool
records in the stage's ledger.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from yoyo import get_backend, read_migrations
from yoyo.connections import DatabaseURI

from .config import DatabaseSettings
from .schema import MIGRATIONS_DIR, SERVICE_DIR, SchemaError, Step, parse_version, read_release, read_steps

log = logging.getLogger("liftoff.migrate")

SQUAWK_CONFIG = SERVICE_DIR / ".squawk.toml"
CONTRACTS_TABLE = "liftoff_schema_contracts"


class MigrationError(RuntimeError):
    """A migration file is malformed, or the database refused to apply one."""


class LeftBehind(MigrationError):
    """The schema has a contract step applied that removed what this release needs."""


@dataclass(frozen=True)
class Plan:
    to_apply: list[Step]
    held: Step | None


def plan_steps(steps: list[Step], applied_ids: set[str], allowed_contracts: frozenset[str] | set[str] = frozenset()) -> Plan:
    to_apply: list[Step] = []
    for step in steps:
        if step.migration_id in applied_ids:
            continue
        if step.kind == "contract" and step.migration_id not in allowed_contracts:
            # Later steps may build on this one, so they wait too: order is never skipped.
            return Plan(to_apply=to_apply, held=step)
        to_apply.append(step)
    return Plan(to_apply=to_apply, held=None)


@dataclass(frozen=True)
class SchemaState:
    """What the database holds after a run: every applied step (this image's or a newer one's) and
    the contract steps applied, with the release each retires."""

    applied: list[str]
    contracts: dict[str, str]
    applied_now: list[str] = field(default_factory=list)
    held: str | None = None
    held_after_retiring: str | None = None

    def as_log(self) -> dict:
        return {"schema": {"applied": self.applied, "contracts": self.contracts, "applied_now": self.applied_now,
                           "held": self.held, "held_after_retiring": self.held_after_retiring}}


def left_behind_by(contracts: dict[str, str], release: str) -> list[str]:
    """The applied contract steps that retire `release` (or a newer one): it cannot run any more."""
    own = parse_version(release)
    return sorted(step for step, retiring in contracts.items() if parse_version(retiring) >= own)


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


def _read_state(backend) -> tuple[list[str], dict[str, str]]:
    """Applied step ids (oldest first) and applied contract steps -> the release each retires."""
    backend.get_applied_migration_hashes()  # creates yoyo's own tables on a fresh database
    applied = [row[0] for row in backend.execute(
        "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id").fetchall()]
    # A row is written just before its step is applied; only steps yoyo recorded as applied count.
    rows = backend.execute(f"SELECT migration_id, after_retiring FROM {CONTRACTS_TABLE}").fetchall()
    contracts = {step: retiring for step, retiring in rows if step in set(applied)}
    return applied, contracts


def migrate_database(
    settings: DatabaseSettings,
    *,
    migrations_dir: Path = MIGRATIONS_DIR,
    allow_contracts: frozenset[str] | set[str] = frozenset(),
    release: str | None = None,
) -> SchemaState:
    """Apply the pending expand steps and the contract steps named in `allow_contracts`, in order.

    Refuses (LeftBehind, nothing applied) when an applied contract step retires `release` (default:
    the image's VERSION): that release's queries would break, so it must not migrate or serve."""
    version_file = migrations_dir.parent / "VERSION"
    try:
        shipped_with = read_release(version_file) if version_file.exists() else None
        release = release or shipped_with
        if release is None:
            raise SchemaError(f"no {version_file} beside the migrations, and no release given")
        steps = read_steps(migrations_dir, release=shipped_with)
    except (SchemaError, OSError) as error:
        raise MigrationError(str(error)) from error
    unknown = sorted(set(allow_contracts) - {s.migration_id for s in steps if s.kind == "contract"})
    if unknown:
        raise MigrationError(f"--allow-contract {', '.join(unknown)}: not a contract step this image ships "
                             f"(its contract steps: {', '.join(s.migration_id for s in steps if s.kind == 'contract') or 'none'})")
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
            with backend.transaction():
                backend.execute(f"CREATE TABLE IF NOT EXISTS {CONTRACTS_TABLE} ("
                                "migration_id text PRIMARY KEY, after_retiring text NOT NULL, "
                                "recorded_at timestamptz NOT NULL DEFAULT now())")
            applied_ids, contracts = _read_state(backend)
            behind = left_behind_by(contracts, release)
            if behind:
                raise LeftBehind(
                    f"release {release} cannot run on this schema: contract step {', '.join(behind)} "
                    f"(after-retiring {', '.join(contracts[s] for s in behind)}) removed what it needs"
                )
            plan = plan_steps(steps, set(applied_ids), allow_contracts)
            for step in plan.to_apply:
                log.info("applying migration", extra={"migration": step.migration_id, "kind": step.kind})
                if step.kind == "contract":
                    with backend.transaction():
                        backend.execute(
                            f"INSERT INTO {CONTRACTS_TABLE} (migration_id, after_retiring) VALUES (:step, :retiring) "
                            "ON CONFLICT (migration_id) DO UPDATE SET after_retiring = EXCLUDED.after_retiring",
                            {"step": step.migration_id, "retiring": step.after_retiring})
                backend.apply_one(by_id[step.migration_id])
            applied_ids, contracts = _read_state(backend)
    except MigrationError:
        raise
    except Exception as error:
        raise MigrationError(f"{type(error).__name__}: {error}") from error
    finally:
        backend.connection.close()
    state = SchemaState(applied=applied_ids, contracts=contracts, applied_now=[s.migration_id for s in plan.to_apply],
                        held=plan.held.migration_id if plan.held else None,
                        held_after_retiring=plan.held.after_retiring if plan.held else None)
    if plan.held is not None:
        log.info(
            "contract step held: not allowed by this run (the release tool allows it once no active, "
            "staged, warm or rollback-eligible release needs the old shape)",
            extra={"migration": plan.held.migration_id, "after_retiring": plan.held.after_retiring},
        )
    log.info("schema state", extra=state.as_log())
    return state


def squawk_command(paths: list[Path], squawk: str | None = None) -> list[str]:
    # squawk-cli installs the binary next to the venv's python, which may not be on PATH.
    beside_python = Path(sys.executable).parent / "squawk"
    binary = squawk or (str(beside_python) if beside_python.exists() else shutil.which("squawk"))
    if binary is None:
        raise MigrationError("squawk is not installed: pip install -r service/requirements-dev.txt")
    return [binary, "--config", str(SQUAWK_CONFIG), "--reporter", "gcc", *map(str, paths)]


def lint_migrations(migrations_dir: Path = MIGRATIONS_DIR, *, squawk: str | None = None) -> str:
    """Run squawk on every migration; raise MigrationError with its findings if any."""
    try:
        steps = read_steps(migrations_dir)
    except SchemaError as error:
        raise MigrationError(str(error)) from error
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
