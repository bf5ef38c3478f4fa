"""Every release the tree keeps serves reads and writes against one database, at the same time.

The releases are the API modules the tree keeps (`releases.kept_versions`), so the test follows the
code as releases accumulate: cut 1.2.0 and it runs 1.1.0 (and whatever else is kept) beside it.
The schema is what a container's start-up `migrate` leaves (expand steps only). Each release runs as
its own gunicorn process, as the platform runs two image versions side by side during a rollout.

The last two tests pin the concrete 1.0.0 -> 1.1.0 step (expand 0002, contract 0003); they go
together with api/release_1_0_0.py once 1.0.0 is retired and 0003 has run everywhere.
"""

from __future__ import annotations

import pytest

from service_harness import json_lines, run_migrate

from liftoff_service.migrations import LeftBehind, migrate_database
from liftoff_service.releases import kept_versions


def start_live_releases(database, start_service):
    return {
        version: start_service(database, release=version, version=version)
        for version in kept_versions()
    }


def test_all_live_releases_read_and_write_after_the_current_migrate(database, start_service):
    assert run_migrate(database).returncode == 0
    services = start_live_releases(database, start_service)
    assert len(services) >= 2, "the tree keeps fewer than two releases"

    written = {}
    for version, service in services.items():
        assert service.request("GET", "/version").json() == {"version": version}
        response = service.request("POST", "/notes", {"body": f"from {version}\nsecond line"})
        assert response.status == 201, (version, response.body)
        written[version] = response.json()["id"]

    for version, service in services.items():
        listed = {note["id"]: note for note in service.request("GET", "/notes").json()["notes"]}
        assert set(listed) == set(written.values()), version
        for author, note_id in written.items():
            note = service.request("GET", f"/notes/{note_id}").json()
            assert note == listed[note_id]
            assert note["body"] == f"from {author}\nsecond line"


def test_current_release_shows_titles_for_notes_the_previous_release_wrote(database, start_service):
    assert run_migrate(database).returncode == 0
    old = start_service(database, release="1.0.0", version="1.0.0")
    new = start_service(database, release="1.1.0", version="1.1.0")

    from_old = old.request("POST", "/notes", {"body": "  Buy milk \n2 litres"}).json()
    from_new = new.request("POST", "/notes", {"title": "Call", "body": "Alice"}).json()

    assert "title" not in from_old
    assert new.request("GET", f"/notes/{from_old['id']}").json()["title"] == "Buy milk"
    # The previous release ignores the expanded column and still reads the new release's rows.
    assert old.request("GET", f"/notes/{from_new['id']}").json() == {
        "id": from_new["id"], "body": "Alice", "created_at": from_new["created_at"],
    }


def test_start_up_never_contracts_and_the_allowed_contract_leaves_only_the_old_release_behind(database, start_service):
    result = run_migrate(database)
    assert result.returncode == 0
    held = [line for line in json_lines(result.stdout) if line["message"].startswith("contract step held")]
    assert held[0]["migration"] == "0003_require_note_title"

    old = start_service(database, release="1.0.0", version="1.0.0")
    new = start_service(database, release="1.1.0", version="1.1.0")
    before = old.request("POST", "/notes", {"body": "written by 1.0.0\nbefore contract"}).json()
    title_before = new.request("GET", f"/notes/{before['id']}").json()["title"]

    # The release tool allows the step once 1.0.0 is out of the stage's window (tests/release/test_schema_story.py).
    state = migrate_database(database, allow_contracts={"0003_require_note_title"})
    assert state.applied_now == ["0003_require_note_title"]

    # The current release is unaffected and reads the backfilled title unchanged ...
    assert new.request("GET", f"/notes/{before['id']}").json()["title"] == title_before
    assert new.request("POST", "/notes", {"body": "after contract"}).status == 201
    # ... while 1.0.0's writes now fail: the step really breaks it, which is why 1.0.0 may no
    # longer start: its start-up migrate refuses.
    assert old.request("POST", "/notes", {"body": "too late"}).status == 500
    with pytest.raises(LeftBehind, match="release 1.0.0 cannot run on this schema"):
        migrate_database(database, release="1.0.0")
