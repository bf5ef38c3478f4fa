"""The release ledger and the stage's lock (a lease), in the stage's `ReleaseLedgerTable` (pk/sk strings, TTL `expires_at`).

Item layout (one table per stage, so keys need no stage):

    pk="LOCK"     sk="LOCK"                 the stage's lease; the only item with `expires_at`
    pk="SEQ"      sk="SEQ"                  the ledger's counter (`seq`, an atomic ADD)
    pk="RELEASE"  sk="SEQ#<seq, 12 digits>" one item per release attempt, in the order the table assigned
    pk="RELEASE"  sk="<started ISO>#<id>"   entries written before the counter existed (they sort after
                                            every SEQ# key in a descending query, i.e. as older)

An entry is written once (conditional on its key not existing) and, if it was written `in_progress`,
completed once (conditional on `result=in_progress` and its own release id). Nothing else ever
writes an entry, so history cannot be rewritten by this tool.

The lock is a lease (the approach of AWS's DynamoDB Lock Client): its holder replaces
`record_version` on every heartbeat; a waiter takes it over only after seeing one record version
unchanged for `lease_seconds` on its own clock, with a write conditional on that version. The
holder's times in the item are for people; no decision compares them with another clock.
"""
from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from release.pure.decisions import RESULT_IN_PROGRESS, Entry, Lock

LOCK_KEY = {"pk": {"S": "LOCK"}, "sk": {"S": "LOCK"}}
COUNTER_KEY = {"pk": {"S": "SEQ"}, "sk": {"S": "SEQ"}}
RELEASE_PK = "RELEASE"
# DynamoDB's TTL sweep tidies a lock nobody contended for; no decision waits for it or reads it.
TIDY_SECONDS = 24 * 3600


class LockHeld(Exception):
    """The conditional write lost: someone holds (or just took, or just renewed) the lock."""

    def __init__(self, lock: Lock | None):
        super().__init__("lock held")
        self.lock = lock


def new_release_id() -> str:
    return uuid.uuid4().hex[:12]


def new_record_version() -> str:
    return uuid.uuid4().hex


def entry_key(entry: Entry) -> str:
    if entry.seq is not None:
        return f"SEQ#{entry.seq:012d}"
    return f"{entry.started_at}#{entry.release_id}"  # an entry from before the counter


def _conditional_failed(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class Ledger:
    def __init__(self, client: Any, table_name: str):
        self._client = client
        self.table_name = table_name

    # --- lock -----------------------------------------------------------------------------------

    def read_lock(self) -> Lock | None:
        item = self._client.get_item(TableName=self.table_name, Key=LOCK_KEY, ConsistentRead=True).get("Item")
        return _lock_from_item(item) if item else None

    def create_lock(self, lock: Lock, *, epoch: int) -> None:
        """Take a free lock. Of two releases racing only one wins, whatever each read before."""
        self._put_lock(lock, epoch, "attribute_not_exists(pk)", {})

    def take_over(self, lock: Lock, *, seen_record_version: str, epoch: int) -> None:
        """Take a lock whose record version we saw unchanged for a full lease; lose if it moved since."""
        condition, values = "record_version = :seen", {":seen": {"S": seen_record_version}}
        if seen_record_version.isdigit():  # a lock an older liftoff wrote: its expires_at stands in (see _lock_from_item)
            condition += " OR (attribute_not_exists(record_version) AND expires_at = :seen_epoch)"
            values[":seen_epoch"] = {"N": seen_record_version}
        self._put_lock(lock, epoch, condition, values)

    def _put_lock(self, lock: Lock, epoch: int, condition: str, values: dict) -> None:
        try:
            self._client.put_item(TableName=self.table_name, Item=_lock_item(lock, epoch), ConditionExpression=condition,
                                  **({"ExpressionAttributeValues": values} if values else {}))
        except ClientError as error:
            if _conditional_failed(error):
                raise LockHeld(self.read_lock()) from None
            raise

    def heartbeat(self, release_id: str, *, record_version: str, at: str, epoch: int,
                  activity: str | None = None, entry_key: str | None = None, version: str | None = None) -> bool:
        """Renew our lease with a new record version; False if the lock is no longer ours."""
        values = {":id": {"S": release_id}, ":rv": {"S": record_version}, ":at": {"S": at},
                             ":exp": {"N": str(epoch + TIDY_SECONDS)}}
        sets = ["record_version = :rv", "heartbeat_at = :at", "expires_at = :exp"]
        if activity is not None:
            sets += ["activity = :activity", "activity_at = :at"]
            values[":activity"] = {"S": activity}
        if entry_key is not None:
            sets.append("entry_key = :entry")
            values[":entry"] = {"S": entry_key}
        if version is not None:
            sets.append("version = :version")
            values[":version"] = {"S": version}
        try:
            self._client.update_item(TableName=self.table_name, Key=LOCK_KEY, UpdateExpression="SET " + ", ".join(sets),
                                     ConditionExpression="release_id = :id", ExpressionAttributeValues=values)
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    def release(self, release_id: str) -> bool:
        """Drop the lock only if it is still ours (it may have been taken over or broken); True if it was."""
        try:
            self._client.delete_item(
                TableName=self.table_name, Key=LOCK_KEY,
                ConditionExpression="release_id = :id",
                ExpressionAttributeValues={":id": {"S": release_id}},
            )
        except ClientError as error:
            if _conditional_failed(error):
                return False
            raise
        return True

    # --- entries --------------------------------------------------------------------------------

    def next_seq(self) -> int:
        """The next position in the ledger, assigned by the table (an atomic counter), never a client clock."""
        answer = self._client.update_item(
            TableName=self.table_name, Key=COUNTER_KEY, UpdateExpression="ADD seq :one",
            ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["seq"]["N"])

    def start(self, entry: Entry, stage: str) -> Entry:
        """Write an entry `in_progress`; return it with its sequence number."""
        return self._write(replace(entry, result=RESULT_IN_PROGRESS), stage)

    def record(self, entry: Entry, stage: str) -> Entry:
        """Write a finished entry in one go (a refusal, a lock collision, a no-op, an unlock)."""
        return self._write(entry, stage)

    def _write(self, entry: Entry, stage: str) -> Entry:
        entry = replace(entry, seq=self.next_seq()) if entry.seq is None else entry
        item = {
            "pk": {"S": RELEASE_PK},
            "sk": {"S": entry_key(entry)},
            "seq": {"N": str(entry.seq)},
            "stage": {"S": stage},
            "release_id": {"S": entry.release_id},
            "gate": {"S": entry.gate},
            "from_version": {"S": entry.from_version},
            "to_version": {"S": entry.to_version},
            "digest": {"S": entry.digest},
            "who": {"S": entry.who},
            "started_at": {"S": entry.started_at},
            "result": {"S": entry.result},
            "forced": {"BOOL": entry.forced},
            "detail": {"S": entry.detail},
        }
        if entry.finished_at:
            item["finished_at"] = {"S": entry.finished_at}
        if entry.duration_seconds is not None:
            item["duration_seconds"] = {"N": f"{entry.duration_seconds:.1f}"}
        self._client.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return entry

    def finish(self, entry: Entry, *, result: str, finished_at: str, duration_seconds: float | None, detail: str) -> None:
        """Record the outcome of this same entry, once."""
        sets = "SET #result = :result, finished_at = :finished, detail = :detail"
        values = {
            ":result": {"S": result},
            ":finished": {"S": finished_at},
            ":detail": {"S": detail},
            ":in_progress": {"S": RESULT_IN_PROGRESS},
            ":id": {"S": entry.release_id},
        }
        if duration_seconds is not None:
            sets += ", duration_seconds = :duration"
            values[":duration"] = {"N": f"{duration_seconds:.1f}"}
        self._client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": RELEASE_PK}, "sk": {"S": entry_key(entry)}},
            UpdateExpression=sets,
            ConditionExpression="#result = :in_progress AND release_id = :id",
            ExpressionAttributeNames={"#result": "result"},
            ExpressionAttributeValues=values,
        )

    def entry(self, key: str) -> Entry | None:
        item = self._client.get_item(TableName=self.table_name, Key={"pk": {"S": RELEASE_PK}, "sk": {"S": key}},
                                     ConsistentRead=True).get("Item")
        return _entry_from_item(item) if item else None

    def entries(self, limit: int | None = None) -> list[Entry]:
        """Newest first, in the table's own order."""
        entries: list[Entry] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": RELEASE_PK}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**kwargs)
            entries.extend(_entry_from_item(item) for item in page.get("Items", []))
            if (limit is not None and len(entries) >= limit) or "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return entries[:limit] if limit is not None else entries


