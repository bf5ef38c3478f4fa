"""Notes as release 1.0.0 shipped them: a body and a creation time."""

from __future__ import annotations

from . import reject_unknown_fields, require_object, require_text

BODY_MAX_LENGTH = 10_000


def _row_to_note(row: tuple) -> dict:
    note_id, body, created_at = row
    return {"id": note_id, "body": body, "created_at": created_at.isoformat()}


def create_note(conn, payload: object) -> dict:
    payload = require_object(payload)
    reject_unknown_fields(payload, {"body"})
    body = require_text(payload, "body", max_length=BODY_MAX_LENGTH, required=True)
    row = conn.execute(
        "INSERT INTO notes (body) VALUES (%s) RETURNING id, body, created_at", (body,)
    ).fetchone()
    return _row_to_note(row)


def list_notes(conn, *, limit: int) -> list[dict]:
    rows = conn.execute(
        "SELECT id, body, created_at FROM notes ORDER BY id DESC LIMIT %s", (limit,)
    ).fetchall()
    return [_row_to_note(row) for row in rows]


def get_note(conn, note_id: int) -> dict | None:
    row = conn.execute(
        "SELECT id, body, created_at FROM notes WHERE id = %s", (note_id,)
    ).fetchone()
    return _row_to_note(row) if row else None
