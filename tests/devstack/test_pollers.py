"""The pollers standing in for Lambda's SQS event-source mappings: which records a function's
answer lets the mapping delete, and a poller against a real SQS queue on a moto server
(records in Lambda's shape, processed ones deleted, failures left for another receive)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from devstack.invocation import Invoker
from devstack.pollers import QueuePoller, processed
from devstack.topology import EventSource, LocalFunction
from shared.dal import aws_client
from tests.support.moto_server import fresh_moto_server

REGION = "us-east-1"
RECORDS = [{"messageId": m, "body": m.upper()} for m in ("a", "b", "c")]


# ---- processed() ---------------------------------------------------------------------------


def failures(*ids: str) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in ids]}


def test_with_batch_item_failures_the_failed_records_stay() -> None:
    assert processed(RECORDS, failures("b"), True) == [RECORDS[0], RECORDS[2]]
    assert processed(RECORDS, failures("a", "c"), True) == [RECORDS[1]]
    assert processed(RECORDS, failures("a", "b", "c"), True) == []


def test_with_batch_item_failures_an_answer_without_failures_processes_everything() -> None:
    assert processed(RECORDS, failures(), True) == RECORDS
    assert processed(RECORDS, {"batchItemFailures": None}, True) == RECORDS
    assert processed(RECORDS, {}, True) == RECORDS
    assert processed(RECORDS, None, True) == RECORDS
    assert processed(RECORDS, "done", True) == RECORDS


def test_unknown_identifiers_and_malformed_items_are_ignored() -> None:
    answer = {"batchItemFailures": [{"itemIdentifier": "zzz"}, "b", {"other": "c"}]}
    assert processed(RECORDS, answer, True) == RECORDS


def test_without_batch_item_failures_the_answer_is_ignored() -> None:
    # Without ReportBatchItemFailures Lambda takes a normal return as the whole batch done.
    assert processed(RECORDS, failures("a", "b"), False) == RECORDS
    assert processed(RECORDS, None, False) == RECORDS


# ---- QueuePoller on a moto server ----------------------------------------------------------


FUNCTION = LocalFunction(logical_id="TriggerFunction", handler="functions.triggers.s3.handler")
Respond = Callable[[list[dict[str, Any]]], Any]


class RecordingFunctions:
    """Stands in for the stack's functions: records each invocation, answers with ``respond``
    (which may raise, as a failing function does)."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond: Respond = respond or (lambda records: None)
        self.calls: list[tuple[LocalFunction, dict[str, Any]]] = []

    def invoke(self, fn: LocalFunction, event: dict[str, Any]) -> Any:
        self.calls.append((fn, event))
        return self.respond(event["Records"])

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for _, event in self.calls for r in event["Records"]]


