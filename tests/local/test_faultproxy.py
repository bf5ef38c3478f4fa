"""The fault proxy (local/faultproxy.py): every call passes unchanged except the one a rule names, which
is held until released, paused, dropped or failed in the call's own protocol. Against a real moto_server,
with boto3 clients as the release tool makes them."""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from local import emulator as emulators
from local.faultproxy import FaultProxy, operation_of

TABLE = "probe"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    state = tmp_path_factory.mktemp("faultproxy-emulator")
    started = emulators.start(state)
    yield started
    emulators.stop(started, state)


@pytest.fixture
def proxy(upstream, fake_aws_env):
    with FaultProxy(upstream.endpoint) as running:
        yield running


def dynamodb(endpoint: str):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=10))


def cloudformation(endpoint: str):
    return boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=10))


def table(client) -> None:
    if TABLE not in client.list_tables()["TableNames"]:
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])


def test_the_operation_is_read_from_either_protocol():
    assert operation_of({"X-Amz-Target": "DynamoDB_20120810.UpdateItem"}, b"{}") == "UpdateItem"
    assert operation_of({}, b"Action=UpdateStack&Version=2010-05-15&StackName=x") == "UpdateStack"
    assert operation_of({}, b"") == ""


def test_unmatched_calls_pass_unchanged(proxy, upstream):
    client = dynamodb(proxy.endpoint)
    table(client)
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"S": "1"}})
    # What went through the proxy is what the emulator holds.
    assert dynamodb(upstream.endpoint).get_item(TableName=TABLE, Key={"pk": {"S": "a"}})["Item"]["v"] == {"S": "1"}
    assert proxy.seen("PutItem") == ["passed"]


def test_a_held_call_reaches_the_emulator_only_when_released(proxy, upstream):
    client = dynamodb(proxy.endpoint)
    table(client)
    rule = proxy.add("PutItem", "hold", contains='"held"')
    done = threading.Event()
    worker = threading.Thread(target=lambda: (client.put_item(TableName=TABLE, Item={"pk": {"S": "held"}}), done.set()))
    worker.start()
    rule.wait_matched(10)
    assert not done.is_set()
    assert "Item" not in dynamodb(upstream.endpoint).get_item(TableName=TABLE, Key={"pk": {"S": "held"}})
    rule.release()
    worker.join(timeout=10)
    assert done.is_set()
    assert "Item" in dynamodb(upstream.endpoint).get_item(TableName=TABLE, Key={"pk": {"S": "held"}})
    # Only the body that matched was held; times=1 lets the next one through.
    client.put_item(TableName=TABLE, Item={"pk": {"S": "held"}, "again": {"S": "yes"}})
    assert proxy.seen("PutItem") == ["held", "passed"]


def test_a_failed_call_is_an_aws_error_in_its_protocol_and_never_forwarded(proxy, upstream):
    client = dynamodb(proxy.endpoint)
    table(client)
    proxy.add("PutItem", "fail", code="AccessDeniedException", message="no writes today")
    with pytest.raises(ClientError) as raised:
        client.put_item(TableName=TABLE, Item={"pk": {"S": "failed"}})
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "Item" not in dynamodb(upstream.endpoint).get_item(TableName=TABLE, Key={"pk": {"S": "failed"}})
    proxy.add("DescribeStacks", "fail", code="ValidationError", message="Stack with id nope does not exist")
    with pytest.raises(ClientError) as raised:
        cloudformation(proxy.endpoint).describe_stacks(StackName="nope")
    assert raised.value.response["Error"] == {**raised.value.response["Error"], "Code": "ValidationError",
                                              "Message": "Stack with id nope does not exist"}


def test_a_dropped_call_is_a_lost_connection(proxy):
    client = dynamodb(proxy.endpoint)
    table(client)
    proxy.add("GetItem", "drop", times=None)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert proxy.seen("GetItem") == ["dropped"]


def test_a_disarmed_rule_lets_calls_pass_and_bad_actions_are_refused(proxy):
    client = dynamodb(proxy.endpoint)
    table(client)
    rule = proxy.add("GetItem", "drop", times=None, armed=False)
    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    rule.armed = True
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})
    assert proxy.seen("GetItem") == ["passed", "dropped"]
    with pytest.raises(ValueError, match="'swallow' is not one of hold, drop, pause, fail"):
        proxy.add("GetItem", "swallow")
