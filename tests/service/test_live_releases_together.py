"""Every release declared live serves reads and writes against one database, at the same time.

The releases come from service/releases.json, so the test follows the ledger as releases
accumulate: cut 1.2.0 and it runs 1.1.0 (and whatever else is still live) beside it; forget to
keep a live release's code and it fails. Each release runs as its own gunicorn process, as the
platform runs two image versions side by side during a rollout.

The last two tests pin the concrete 1.0.0 -> 1.1.0 step (expand 0002, contract 0003); they go
together with api/release_1_0_0.py once 1.0.0 is retired and 0003 has run everywhere.
"""

from __future__ import annotations

from service_harness import json_lines, run_migrate

from liftoff_service.migrations import MIGRATIONS_DIR, migrate_database, read_steps
from liftoff_service.releases import parse_ledger, read_ledger


def start_live_releases(database, start_service):
    return {
        version: start_service(database, release=version, version=version)
        for version in read_ledger().live_versions()
    }


def test_all_live_releases_read_and_write_after_the_current_migrate(database, start_service):
    assert run_migrate(database).returncode == 0
    services = start_live_releases(database, start_service)
    assert len(services) >= 2, "the ledger declares fewer than two live releases"

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


def test_contract_is_refused_while_the_previous_release_is_live(database, start_service):
    ledger = read_ledger()
    held_contracts = [
        step for step in read_steps(MIGRATIONS_DIR, ledger) if step.blocking_releases(ledger)
    ]
    assert [s.migration_id for s in held_contracts] == ["0003_require_note_title"]

    result = run_migrate(database)
    assert result.returncode == 0
    held = [line for line in json_lines(result.stdout) if line.get("live_releases_blocking")]
    assert held[0]["migration"] == "0003_require_note_title"
    assert held[0]["live_releases_blocking"] == ["1.0.0"]

    old = start_service(database, release="1.0.0", version="1.0.0")
    new = start_service(database, release="1.1.0", version="1.1.0")
    before = old.request("POST", "/notes", {"body": "written by 1.0.0\nbefore contract"}).json()
    title_before = new.request("GET", f"/notes/{before['id']}").json()["title"]

    # The operator retires 1.0.0 (no instance runs it any more); the next migrate contracts.
    retired = parse_ledger({"releases": [
        {"version": r.version, "live": r.live and r.version != "1.0.0"} for r in ledger.releases
    ]})
    plan = migrate_database(database, ledger=retired)
    assert [s.migration_id for s in plan.to_apply] == ["0003_require_note_title"]

    # The current release is unaffected and reads the backfilled title unchanged ...
    assert new.request("GET", f"/notes/{before['id']}").json()["title"] == title_before
    assert new.request("POST", "/notes", {"body": "after contract"}).status == 201
    # ... while 1.0.0's writes now fail: the gate held back a step that really breaks it.
    assert old.request("POST", "/notes", {"body": "too late"}).status == 500
