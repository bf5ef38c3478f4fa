"""service/VERSION, the API modules the tree keeps, and the schema contract the image declares."""

from __future__ import annotations

import shutil

import pytest

from liftoff_service.api import load_release_api
from liftoff_service.releases import SERVICE_DIR, kept_versions, read_current_version
from liftoff_service.schema import (
    LABEL_CONTRACTS, LABEL_HEAD, LABEL_RELEASE, LABEL_REQUIRES, SchemaError, main, read_contract,
)


def test_the_current_release_is_the_newest_kept_one():
    assert kept_versions()[-1] == read_current_version()


def test_every_kept_release_still_has_its_api_code():
    assert kept_versions() == ["1.0.0", "1.1.0"]
    for version in kept_versions():
        module = load_release_api(version)
        assert callable(module.create_note) and callable(module.list_notes)


def test_no_release_list_is_edited_by_hand_any_more():
    assert not (SERVICE_DIR / "releases.json").exists()


def test_a_release_without_api_code_says_what_to_do():
    with pytest.raises(LookupError, match="add service/liftoff_service/api/release_9_9_9.py"):
        load_release_api("9.9.9")


def test_the_image_contract_comes_from_the_migration_files():
    assert read_contract().labels() == {
        LABEL_RELEASE: "1.1.0",
        LABEL_HEAD: "0003_require_note_title",
        LABEL_REQUIRES: "0002_add_note_title",  # its newest expand step; the contract step it ships is not required
        LABEL_CONTRACTS: "0003_require_note_title:1.0.0",
    }


def copy_tree(tmp_path, migrations, version):
    (tmp_path / "migrations").mkdir()
    for name in migrations:
        shutil.copy(SERVICE_DIR / "migrations" / f"{name}.sql", tmp_path / "migrations")
    (tmp_path / "VERSION").write_text(f"{version}\n")
    return tmp_path / "migrations", tmp_path / "VERSION"


def test_an_older_image_declares_what_it_shipped(tmp_path):
    migrations, version = copy_tree(tmp_path, ["0001_create_notes"], "1.0.0")
    assert read_contract(migrations, version).labels() == {
        LABEL_RELEASE: "1.0.0", LABEL_HEAD: "0001_create_notes", LABEL_REQUIRES: "0001_create_notes", LABEL_CONTRACTS: "",
    }


def test_verify_refuses_build_arguments_that_drift_from_the_files(capsys):
    good = [f"{line}" for line in _build_args(capsys)]
    assert main(["verify", *good]) == 0
    drifted = [pair if not pair.startswith("LIFTOFF_SCHEMA_REQUIRES=") else "LIFTOFF_SCHEMA_REQUIRES=0001_create_notes"
               for pair in good]
    assert main(["verify", *drifted]) == 1
    err = capsys.readouterr().err
    assert "LIFTOFF_SCHEMA_REQUIRES='0001_create_notes' but the migration files say '0002_add_note_title'" in err
    assert main(["verify"]) == 1  # a build without the arguments fails too


def _build_args(capsys) -> list[str]:
    assert main(["build-args"]) == 0
    return capsys.readouterr().out.splitlines()


def test_a_malformed_version_is_refused(tmp_path):
    migrations, version = copy_tree(tmp_path, ["0001_create_notes"], "v1")
    with pytest.raises(SchemaError, match="'v1' is not MAJOR.MINOR.PATCH"):
        read_contract(migrations, version)
