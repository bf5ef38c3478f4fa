"""The emulator's DynamoDB keeps AWS's rule: of writers racing on one condition, exactly one wins; and the server's
dispatcher lists moto's services once, not per request."""
from __future__ import annotations

import os
import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local import emulator as emulators
from local.moto_server import AtomicDynamoDB, list_moto_modules_once

WRITERS = 8
ROUNDS = 25


@pytest.fixture
def dynamodb(tmp_path, fake_aws_env):
    running = emulators.start(tmp_path)
    try:
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=running.endpoint,
                              config=Config(max_pool_connections=WRITERS))
        client.create_table(TableName="race", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        yield client
    finally:
        emulators.stop(running, tmp_path)


def test_writers_racing_on_a_conditional_put_one_wins_each_round(dynamodb):
    winners_per_round = []
    for round_number in range(ROUNDS):
        barrier, winners = threading.Barrier(WRITERS), []

        def write(writer: int) -> None:
            barrier.wait()
            try:
                dynamodb.put_item(TableName="race", Item={"pk": {"S": f"lock{round_number}"}, "holder": {"S": str(writer)}},
                                  ConditionExpression="attribute_not_exists(pk)")
                winners.append(writer)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"

        threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held = dynamodb.get_item(TableName="race", Key={"pk": {"S": f"lock{round_number}"}}, ConsistentRead=True)["Item"]
        winners_per_round.append((len(winners), winners == [int(held["holder"]["S"])]))
    assert winners_per_round == [(1, True)] * ROUNDS


class RacyTable:
    """A WSGI app that checks, then writes, with a gap between: moto's shape, the gap made wide."""

    def __init__(self):
        self.items: dict[str, str] = {}

    def __call__(self, environ, start_response):
        key, writer = environ["PATH_INFO"].strip("/").split("/")
        free = key not in self.items
        threading.Event().wait(0.01)
        if free:
            self.items[key] = writer
        start_response("200 OK" if free else "400 Bad Request", [])
        yield b"won" if free else b"held"


def _race_through(app, target: str) -> list[str]:
    barrier, answers = threading.Barrier(WRITERS), []

    def write(writer: int) -> None:
        barrier.wait()
        environ = {"PATH_INFO": f"/lock/{writer}", "HTTP_X_AMZ_TARGET": target}
        answers.append(b"".join(app(environ, lambda status, headers: None)).decode())

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(answers)


def test_the_middleware_runs_dynamodb_calls_one_at_a_time():
    assert _race_through(AtomicDynamoDB(RacyTable()), "DynamoDB_20120810.PutItem") == ["held"] * (WRITERS - 1) + ["won"]


def test_other_services_keep_their_threads():
    # The same racy app, called as another service: nothing serializes it, so several "win".
    assert _race_through(AtomicDynamoDB(RacyTable()), "AmazonSSM.PutParameter").count("won") > 1


def test_the_dispatcher_lists_motos_services_once_and_the_same_ones(monkeypatch):
    from moto import backends

    listed = tuple(backends.list_of_moto_modules())
    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)  # put back after the test
    list_moto_modules_once()
    with monkeypatch.context() as no_listing:
        no_listing.setattr(os, "listdir", lambda *_: pytest.fail("moto's package directory was listed again"))
        assert "ecs" in backends.list_of_moto_modules()
        assert tuple(backends.list_of_moto_modules()) == listed
