"""The ledger and the lock against a moto DynamoDB table with the ReleaseLedger's key schema.

The table is created here (not from the stack) so these tests pin the item layout and conditions on
their own; the CLI tests run the same code against the table the data stack creates.
"""
from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from components.release_ledger import EXPIRY_ATTRIBUTE, PARTITION_KEY, SORT_KEY
from release.pure import decisions as d
from release.adapters.ledger import Ledger, LockHeld

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


def lock(holder=ME, release_id="r1", record_version="v1", lease=60.0):
    return d.Lock(holder=holder, release_id=release_id, gate="stage", version="1.1.0", acquired_at="2026-01-01T00:00:00.000Z",
                  record_version=record_version, lease_seconds=lease, activity="checking the gates")


def take(ledger, **fields):
    ledger.create_lock(lock(**fields), epoch=NOW)


def entry(release_id, started, **fields):
    return d.Entry(release_id=release_id, gate="activate", from_version="1.0.0", to_version="1.1.0", who=ME,
                   started_at=started, digest="sha256:abc", **fields)


class TestLock:
    def test_a_free_lock_is_taken_with_holder_lease_and_record_version(self, ledger):
        take(ledger)
        held = ledger.read_lock()
        assert (held.holder, held.release_id, held.record_version, held.lease_seconds, held.activity) == (
            ME, "r1", "v1", 60.0, "checking the gates")

    def test_a_held_lock_refuses_the_second_release(self, ledger):
        take(ledger)
        with pytest.raises(LockHeld) as held:
            take(ledger, holder=YOU, release_id="r2")
        assert held.value.lock.holder == ME  # the refusal can name who holds it
        assert ledger.read_lock().release_id == "r1"

    def test_a_heartbeat_replaces_the_record_version_and_says_what_the_release_does(self, ledger):
        take(ledger)
        assert ledger.heartbeat("r1", record_version="v2", at="2026-01-01T00:00:20.000Z", epoch=NOW + 20,
                                activity="verifying 1.1.0 runs", entry_key="SEQ#000000000007")
        held = ledger.read_lock()
        assert (held.record_version, held.activity, held.activity_at, held.entry_key) == (
            "v2", "verifying 1.1.0 runs", "2026-01-01T00:00:20.000Z", "SEQ#000000000007")
        assert not ledger.heartbeat("someone-else", record_version="v3", at="x", epoch=NOW)  # not theirs to renew
        assert ledger.read_lock().record_version == "v2"

    def test_a_take_over_needs_the_record_version_the_waiter_watched(self, ledger):
        take(ledger)
        ledger.heartbeat("r1", record_version="v2", at="x", epoch=NOW)  # the holder is alive after all
        with pytest.raises(LockHeld):
            ledger.take_over(lock(holder=YOU, release_id="r2"), seen_record_version="v1", epoch=NOW)
        assert ledger.read_lock().release_id == "r1"
        ledger.take_over(lock(holder=YOU, release_id="r2"), seen_record_version="v2", epoch=NOW)
        assert ledger.read_lock().holder == YOU

    def test_releasing_drops_only_our_own_lock(self, ledger):
        take(ledger)
        ledger.take_over(lock(holder=YOU, release_id="r2"), seen_record_version="v1", epoch=NOW)
        assert not ledger.release("r1")  # r1 came back late: its lock was taken over and is r2's now
        assert ledger.read_lock().release_id == "r2"
        assert ledger.release("r2")
        assert ledger.read_lock() is None

    def test_only_the_lock_item_carries_the_ttl_attribute(self, ledger):
        take(ledger)
        ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")
        items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName="ledger")["Items"]
        with_ttl = [item["pk"]["S"] for item in items if EXPIRY_ATTRIBUTE in item]
        assert with_ttl == ["LOCK"]

    def test_a_lock_written_by_an_older_liftoff_can_still_be_judged(self, ledger):
        boto3.client("dynamodb", region_name="us-east-1").put_item(TableName="ledger", Item={
            "pk": {"S": "LOCK"}, "sk": {"S": "LOCK"}, "holder": {"S": ME}, "release_id": {"S": "old"}, "gate": {"S": "stage"},
            "version": {"S": "1.1.0"}, "acquired_at": {"N": str(NOW)}, "expires_at": {"N": str(NOW + 1800)}})
        held = ledger.read_lock()
        assert (held.record_version, held.lease_seconds, held.acquired_at) == (str(NOW + 1800), 60.0, str(NOW))
        ledger.take_over(lock(holder=YOU, release_id="r2"), seen_record_version=held.record_version, epoch=NOW)
        assert ledger.read_lock().holder == YOU

    def test_two_releases_that_both_read_the_lock_free_one_wins(self, ledger):
        # Both read before either writes (the race's worst order): the conditional put, not the read, decides.
        # The threaded race itself runs against the emulator's server (tests/release/test_interruptions.py);
        # moto in-process checks and writes without a lock, so threads here would race moto, not DynamoDB.
        assert ledger.read_lock() is None and ledger.read_lock() is None
        take(ledger, holder=ME, release_id="r1")
        with pytest.raises(LockHeld) as lost:
            take(ledger, holder=YOU, release_id="r2")
        assert (lost.value.lock.holder, lost.value.lock.release_id) == (ME, "r1")
        assert ledger.read_lock().release_id == "r1"


