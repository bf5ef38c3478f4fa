"""The release ledger and lock, in the stage's `ReleaseLedgerTable` (pk/sk strings, TTL `expires_at`).

Item layout (one table per stage, so keys need no stage):

    pk="LOCK"     sk="LOCK"                 the stage's release lock; the only item with `expires_at`
    pk="RELEASE"  sk="<started ISO>#<id>"   one item per release, sorted by start time

A release writes its entry when it starts (`result=in_progress`, conditional on the key not existing)
and completes it once (conditional on `result=in_progress` and its own release id). Nothing else ever
writes to an entry, so history cannot be rewritten by this tool; an interrupted release stays visible
as `in_progress`. All entries share one partition: a stage makes a few releases a day, far below any
partition limit, and one Query returns them in order.
"""
from __future__ import annotations

import uuid
from typing import Any

from botocore.exceptions import ClientError

from release.decisions import RESULT_IN_PROGRESS, Entry, Lock

LOCK_KEY = {"pk": {"S": "LOCK"}, "sk": {"S": "LOCK"}}
RELEASE_PK = "RELEASE"


class LockHeld(Exception):
    """Someone took the lock between our read and our conditional write."""

    def __init__(self, lock: Lock | None):
        super().__init__("lock held")
        self.lock = lock


def new_release_id() -> str:
    return uuid.uuid4().hex[:12]


class Ledger:
    def __init__(self, client: Any, table_name: str):
        self._client = client
        self.table_name = table_name

    # --- lock -----------------------------------------------------------------------------------

    def read_lock(self) -> Lock | None:
        item = self._client.get_item(TableName=self.table_name, Key=LOCK_KEY, ConsistentRead=True).get("Item")
        return _lock_from_item(item) if item else None

    def acquire(self, *, holder: str, release_id: str, gate: str, version: str, now: int, ttl_seconds: int) -> Lock | None:
        """Take the lock if it is free or expired; return the expired lock taken over, if any.

        The condition is evaluated by DynamoDB atomically, so of two releases racing only one wins,
        whatever each read before.
        """
        previous = self.read_lock()
        item = {
            **LOCK_KEY,
            "holder": {"S": holder},
            "release_id": {"S": release_id},
            "gate": {"S": gate},
            "version": {"S": version},
            "acquired_at": {"N": str(now)},
            # TTL lets DynamoDB sweep an abandoned lock; the condition below does not wait for the sweep.
            "expires_at": {"N": str(now + ttl_seconds)},
        }
        try:
            self._client.put_item(
                TableName=self.table_name, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise LockHeld(self.read_lock()) from None
            raise
        return previous if previous is not None and previous.expired(now) else None

    def release(self, release_id: str) -> None:
        """Drop the lock only if it is still ours (it may have expired and been taken over)."""
        try:
            self._client.delete_item(
                TableName=self.table_name, Key=LOCK_KEY,
                ConditionExpression="release_id = :id",
                ExpressionAttributeValues={":id": {"S": release_id}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    # --- entries --------------------------------------------------------------------------------

    def start(self, entry: Entry, stage: str) -> None:
        item = {
            "pk": {"S": RELEASE_PK},
            "sk": {"S": _sort_key(entry)},
            "stage": {"S": stage},
            "release_id": {"S": entry.release_id},
            "gate": {"S": entry.gate},
            "from_version": {"S": entry.from_version},
            "to_version": {"S": entry.to_version},
            "digest": {"S": entry.digest},
            "who": {"S": entry.who},
            "started_at": {"S": entry.started_at},
            "result": {"S": RESULT_IN_PROGRESS},
            "forced": {"BOOL": entry.forced},
            "detail": {"S": entry.detail},
        }
        self._client.put_item(TableName=self.table_name, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def finish(self, entry: Entry, *, result: str, finished_at: str, duration_seconds: float, detail: str) -> None:
        """Record the outcome of this same entry, once."""
        self._client.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": RELEASE_PK}, "sk": {"S": _sort_key(entry)}},
            UpdateExpression="SET #result = :result, finished_at = :finished, duration_seconds = :duration, detail = :detail",
            ConditionExpression="#result = :in_progress AND release_id = :id",
            ExpressionAttributeNames={"#result": "result"},
            ExpressionAttributeValues={
                ":result": {"S": result},
                ":finished": {"S": finished_at},
                ":duration": {"N": f"{duration_seconds:.1f}"},
                ":detail": {"S": detail},
                ":in_progress": {"S": RESULT_IN_PROGRESS},
                ":id": {"S": entry.release_id},
            },
        )

    def entries(self, limit: int | None = None) -> list[Entry]:
        """Newest first."""
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


def _sort_key(entry: Entry) -> str:
    return f"{entry.started_at}#{entry.release_id}"


def _s(item: dict, key: str) -> str:
    return item.get(key, {}).get("S", "")


def _lock_from_item(item: dict) -> Lock:
    return Lock(
        holder=_s(item, "holder"), release_id=_s(item, "release_id"), gate=_s(item, "gate"),
        version=_s(item, "version"), acquired_at=int(item["acquired_at"]["N"]), expires_at=int(item["expires_at"]["N"]),
    )


def _entry_from_item(item: dict) -> Entry:
    duration = item.get("duration_seconds", {}).get("N")
    return Entry(
        release_id=_s(item, "release_id"), gate=_s(item, "gate"), from_version=_s(item, "from_version"),
        to_version=_s(item, "to_version"), who=_s(item, "who"), started_at=_s(item, "started_at"),
        digest=_s(item, "digest"), result=_s(item, "result"), finished_at=_s(item, "finished_at"),
        duration_seconds=float(duration) if duration is not None else None,
        forced=item.get("forced", {}).get("BOOL", False), detail=_s(item, "detail"),
    )
