"""Notes as release 1.1.0 ships them: an optional title on top of 1.0.0's notes.

Expand step 0002 adds the nullable column, so 1.0.0 keeps working while both run. This release
always writes a title (derived from the body's first line when the client sends none), so the
contract step 0003 (title NOT NULL) breaks nothing of ours, only 1.0.0's inserts. Rows that
1.0.0 wrote before the contract have no title; they read back with one derived the same way.
"""

from __future__ import annotations

from . import reject_unknown_fields, require_object, require_text

BODY_MAX_LENGTH = 10_000
TITLE_MAX_LENGTH = 200


def derive_title(body: str) -> str:
    # Must match the backfill in migrations/0003 so a note reads the same before and after it.
    first_line = body.strip(" \t\r\n").split("\n", 1)[0]
    return first_line.rstrip(" \t\r")[:TITLE_MAX_LENGTH]


def _row_to_note(row: tuple) -> dict:
    note_id, title, body, created_at = row
    return {
        "id": note_id,
        "title": title if title is not None else derive_title(body),
        "body": body,
        "created_at": created_at.isoformat(),
    }


def create_note(conn, payload: object) -> dict:
    payload = require_object(payload)
    reject_unknown_fields(payload, {"title", "body"})
    body = require_text(payload, "body", max_length=BODY_MAX_LENGTH, required=True)
    title = require_text(payload, "title", max_length=TITLE_MAX_LENGTH, required=False)
    row = conn.execute(
        "INSERT INTO notes (title, body) VALUES (%s, %s) RETURNING id, title, body, created_at",
        (title if title is not None else derive_title(body), body),
    ).fetchone()
    return _row_to_note(row)


def list_notes(conn, *, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, title, body, created_at FROM notes ORDER BY id DESC LIMIT %s", (limit,)
    ).fetchall()
    return [_row_to_note(row) for row in rows]


def get_note(conn, note_id: int) -> dict | None:
    row = conn.execute(
        "SELECT id, title, body, created_at FROM notes WHERE id = %s", (note_id,)
    ).fetchone()
    return _row_to_note(row) if row else None
