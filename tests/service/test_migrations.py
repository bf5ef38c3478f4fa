"""Migrations up from empty, the expand/contract gate, and squawk on every migration."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from service_harness import applied_ids, columns, connect, json_lines, run_migrate

from liftoff_service.migrations import (
    MIGRATIONS_DIR, MigrationError, Step, lint_migrations, migrate_database, plan_steps,
    read_steps, squawk_command,
)
from liftoff_service.releases import parse_ledger, read_ledger

TWO_LIVE = parse_ledger({"releases": [{"version": "1.0.0", "live": True},
                                      {"version": "1.1.0", "live": True}]})
OLD_RETIRED = parse_ledger({"releases": [{"version": "1.0.0", "live": False},
                                         {"version": "1.1.0", "live": True}]})


def test_migrate_from_empty_applies_expands_and_holds_the_contract(database):
    result = run_migrate(database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]
    assert columns(database) == {"id": "NO", "body": "NO", "created_at": "NO", "title": "YES"}
    held = [line for line in json_lines(result.stdout) if line["message"].startswith("contract step held")]
    assert held and held[0]["migration"] == "0003_require_note_title"
    assert held[0]["live_releases_blocking"] == ["1.0.0"]

    again = run_migrate(database)
    assert again.returncode == 0
    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]


def test_contract_applies_once_the_old_release_is_retired(database):
    migrate_database(database, ledger=TWO_LIVE)
    with connect(database) as conn:
        # Written as 1.0.0 writes: no title.
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("  Pay rent \nby Friday",))

    plan = migrate_database(database, ledger=OLD_RETIRED)

    assert [step.migration_id for step in plan.to_apply] == ["0003_require_note_title"]
    assert plan.held is None
    assert columns(database)["title"] == "NO"
    with connect(database) as conn:
        assert conn.execute("SELECT title FROM notes").fetchone() == ("Pay rent",)


def test_a_held_contract_also_holds_every_later_step():
    steps = [
        Step("0001_a", MIGRATIONS_DIR / "x", "expand"),
        Step("0002_b", MIGRATIONS_DIR / "x", "contract", after_retiring="1.0.0"),
        Step("0003_c", MIGRATIONS_DIR / "x", "expand"),
    ]
    plan = plan_steps(steps, applied_ids=set(), ledger=TWO_LIVE)
    assert [s.migration_id for s in plan.to_apply] == ["0001_a"]
    assert plan.held.migration_id == "0002_b" and plan.blocking_releases == ["1.0.0"]

    plan = plan_steps(steps, applied_ids={"0001_a"}, ledger=OLD_RETIRED)
    assert [s.migration_id for s in plan.to_apply] == ["0002_b", "0003_c"]


def test_every_repo_migration_declares_its_kind():
    steps = read_steps(MIGRATIONS_DIR, read_ledger())
    assert [(s.migration_id, s.kind, s.after_retiring) for s in steps] == [
        ("0001_create_notes", "expand", None),
        ("0002_add_note_title", "expand", None),
        ("0003_require_note_title", "contract", "1.0.0"),
    ]


@pytest.mark.parametrize(
    ("first_line", "expected_error"),
    [
        ("CREATE TABLE t (id int);", "the first line must be '-- liftoff: expand'"),
        ("-- liftoff: contract", "a contract step must name the newest release"),
        ("-- liftoff: contract after-retiring 0.9.0", "release '0.9.0' is not in releases.json"),
        ("-- liftoff: contract after-retiring one", "is not MAJOR.MINOR.PATCH semver"),
        ("-- liftoff: expand after-retiring 1.0.0", "'after-retiring' only applies to a contract"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, first_line, expected_error):
    (tmp_path / "0001_bad.sql").write_text(first_line + "\nSELECT 1;\n")
    with pytest.raises(Exception, match=re.escape(expected_error)):
        read_steps(tmp_path, TWO_LIVE)


def test_an_empty_migrations_directory_is_refused(tmp_path):
    with pytest.raises(MigrationError, match="no migrations found"):
        read_steps(tmp_path, TWO_LIVE)


def test_a_failing_migration_is_reported_and_not_recorded(database, tmp_path):
    for path in MIGRATIONS_DIR.glob("000[12]_*.sql"):
        shutil.copy(path, tmp_path)
    (tmp_path / "0003_broken.sql").write_text("-- liftoff: expand\nALTER TABLE nope ADD COLUMN x text;\n")
    with pytest.raises(MigrationError, match='relation "nope" does not exist'):
        migrate_database(database, migrations_dir=tmp_path, ledger=TWO_LIVE)
    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]


# squawk: the repo's migrations pass; the checks it exists for really fire.

def squawk(paths) -> subprocess.CompletedProcess:
    return subprocess.run(squawk_command(list(paths)), capture_output=True, text=True)


def test_squawk_passes_every_repo_migration():
    lint_migrations()


def test_squawk_flags_the_contract_step_once_its_marking_is_removed(tmp_path):
    contract = (MIGRATIONS_DIR / "0003_require_note_title.sql").read_text()
    unmarked = tmp_path / "0003_require_note_title.sql"
    unmarked.write_text("\n".join(l for l in contract.splitlines() if "squawk-ignore" not in l))
    result = squawk([unmarked])
    assert result.returncode != 0
    assert "adding-not-nullable-field" in result.stdout


@pytest.mark.parametrize(
    ("statement", "rule"),
    [
        ("ALTER TABLE notes DROP COLUMN body;", "ban-drop-column"),
        ("ALTER TABLE notes RENAME COLUMN body TO text;", "renaming-column"),
        ("DROP TABLE notes;", "ban-drop-table"),
        ("ALTER TABLE notes ALTER COLUMN body TYPE varchar(100);", "changing-column-type"),
    ],
)
def test_backward_incompatible_statements_fail_the_lint(tmp_path, statement, rule):
    shutil.copy(MIGRATIONS_DIR / "0001_create_notes.sql", tmp_path)
    (tmp_path / "0002_incompatible.sql").write_text(
        "-- liftoff: expand\nSET LOCAL lock_timeout = '5s';\n"
        f"SET LOCAL statement_timeout = '60s';\n{statement}\n"
    )
    with pytest.raises(MigrationError, match=rule):
        lint_migrations(tmp_path, ledger=TWO_LIVE)


def test_only_a_contract_step_may_silence_squawk(tmp_path):
    shutil.copy(MIGRATIONS_DIR / "0001_create_notes.sql", tmp_path)
    (tmp_path / "0002_sneaky.sql").write_text(
        "-- liftoff: expand\n-- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n"
    )
    with pytest.raises(MigrationError, match="only a contract step may silence squawk.*0002_sneaky"):
        lint_migrations(tmp_path, ledger=TWO_LIVE)