def _s(item: dict, key: str) -> str:
    return item.get(key, {}).get("S", "")


def _lock_item(lock: Lock, epoch: int) -> dict:
    return {
        **LOCK_KEY,
        "holder": {"S": lock.holder},
        "release_id": {"S": lock.release_id},
        "gate": {"S": lock.gate},
        "version": {"S": lock.version},
        "acquired_at": {"S": lock.acquired_at},
        "record_version": {"S": lock.record_version},
        "lease_seconds": {"N": f"{lock.lease_seconds:g}"},
        "activity": {"S": lock.activity},
        "activity_at": {"S": lock.activity_at or lock.acquired_at},
        "heartbeat_at": {"S": lock.heartbeat_at or lock.acquired_at},
        "entry_key": {"S": lock.entry_key},
        "expires_at": {"N": str(epoch + TIDY_SECONDS)},
    }


def _lock_from_item(item: dict) -> Lock:
    acquired = item.get("acquired_at", {})
    return Lock(
        holder=_s(item, "holder"), release_id=_s(item, "release_id"), gate=_s(item, "gate"), version=_s(item, "version"),
        # A lock written by an older liftoff has an epoch acquired_at and no record version: its
        # expires_at stands in, so it still changes when (and only when) that holder writes it.
        acquired_at=acquired.get("S") or acquired.get("N", ""),
        record_version=_s(item, "record_version") or item.get("expires_at", {}).get("N", ""),
        lease_seconds=float(item.get("lease_seconds", {}).get("N", "60")),
        activity=_s(item, "activity"), activity_at=_s(item, "activity_at"), heartbeat_at=_s(item, "heartbeat_at"),
        entry_key=_s(item, "entry_key"),
    )


def _entry_from_item(item: dict) -> Entry:
    duration = item.get("duration_seconds", {}).get("N")
    seq = item.get("seq", {}).get("N")
    return Entry(
        release_id=_s(item, "release_id"), gate=_s(item, "gate"), from_version=_s(item, "from_version"),
        to_version=_s(item, "to_version"), who=_s(item, "who"), started_at=_s(item, "started_at"),
        digest=_s(item, "digest"), result=_s(item, "result"), finished_at=_s(item, "finished_at"),
        duration_seconds=float(duration) if duration is not None else None,
        forced=item.get("forced", {}).get("BOOL", False), detail=_s(item, "detail"),
        seq=int(seq) if seq is not None else None,
    )