class TestEntries:
    def test_entries_come_back_in_the_tables_order_not_the_clients_clocks(self, ledger):
        # The second writer's clock is a day behind: the table's counter still puts it after the first.
        first, second = entry("r1", "2026-01-02T00:00:00.000Z"), entry("r2", "2026-01-01T00:00:00.000Z", forced=True)
        first = ledger.start(first, "staging")
        second = ledger.start(second, "staging")
        assert (first.seq, second.seq) == (1, 2)
        ledger.finish(first, result=d.RESULT_SUCCEEDED, finished_at="2026-01-02T00:01:00.000Z", duration_seconds=60.04, detail="ok")
        newest, oldest = ledger.entries()
        assert (newest.release_id, newest.result, newest.forced, newest.seq) == ("r2", d.RESULT_IN_PROGRESS, True, 2)
        assert (oldest.result, oldest.duration_seconds, oldest.who, oldest.digest) == (d.RESULT_SUCCEEDED, 60.0, ME, "sha256:abc")
        assert [e.release_id for e in ledger.entries(limit=1)] == ["r2"]

    def test_entries_from_before_the_counter_read_as_older(self, ledger):
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.put_item(TableName="ledger", Item={"pk": {"S": "RELEASE"}, "sk": {"S": "2026-01-01T00:00:00.000Z#old"},
                                                  "release_id": {"S": "old"}, "gate": {"S": "stage"}, "result": {"S": "succeeded"}})
        ledger.record(entry("new", "2025-01-01T00:00:00.000Z", result=d.RESULT_REFUSED), "staging")
        assert [e.release_id for e in ledger.entries()] == ["new", "old"]

    def test_a_finished_entry_is_recorded_in_one_write(self, ledger):
        written = ledger.record(entry("r1", "2026-01-01T00:00:00.000Z", result=d.RESULT_REFUSED, detail="lock held",
                                      finished_at="2026-01-01T00:00:00.000Z", duration_seconds=0.0), "staging")
        (read,) = ledger.entries()
        assert read == written and read.result == d.RESULT_REFUSED
        assert ledger.entry("SEQ#000000000001") == written

    def test_an_entry_is_never_written_twice(self, ledger):
        started = ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.start(started, "staging")

    def test_an_outcome_is_recorded_once(self, ledger):
        first = ledger.start(entry("r1", "2026-01-01T00:00:00.000Z"), "staging")
        ledger.finish(first, result=d.RESULT_ROLLED_BACK, finished_at="x", duration_seconds=1, detail="why")
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.finish(first, result=d.RESULT_SUCCEEDED, finished_at="y", duration_seconds=2, detail="rewrite")
        assert ledger.entries()[0].result == d.RESULT_ROLLED_BACK

    def test_finishing_an_entry_that_was_never_started_fails(self, ledger):
        # Without the condition, update_item would create a half entry out of nothing.
        with pytest.raises(ClientError, match="ConditionalCheckFailed"):
            ledger.finish(entry("ghost", "2026-01-01T00:00:00.000Z"), result=d.RESULT_SUCCEEDED, finished_at="x", duration_seconds=1, detail="")
        assert ledger.entries() == []
