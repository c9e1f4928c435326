"""The local stack's server-side request meter (devstack.metering, devstack.motoserver): every
AWS request that reaches the moto server is counted by service and operation, DynamoDB writes
billed on the item images moto holds, reads on what they answered, SQS in 64 KB chunks, S3
object bytes, Step Functions transitions from the execution history, Lambda invocations from
the hook every invocation passes; observers that say so are not counted."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack.metering import UNMETERED, Call, ServerMeter, classify
from devstack.motoserver import MotoServer
from devstack.stack import LocalStack
from devstack.stack_settings import DevOptions, local_stack_settings
from shared.dal.local import configure_moto_server, reset_moto
from shared.dal.schema import create_table

TABLE = "metered"


@pytest.fixture
def server() -> Iterator[MotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = MotoServer(port=0)
    server.start()
    reset_moto(server.url)
    try:
        yield server
    finally:
        reset_moto(server.url)
        server.stop()


def client(server: MotoServer, service: str, *, unmetered: bool = False) -> Any:
    config = Config(user_agent_extra=UNMETERED) if unmetered else None
    return boto3.session.Session().client(
        service, region_name="us-east-1", endpoint_url=server.url, config=config
    )


@pytest.fixture
def ddb(server: MotoServer) -> Any:
    dynamodb = client(server, "dynamodb")
    create_table(dynamodb, TABLE)
    server.meter.reset()
    return dynamodb


def op(server: MotoServer, name: str) -> dict[str, Any]:
    stats: dict[str, Any] = server.meter.snapshot()["requests"][name]
    return stats


def s(value: str) -> dict[str, str]:
    return {"S": value}


# ---- DynamoDB ---------------------------------------------------------------------------------


def test_writes_are_billed_on_the_larger_item_image(server: MotoServer, ddb: Any) -> None:
    key = {"pk": s("RUN#1"), "sk": s("RUN")}
    ddb.put_item(TableName=TABLE, Item={**key, "body": s("x" * 3000)})
    assert op(server, "dynamodb.PutItem")["write_units"] == 3  # 3 KB item
    # A small update of a 3 KB item is billed on the whole item, not on the value it sets.
    ddb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": s("running")},
    )
    update = op(server, "dynamodb.UpdateItem")
    assert update["write_units"] == 3
    assert update["items"] == 1
    assert 3000 < update["stored_bytes"] < 3100
    storage = server.meter.snapshot()["storage"]
    assert storage["dynamodb_items"] == 1
    assert 3100 < storage["dynamodb_item_bytes"] < 3200  # + DynamoDB's 100 bytes per item


def test_a_failed_condition_still_consumes_write_units(server: MotoServer, ddb: Any) -> None:
    key = {"pk": s("RUN#1"), "sk": s("J#000000000001")}
    ddb.put_item(TableName=TABLE, Item={**key, "body": s("y" * 1500)})
    server.meter.reset()
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
        ddb.put_item(
            TableName=TABLE,
            Item={**key, "body": s("z")},
            ConditionExpression="attribute_not_exists(pk)",
        )
    put = op(server, "dynamodb.PutItem")
    assert put["client_errors"] == 1
    assert put["conditional_failures"] == 1
    assert put["write_units"] == 2  # the 1.5 KB item as it stood
    assert server.meter.snapshot()["storage"]["dynamodb_items"] == 0


def test_transactions_cost_twice(server: MotoServer, ddb: Any) -> None:
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {"pk": s(f"K#{i}"), "sk": s("KEY")}}}
            for i in range(2)
        ]
    )
    transaction = op(server, "dynamodb.TransactWriteItems")
    assert transaction["requests"] == 1
    assert transaction["items"] == 2
    assert transaction["write_units"] == 4


def test_index_writes_only_when_an_entry_changes(server: MotoServer, ddb: Any) -> None:
    key = {"pk": s("RUN#7"), "sk": s("RUN")}
    indexed = {"tenant_pk": s("TENANT#t"), "created": s("2026-01-01T00:00:00#7")}
    ddb.put_item(TableName=TABLE, Item={**key, **indexed, "status": s("queued")})
    assert op(server, "dynamodb.PutItem")["index_write_units"] == 1
    server.meter.reset()
    # The lease is not projected into the index: the index is not written.
    ddb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET lease_owner = :o",
        ExpressionAttributeValues={":o": s("worker-1")},
    )
    assert "index_write_units" not in op(server, "dynamodb.UpdateItem")
    # The status is: one index write.
    ddb.update_item(
        TableName=TABLE,
        Key=key,
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": s("running")},
    )
    assert op(server, "dynamodb.UpdateItem")["index_write_units"] == 1
    assert server.meter.snapshot()["storage"]["dynamodb_index_entries"] == 0  # unchanged


def test_reads_are_billed_per_4_kb_of_what_they_answer(server: MotoServer, ddb: Any) -> None:
    for i in range(3):
        item = {"pk": s("RUN#2"), "sk": s(f"J#{i:012d}"), "body": s("r" * 3000)}
        ddb.put_item(TableName=TABLE, Item=item)
    server.meter.reset()
    key = {"pk": s("RUN#2"), "sk": s("J#000000000000")}
    ddb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)
    ddb.get_item(TableName=TABLE, Key=key)  # eventually consistent: half
    assert op(server, "dynamodb.GetItem")["read_units"] == 1.5
    ddb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": s("RUN#2")},
        ConsistentRead=True,
    )
    query = op(server, "dynamodb.Query")
    assert query["items"] == 3
    assert query["read_units"] == 3  # ~9 KB summed, then rounded up to 4 KB units


# ---- SQS, S3 ----------------------------------------------------------------------------------


def test_sqs_bills_each_64_kb_and_tells_empty_receives(server: MotoServer) -> None:
    sqs = client(server, "sqs")
    url = sqs.create_queue(QueueName="runs")["QueueUrl"]
    server.meter.reset()
    sqs.send_message(QueueUrl=url, MessageBody="r" * 100_000)
    assert op(server, "sqs.SendMessage")["billed_requests"] == 2
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    receive = op(server, "sqs.ReceiveMessage")
    assert receive["requests"] == 2
    assert receive["messages"] == 1
    assert receive["empty_receives"] == 1


def test_s3_objects_count_their_bytes_and_storage(server: MotoServer) -> None:
    s3 = client(server, "s3")
    s3.create_bucket(Bucket="blobs")
    server.meter.reset()
    s3.put_object(Bucket="blobs", Key="sha256/ab/cd", Body=b"b" * 12_345)
    s3.get_object(Bucket="blobs", Key="sha256/ab/cd")["Body"].read()
    s3.head_object(Bucket="blobs", Key="sha256/ab/cd")
    snapshot = server.meter.snapshot()
    assert snapshot["requests"]["s3.PutObject"]["object_bytes"] == 12_345
    assert snapshot["requests"]["s3.GetObject"]["object_bytes"] == 12_345
    assert snapshot["requests"]["s3.HeadObject"]["requests"] == 1
    assert snapshot["storage"]["s3_objects"] == 1
    assert snapshot["storage"]["s3_bytes"] == 12_345


# ---- observers, resets, classification ------------------------------------------------------


def test_observers_and_moto_api_are_not_counted(server: MotoServer, ddb: Any) -> None:
    quiet = client(server, "dynamodb", unmetered=True)
    quiet.get_item(TableName=TABLE, Key={"pk": s("a"), "sk": s("b")})
    reset_moto(server.url)  # /moto-api
    snapshot = server.meter.snapshot()
    assert snapshot["requests"] == {}
    assert snapshot["meter_errors"] == 0


def test_classify_names_services_and_operations() -> None:
    scope = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{}/aws4_request, X=y"

    def call(service: str, method: str = "POST", path: str = "/", **extra: Any) -> Call | None:
        environ = {
            "HTTP_AUTHORIZATION": scope.format(service),
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            **extra,
        }
        return classify(environ, extra.pop("body", b""))

    assert call("dynamodb", HTTP_X_AMZ_TARGET="DynamoDB_20120810.PutItem") == Call(
        "dynamodb", "PutItem", "us-east-1"
    )
    assert call("states", HTTP_X_AMZ_TARGET="AWSStepFunctions.StartExecution") == Call(
        "stepfunctions", "StartExecution", "us-east-1"
    )
    query_sqs = call("sqs", QUERY_STRING="Action=SendMessage&Version=2012-11-05")
    assert query_sqs is not None
    assert query_sqs.operation == "SendMessage"
    form = classify(
        {
            "HTTP_AUTHORIZATION": scope.format("sqs"),
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
        },
        b"Action=DeleteMessage&QueueUrl=x",
    )
    assert form is not None
    assert form.operation == "DeleteMessage"
    s3_ops = {
        ("PUT", "/b/k", ""): "PutObject",
        ("GET", "/b/k", ""): "GetObject",
        ("HEAD", "/b/k", ""): "HeadObject",
        ("DELETE", "/b/k", ""): "DeleteObject",
        ("GET", "/b", "list-type=2&prefix=a"): "ListObjectsV2",
        ("PUT", "/b", "notification"): "PutBucketNotification",
        ("POST", "/b", "delete"): "DeleteObjects",
    }
    for (method, path, query), expected in s3_ops.items():
        found = call("s3", method, path, QUERY_STRING=query)
        assert found is not None
        assert found.operation == expected, (method, path, query)
    assert classify({"REQUEST_METHOD": "POST", "PATH_INFO": "/moto-api/reset"}, b"") is None


def test_lambda_invocations_and_reset() -> None:
    meter = ServerMeter()
    meter.invoked("api-handler", 0.25)
    meter.invoked("api-handler", 0.5, error=True)
    assert meter.snapshot()["lambda"] == {
        "api-handler": {"invocations": 2, "errors": 1, "duration_s": 0.75}
    }
    meter.reset()
    assert meter.snapshot()["lambda"] == {}


# ---- Step Functions -------------------------------------------------------------------------


def test_state_transitions_come_from_the_execution_history(server: MotoServer) -> None:
    configure_moto_server(server.url, {"stepfunctions": {"execute_state_machine": True}})
    try:
        sfn = client(server, "stepfunctions")
        definition = {
            "StartAt": "A",
            "States": {
                "A": {"Type": "Pass", "Next": "Fan"},
                "Fan": {
                    "Type": "Map",
                    "ItemsPath": "$.items",
                    "Iterator": {
                        "StartAt": "Each",
                        "States": {"Each": {"Type": "Pass", "End": True}},
                    },
                    "End": True,
                },
            },
        }
        arn = sfn.create_state_machine(
            name="metered",
            definition=json.dumps(definition),
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        server.meter.reset()
        execution = sfn.start_execution(
            stateMachineArn=arn, name="one", input=json.dumps({"items": [1, 2, 3]})
        )["executionArn"]
        quiet = client(server, "stepfunctions", unmetered=True)
        for _ in range(100):
            if quiet.describe_execution(executionArn=execution)["status"] != "RUNNING":
                break
            time.sleep(0.05)
        steps = server.meter.snapshot()["stepfunctions"]
    finally:
        configure_moto_server(server.url, {"stepfunctions": {"execute_state_machine": False}})
    assert steps["executions"] == 1
    assert steps["running"] == 0
    # A, the Map, and its iterator's state once per item.
    assert steps["state_transitions"] == 5
    assert server.meter.snapshot()["requests"]["stepfunctions.StartExecution"]["requests"] == 1


# ---- the local stack's control ----------------------------------------------------------------


def test_the_local_control_reads_and_resets(server: MotoServer, ddb: Any, tmp_path: Path) -> None:
    stack = LocalStack(DevOptions(state_dir=tmp_path))
    stack._moto = server
    ddb.get_item(TableName=TABLE, Key={"pk": s("a"), "sk": s("b")})
    status, body = stack.admin("GET", "/_local/metering", None)
    assert status == 200
    assert body["requests"]["dynamodb.GetItem"]["requests"] == 1
    status, body = stack.admin("DELETE", "/_local/metering", None)  # read, then reset
    assert status == 200
    assert body["requests"]["dynamodb.GetItem"]["requests"] == 1
    _, body = stack.admin("GET", "/_local/metering", None)
    assert body["requests"] == {}
    stack._moto = None


def test_agent_modules_reach_the_local_template() -> None:
    assert "agent_modules" not in local_stack_settings({})
    settings = local_stack_settings({"SWITCHYARD_AGENT_MODULES": " benchmarks.agents , x.y,"})
    assert settings["agent_modules"] == ["benchmarks.agents", "x.y"]
    assert settings["stage"] == "local"
