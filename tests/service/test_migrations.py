"""Migrations up from empty, the expand/contract gate, and squawk on every migration."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from service_harness import applied_ids, columns, connect, json_lines, run_migrate

from liftoff_service.migrations import (
    CONTRACTS_TABLE, MIGRATIONS_DIR, LeftBehind, MigrationError, Step, left_behind_by, lint_migrations,
    migrate_database, plan_steps, squawk_command,
)
from liftoff_service.schema import SchemaError, read_steps

CONTRACT = "0003_require_note_title"


def schema_state(stdout: str) -> dict:
    (line,) = [line for line in json_lines(stdout) if line["message"] == "schema state"]
    return line["schema"]


def test_migrate_from_empty_applies_expands_and_holds_the_contract(database):
    result = run_migrate(database)
    assert result.returncode == 0, result.stdout + result.stderr
    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]
    assert columns(database) == {"id": "NO", "body": "NO", "created_at": "NO", "title": "YES"}
    held = [line for line in json_lines(result.stdout) if line["message"].startswith("contract step held")]
    assert held and held[0]["migration"] == CONTRACT and held[0]["after_retiring"] == "1.0.0"
    assert schema_state(result.stdout) == {
        "applied": ["0001_create_notes", "0002_add_note_title"], "contracts": {},
        "applied_now": ["0001_create_notes", "0002_add_note_title"], "held": CONTRACT, "held_after_retiring": "1.0.0",
    }

    again = run_migrate(database)
    assert again.returncode == 0
    assert applied_ids(database) == ["0001_create_notes", "0002_add_note_title"]
    assert schema_state(again.stdout)["applied_now"] == []


def test_a_contract_applies_only_when_the_caller_allows_it(database):
    migrate_database(database)
    with connect(database) as conn:
        # Written as 1.0.0 writes: no title.
        conn.execute("INSERT INTO notes (body) VALUES (%s)", ("  Pay rent \nby Friday",))

    result = run_migrate(database, "--allow-contract", CONTRACT)

    assert result.returncode == 0, result.stdout
    state = schema_state(result.stdout)
    assert state["applied_now"] == [CONTRACT] and state["held"] is None
    assert state["contracts"] == {CONTRACT: "1.0.0"}
    assert columns(database)["title"] == "NO"
    with connect(database) as conn:
        assert conn.execute("SELECT title FROM notes").fetchone() == ("Pay rent",)
        assert conn.execute(f"SELECT migration_id, after_retiring FROM {CONTRACTS_TABLE}").fetchall() == [(CONTRACT, "1.0.0")]


def test_a_release_the_schema_left_behind_refuses_to_migrate_and_so_to_serve(database):
    migrate_database(database, allow_contracts={CONTRACT})
    with pytest.raises(LeftBehind, match=f"release 1.0.0 cannot run on this schema: contract step {CONTRACT} "
                                         r"\(after-retiring 1.0.0\) removed what it needs"):
        migrate_database(database, release="1.0.0")
    # The release that shipped the step is not behind it.
    assert migrate_database(database, release="1.1.0").applied_now == []


def test_the_start_up_command_exits_4_on_a_schema_that_left_its_release_behind(database, tmp_path):
    migrate_database(database, allow_contracts={CONTRACT})
    tree = tmp_path / "image-1.0.0"
    (tree / "migrations").mkdir(parents=True)
    shutil.copy(MIGRATIONS_DIR / "0001_create_notes.sql", tree / "migrations")
    shutil.copytree(MIGRATIONS_DIR.parent / "liftoff_service", tree / "liftoff_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "VERSION").write_text("1.0.0\n")
    result = run_migrate(database, cwd=tree)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "contract step 0003_require_note_title" in result.stdout


def test_an_unknown_contract_to_allow_is_refused_before_anything_runs(database):
    with pytest.raises(MigrationError, match="--allow-contract 0002_add_note_title: not a contract step this image ships "
                                             "\\(its contract steps: 0003_require_note_title\\)"):
        migrate_database(database, allow_contracts={"0002_add_note_title"})
    with connect(database) as conn:  # refused before connecting: not even yoyo's tables exist
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone() == (0,)


def test_left_behind_compares_releases_by_number():
    assert left_behind_by({"0003": "1.0.0"}, "1.0.0") == ["0003"]
    assert left_behind_by({"0003": "1.0.0"}, "0.9.9") == ["0003"]
    assert left_behind_by({"0003": "1.0.0"}, "1.0.1") == []
    assert left_behind_by({"0003": "1.9.0"}, "1.10.0") == []


def test_a_held_contract_also_holds_every_later_step():
    steps = [
        Step("0001_a", MIGRATIONS_DIR / "x", "expand"),
        Step("0002_b", MIGRATIONS_DIR / "x", "contract", after_retiring="1.0.0"),
        Step("0003_c", MIGRATIONS_DIR / "x", "expand"),
    ]
    plan = plan_steps(steps, applied_ids=set())
    assert [s.migration_id for s in plan.to_apply] == ["0001_a"]
    assert plan.held.migration_id == "0002_b"

    plan = plan_steps(steps, applied_ids={"0001_a"}, allowed_contracts={"0002_b"})
    assert [s.migration_id for s in plan.to_apply] == ["0002_b", "0003_c"]


def test_every_repo_migration_declares_its_kind():
    steps = read_steps(MIGRATIONS_DIR)
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
        ("-- liftoff: contract after-retiring 1.1.0", "must name a release older than 1.1.0, the release that ships it"),
        ("-- liftoff: contract after-retiring one", "is not MAJOR.MINOR.PATCH semver"),
        ("-- liftoff: expand after-retiring 1.0.0", "'after-retiring' only applies to a contract"),
    ],
)
def test_malformed_headers_are_refused(tmp_path, first_line, expected_error):
    (tmp_path / "0001_bad.sql").write_text(first_line + "\nSELECT 1;\n")
    with pytest.raises(SchemaError, match=re.escape(expected_error)):
        read_steps(tmp_path, release="1.1.0")


def test_an_empty_migrations_directory_is_refused(tmp_path):
    with pytest.raises(SchemaError, match="no migrations found"):
        read_steps(tmp_path)


def test_a_failing_migration_is_reported_and_not_recorded(database, tmp_path):
    for path in MIGRATIONS_DIR.glob("000[12]_*.sql"):
        shutil.copy(path, tmp_path)
    (tmp_path / "0003_broken.sql").write_text("-- liftoff: expand\nALTER TABLE nope ADD COLUMN x text;\n")
    with pytest.raises(MigrationError, match='relation "nope" does not exist'):
        migrate_database(database, migrations_dir=tmp_path, release="1.1.0")
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
        lint_migrations(tmp_path)


def test_only_a_contract_step_may_silence_squawk(tmp_path):
    shutil.copy(MIGRATIONS_DIR / "0001_create_notes.sql", tmp_path)
    (tmp_path / "0002_sneaky.sql").write_text(
        "-- liftoff: expand\n-- squawk-ignore ban-drop-column\nALTER TABLE notes DROP COLUMN body;\n"
    )
    with pytest.raises(MigrationError, match="only a contract step may silence squawk.*0002_sneaky"):
        lint_migrations(tmp_path)