@dataclass
class Queue:
    sqs: Any
    url: str
    arn: str

    def send(self, body: str, **kwargs: Any) -> str:
        message_id: str = self.sqs.send_message(QueueUrl=self.url, MessageBody=body, **kwargs)[
            "MessageId"
        ]
        return message_id

    def counts(self) -> tuple[int, int]:
        """(visible, in flight)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"]),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """A queue whose received messages are visible again after 1 s, on a fresh moto server
    (``AWS_ENDPOINT_URL`` points there: the poller's own client finds it)."""
    with fresh_moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        sqs = aws_client("sqs", region=REGION, endpoint_url=url)
        queue_url = sqs.create_queue(
            QueueName="devstack-poller", Attributes={"VisibilityTimeout": "1"}
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        yield Queue(sqs, queue_url, arn)


def poller_for(
    queue: Queue,
    functions: Invoker,
    *,
    batch_size: int = 10,
    report_failures: bool = True,
    report: Callable[[str], None] | None = None,
) -> QueuePoller:
    source = EventSource(
        logical_id="Mapping",
        queue_logical_id="Queue",
        queue_url=queue.url,
        function=FUNCTION,
        batch_size=batch_size,
        report_failures=report_failures,
    )
    return QueuePoller(source, functions, region=REGION, report=report, wait_s=0)


def poll_until(poller: QueuePoller, functions: RecordingFunctions, count: int) -> None:
    """Poll (long-polling up to 5 s at a time) until ``count`` records were delivered in all:
    messages left on the queue come back once their visibility timeout (1 s) is over."""
    poller.wait_s = 5
    deadline = time.monotonic() + 20
    while len(functions.records) < count:
        assert time.monotonic() < deadline, f"only {len(functions.records)} of {count} records"
        poller.poll_once()


def test_messages_are_delivered_as_lambda_sqs_records(queue: Queue) -> None:
    functions = RecordingFunctions()
    attributes = {
        "kind": {"DataType": "String", "StringValue": "upload"},
        "size": {"DataType": "Number", "StringValue": "42"},
    }
    sent = queue.send("hello", MessageAttributes=attributes)
    poller = poller_for(queue, functions)
    assert poller.poll_once() == 1
    ((fn, event),) = functions.calls
    assert fn is FUNCTION
    assert set(event) == {"Records"}
    (record,) = event["Records"]
    assert record["messageId"] == sent
    assert record["receiptHandle"]
    assert record["body"] == "hello"
    assert record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue.arn
    assert record["awsRegion"] == REGION
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert int(record["attributes"]["SentTimestamp"]) > 0
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert record["messageAttributes"]["kind"]["stringValue"] == "upload"
    assert record["messageAttributes"]["size"]["dataType"] == "Number"
    assert record["messageAttributes"]["size"]["stringValue"] == "42"
    assert all(
        not any(name[0].isupper() for name in value)
        for value in record["messageAttributes"].values()
    )


def test_a_binary_message_attribute_arrives_base64_encoded(queue: Queue) -> None:
    # Lambda's records carry binaryValue as base64 text (what Powertools documents), not bytes.
    functions = RecordingFunctions()
    raw = b"\x00\x01\xfe\xff"
    queue.send("blob", MessageAttributes={"blob": {"DataType": "Binary", "BinaryValue": raw}})
    assert poller_for(queue, functions).poll_once() == 1
    (record,) = functions.records
    assert record["messageAttributes"]["blob"] == {
        "dataType": "Binary",
        "binaryValue": base64.b64encode(raw).decode(),
    }


def test_processed_messages_are_deleted_and_reported_failures_stay(queue: Queue) -> None:
    ids = {body: queue.send(body) for body in ("a", "b", "c")}

    def fail_b_once(records: list[dict[str, Any]]) -> Any:
        first_b = [
            r["messageId"]
            for r in records
            if r["body"] == "b" and r["attributes"]["ApproximateReceiveCount"] == "1"
        ]
        return failures(*first_b)

    functions = RecordingFunctions(fail_b_once)
    lines: list[str] = []
    poller = poller_for(queue, functions, report=lines.append)
    assert poller.poll_once() == 3
    assert sorted(r["body"] for r in functions.records) == ["a", "b", "c"]
    assert queue.counts() == (0, 1)  # a and c deleted; b in flight until its timeout
    assert lines == ["triggers-s3: 3 message(s), 2 processed"]

    poll_until(poller, functions, 4)  # b is received again after its visibility timeout
    again = functions.records[3]
    assert again["messageId"] == ids["b"]
    assert again["body"] == "b"
    assert again["attributes"]["ApproximateReceiveCount"] == "2"
    assert queue.counts() == (0, 0)  # processed this time: deleted
    assert poller.delivered == 4


def test_without_report_batch_item_failures_the_whole_batch_is_deleted(queue: Queue) -> None:
    for body in ("a", "b"):
        queue.send(body)
    functions = RecordingFunctions(lambda records: failures(records[0]["messageId"]))
    poller = poller_for(queue, functions, report_failures=False)
    assert poller.poll_once() == 2
    assert queue.counts() == (0, 0)


def test_a_function_that_raises_leaves_the_whole_batch(queue: Queue) -> None:
    for body in ("x", "y"):
        queue.send(body)
    raising = True

    def respond(records: list[dict[str, Any]]) -> Any:
        if raising:
            raise RuntimeError("the function failed")
        return None

    functions = RecordingFunctions(respond)
    lines: list[str] = []
    poller = poller_for(queue, functions, report=lines.append)
    assert poller.poll_once() == 2
    assert queue.counts() == (0, 2)  # nothing deleted
    assert lines == ["triggers-s3: failed on 2 message(s)"]

    raising = False
    poll_until(poller, functions, 4)
    redelivered = functions.records[2:]
    assert sorted(r["body"] for r in redelivered) == ["x", "y"]
    assert {r["attributes"]["ApproximateReceiveCount"] for r in redelivered} == {"2"}
    assert queue.counts() == (0, 0)


def test_the_batch_size_bounds_each_invocation(queue: Queue) -> None:
    for body in ("1", "2", "3"):
        queue.send(body)
    functions = RecordingFunctions()
    poller = poller_for(queue, functions, batch_size=2)
    assert poller.poll_once() == 2
    assert poller.poll_once() == 1
    assert [len(event["Records"]) for _, event in functions.calls] == [2, 1]
    assert queue.counts() == (0, 0)


def test_an_empty_queue_invokes_nothing(queue: Queue) -> None:
    functions = RecordingFunctions()
    poller = poller_for(queue, functions)
    assert poller.poll_once() == 0
    assert functions.calls == []
    assert poller.delivered == 0
