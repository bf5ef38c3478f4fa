"""service/VERSION and service/releases.json: the ledger the deploy and the migrate gate read."""

from __future__ import annotations

import json

import pytest

from liftoff_service.api import load_release_api
from liftoff_service.releases import (
    RELEASES_FILE, ReleaseLedgerError, parse_ledger, read_current_version, read_ledger,
)


def test_the_current_release_is_declared_and_live():
    ledger = read_ledger()
    current = read_current_version()
    assert ledger.get(current).live
    assert ledger.releases[-1].version == current, "VERSION must be the newest release"


def test_every_live_release_still_has_its_api_code():
    for version in read_ledger().live_versions():
        module = load_release_api(version)
        assert callable(module.create_note) and callable(module.list_notes)


def test_the_file_is_plain_json_for_other_tools():
    document = json.loads(RELEASES_FILE.read_text())
    assert all(set(entry) == {"version", "live"} for entry in document["releases"])


def test_a_release_without_api_code_says_what_to_do():
    with pytest.raises(LookupError, match="add service/liftoff_service/api/release_9_9_9.py"):
        load_release_api("9.9.9")


@pytest.mark.parametrize(
    ("document", "expected_error"),
    [
        ([], 'must be an object with exactly one key, "releases"'),
        ({"releases": []}, '"releases" must be a non-empty list'),
        ({"releases": [{"version": "1.0.0"}]}, 'exactly the keys "version" (string) and "live"'),
        ({"releases": [{"version": "1.0.0", "live": "yes"}]}, '"live" a boolean'),
        ({"releases": [{"version": "v1.0", "live": True}]}, "'v1.0' is not MAJOR.MINOR.PATCH"),
        ({"releases": [{"version": "1.1.0", "live": True}, {"version": "1.0.0", "live": True}]},
         "oldest first with no duplicates, got 1.1.0, 1.0.0"),
        ({"releases": [{"version": "1.0.0", "live": True}, {"version": "1.0.0", "live": False}]},
         "oldest first with no duplicates"),
    ],
)
def test_malformed_ledgers_are_refused_with_the_reason(document, expected_error):
    with pytest.raises(ReleaseLedgerError) as raised:
        parse_ledger(document)
    assert expected_error in str(raised.value)


def test_an_unknown_release_names_the_known_ones():
    ledger = parse_ledger({"releases": [{"version": "1.0.0", "live": True}]})
    with pytest.raises(ReleaseLedgerError, match=r"'2.0.0' is not in releases.json \(known: 1.0.0\)"):
        ledger.get("2.0.0")


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "releases.json"
    path.write_text("{oops")
    with pytest.raises(ReleaseLedgerError, match="releases.json is not valid JSON"):
        read_ledger(path)
