"""The ledger and the lock against a moto DynamoDB table with the ReleaseLedger's key schema.

The table is created here (not from the stack) so these tests pin the item layout and conditions on
their own; the CLI tests run the same code against the table the data stack creates.
"""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.exceptions import ClientError

from components.release_ledger import EXPIRY_ATTRIBUTE, PARTITION_KEY, SORT_KEY
from release import decisions as d
from release.ledger import Ledger, LockHeld

NOW = 1_800_000_000
ME, YOU = "arn:aws:sts::000000000000:assumed-role/ci/a", "arn:aws:sts::000000000000:assumed-role/ci/b"


@pytest.fixture
def ledger(fake_aws_env):
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="ledger",
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}, {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"}, {"AttributeName": SORT_KEY, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Ledger(client, "ledger")


def take(ledger, holder=ME, release_id="r1", now=NOW, ttl=1800):
    return ledger.acquire(holder=holder, release_id=release_id, gate="stage", version="1.1.0", now=now, ttl_seconds=ttl)


def entry(release_id, started, **fields):
    return d.Entry(release_id=release_id, gate="activate", from_version="1.0.0", to_version="1.1.0", who=ME,
                   started_at=started, digest="sha256:abc", **fields)


class TestLock:
    def test_a_free_lock_is_taken_with_holder_and_expiry(self, ledger):
        assert take(ledger) is None
        lock = ledger.read_lock()
        assert (lock.holder, lock.release_id, lock.expires_at) == (ME, "r1", NOW + 1800)

    def test_a_held_lock_refuses_the_second_release(self, ledger):
        take(ledger)
        with pytest.raises(LockHeld) as held:
            take(ledger, holder=YOU, release_id="r2", now=NOW + 60)
        assert held.value.lock.holder == ME  # the refusal can name who holds it
        assert ledger.read_lock().release_id == "r1"

    def test_an_expired_lock_is_taken_over_and_reported(self, ledger):
        take(ledger, ttl=60)
        taken_over = take(ledger, holder=YOU, release_id="r2", now=NOW + 61)
        assert taken_over.release_id == "r1"
        assert ledger.read_lock().holder == YOU

    def test_releasing_drops_only_our_own_lock(self, ledger):
        take(ledger, ttl=60)
        take(ledger, holder=YOU, release_id="r2", now=NOW + 61)
        ledger.release("r1")  # r1 came back late: its lock expired and is r2's now
        assert ledger.read_lock().release_id == "r2"
        ledger.release("r2")
        assert ledger.read_lock() is None

    def test_only_the_lock_item_carries_the_ttl_attribute(self, ledger):
        take(ledger)
        ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")
        items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="ledger")["Items"]
        with_ttl = [item["pk"]["S"] for item in items if EXPIRY_ATTRIBUTE in item]
        assert with_ttl == ["LOCK"]

    def test_two_releases_racing_for_the_lock_one_wins(self, ledger):
        # Real threads against the same table: the conditional put, not our read, decides.
        barrier, outcomes = threading.Barrier(2), []

        def contend(holder, release_id):
            barrier.wait()
            try:
                take(ledger, holder=holder, release_id=release_id)
                outcomes.append(("won", release_id))
            except LockHeld:
                outcomes.append(("held", release_id))

        threads = [threading.Thread(target=contend, args=args) for args in ((ME, "r1"), (YOU, "r2"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(result for result, _ in outcomes) == ["held", "won"]
        winner = next(release_id for result, release_id in outcomes if result == "won")
        assert ledger.read_lock().release_id == winner


class TestEntries:
    def test_entries_come_back_newest_first_with_their_outcome(self, ledger):
        first, second = entry("r1", "2026-01-01T00:00:00.000Z"), entry("r2", "2026-01-02T00:00:00.000Z", forced=True)
        ledger.start(first, "staging")
        ledger.start(second, "staging")
        ledger.finish(first, result=d.RESULT_SUCCEEDED, finished_at="2026-01-01T00:01:00.000Z", duration_seconds=60.04, detail="ok")
        newest, oldest = ledger.entries()
        assert (newest.release_id, newest.result, newest.forced) == ("r2", d.RESULT_IN_PROGRESS, True)
        assert (oldest.result, oldest.duration_seconds, oldest.who, oldest.digest) == (d.RESULT_SUCCEEDED, 60.0, ME, "sha256:abc")
        assert [e.release_id for e in ledger.entries(limit=1)] == ["r2"]

    def test_an_entry_is_never_written_twice(self, ledger):
        ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")

    def test_an_outcome_is_recorded_once(self, ledger):
        first = entry("r1", "2026-01-01T00:00:00.000Z")
        ledger.start(first, "staging")
        ledger.finish(first, result=d.RESULT_ROLLED_BACK, finished_at="x", duration_seconds=1, detail="why")
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.finish(first, result=d.RESULT_SUCCEEDED, finished_at="y", duration_seconds=2, detail="rewrite")
        assert ledger.entries()[0].result == d.RESULT_ROLLED_BACK

    def test_finishing_an_entry_that_was_never_started_fails(self, ledger):
        # Without the condition, update_item would create a half entry out of nothing.
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.finish(entry("ghost", "2026-01-01T00:00:00.000Z"), result=d.RESULT_SUCCEEDED, finished_at="x", duration_seconds=1, detail="")
        assert ledger.entries() == []
