"""The S3 trigger through its Lambda handler, with real-shaped events and with moto."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest

import functions.triggers as trigger_functions
from functions import run_sync
from functions.triggers.s3 import handler
from infra import constants as c
from infra.config import StackSettings
from shared.dal import aws_client
from shared.dal.local import DeployedStack
from shared.logic.service import Services
from shared.logic.triggers import TriggerRules
from shared.models.run import Run, RunStatus, Shape
from tests.triggers.conftest import STACK_SETTINGS, load_event

DECODED_KEY = "invoices/2025/ACME Corp, March + April.pdf"
UNMATCHED_KEY = "invoices/readme.txt"


def runs_of(svc: Services, tenant: str = "acme") -> list[Run]:
    page = run_sync(svc.journal.list_runs(tenant, limit=100))
    return [run_sync(svc.journal.get_run(s.run_id)) for s in page.runs]


def test_direct_s3_event_starts_a_run_with_the_object_reference(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    response = handler(load_event("s3_put.json"))

    (run,) = runs_of(services)
    assert response == {"runs": [run.run_id]}
    assert run.agent == "researcher"
    assert run.tenant == "acme"
    assert run.shape is Shape.ASYNC
    assert run.status is RunStatus.QUEUED
    assert run.input == {
        "task": "extract the totals",
        "bucket": "acme-inbox",
        "key": DECODED_KEY,
        "size": 48213,
        "etag": "0e9f3c1a6b2d4e8f9a1b2c3d4e5f6a7b",
    }
    assert run.metadata == {"team": "finance", "trigger": "s3", "trigger_rule": "invoices"}
    assert run.idempotency_key is not None
    assert run.idempotency_key.startswith("s3:invoices:")
    # Enqueued for a worker, like an async API submit.
    (message,) = run_sync(services.queue.receive(wait_s=0))
    assert message.body.run_id == run.run_id


def test_sqs_batch_ignores_the_test_event_and_redelivery_starts_no_second_run(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    event = load_event("sqs_s3_put.json")
    first = handler(event)
    again = handler(event)  # the queue delivers the same messages again

    (run,) = runs_of(services)
    assert first == {"batchItemFailures": [], "runs": [run.run_id]}
    assert again == {"batchItemFailures": [], "runs": [run.run_id]}
    assert run_sync(services.queue.receive(wait_s=0))[0].body.run_id == run.run_id
    assert services.queue.depth() == 1  # type: ignore[attr-defined]  # one message, not two


def test_a_test_event_invoking_the_function_directly_starts_nothing(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    assert handler(load_event("s3_test_event.json")) == {"runs": []}
    assert runs_of(services) == []


def test_objects_outside_every_rule_start_nothing(services: Services, rules: TriggerRules) -> None:
    trigger_functions.configure(services, rules)
    event = load_event("s3_put.json")
    for key in ("invoices/2025/notes.txt", "receipts/a.pdf"):
        event["Records"][0]["s3"]["object"]["key"] = key
        assert handler(event) == {"runs": []}
    other_bucket = load_event("s3_put.json")
    other_bucket["Records"][0]["s3"]["bucket"]["name"] = "someone-else"
    assert handler(other_bucket) == {"runs": []}
    assert runs_of(services) == []


def test_each_matching_rule_starts_its_own_run(services: Services, rules: TriggerRules) -> None:
    doubled = TriggerRules.model_validate(
        {"s3": [r.model_dump() for r in rules.s3] + [{**rules.s3[0].model_dump(), "name": "copy"}]}
    )
    trigger_functions.configure(services, doubled)
    response = handler(load_event("s3_put.json"))
    assert len(response["runs"]) == 2
    assert sorted(r.metadata["trigger_rule"] for r in runs_of(services)) == ["copy", "invoices"]


def test_a_new_version_of_the_object_starts_a_new_run(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    event = load_event("s3_put.json")
    handler(event)
    changed = copy.deepcopy(event)
    changed["Records"][0]["s3"]["object"]["eTag"] = "ffffffffffffffffffffffffffffffff"
    changed["Records"][0]["s3"]["object"]["sequencer"] = "0055AED6DCD90281F0"
    handler(changed)
    assert len(runs_of(services)) == 2


def test_only_the_failing_record_of_a_batch_is_reported(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    event = load_event("sqs_s3_put.json")
    broken = copy.deepcopy(event["Records"][1])
    broken["messageId"] = "broken-1"
    broken["body"] = "{not json"
    event["Records"].insert(1, broken)

    response = handler(event)
    assert response["batchItemFailures"] == [{"itemIdentifier": "broken-1"}]
    assert len(response["runs"]) == 1


def test_sns_envelope_is_unwrapped(services: Services, rules: TriggerRules) -> None:
    trigger_functions.configure(services, rules)
    event = load_event("sqs_s3_put.json")
    record = event["Records"][1]
    record["body"] = json.dumps({"Type": "Notification", "Message": record["body"]})
    assert len(handler({"Records": [record]})["runs"]) == 1


# ---- moto: the stack's inbox bucket notifying its trigger queue -------------------------------


@dataclass
class Inbox:
    s3: Any
    sqs: Any
    bucket: str
    queue_url: str
    queue_arn: str


@pytest.fixture
def inbox(stack: DeployedStack) -> Inbox:
    """The stack's inbox bucket, notifying its trigger queue for the ``STACK_SETTINGS`` rules
    (the notification configuration from the template)."""
    return Inbox(
        s3=aws_client("s3", region=stack.region),
        sqs=aws_client("sqs", region=stack.region),
        bucket=stack.outputs[c.OUTPUT_INBOX_BUCKET],
        queue_url=stack.outputs[c.OUTPUT_TRIGGER_QUEUE_URL],
        queue_arn=stack.outputs[c.OUTPUT_TRIGGER_QUEUE_ARN],
    )


@pytest.fixture
def stack_rules() -> TriggerRules:
    """The rules the stack's trigger function reads (SWITCHYARD_TRIGGERS)."""
    return StackSettings.from_mapping(STACK_SETTINGS).trigger_rules()


def drain(inbox: Inbox) -> dict[str, Any]:
    """Everything on the queue, as the SQS event an event-source mapping would deliver."""
    records = []
    while True:
        got = inbox.sqs.receive_message(
            QueueUrl=inbox.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            records.append(
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m["Attributes"],
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": inbox.queue_arn,
                    "awsRegion": inbox.queue_arn.split(":")[3],
                }
            )
    return {"Records": records}


def test_moto_bucket_notification_through_sqs_starts_one_run(
    inbox: Inbox, services: Services, stack_rules: TriggerRules
) -> None:
    s3 = inbox.s3
    trigger_functions.configure(services, stack_rules)
    s3.put_object(Bucket=inbox.bucket, Key=DECODED_KEY, Body=b"%PDF-1.7 invoice")
    # Notified (the inbox's filter is the broader invoices/), but no rule matches it.
    s3.put_object(Bucket=inbox.bucket, Key=UNMATCHED_KEY, Body=b"not for any rule")

    event = drain(inbox)
    bodies = [json.loads(r["body"]) for r in event["Records"]]
    assert bodies[0]["Event"] == "s3:TestEvent"  # what S3 sends first
    assert len(bodies) == 3

    response = handler(event)
    assert response["batchItemFailures"] == []
    (run,) = runs_of(services)
    assert response["runs"] == [run.run_id]
    head = s3.head_object(Bucket=inbox.bucket, Key=DECODED_KEY)
    assert run.input["bucket"] == inbox.bucket
    assert run.input["key"] == DECODED_KEY  # URL-decoded: the key S3 itself knows
    assert run.input["size"] == head["ContentLength"]
    assert run.input["etag"] == head["ETag"].strip('"')
    body = s3.get_object(Bucket=run.input["bucket"], Key=run.input["key"])["Body"].read()
    assert body == b"%PDF-1.7 invoice"

    # The queue redelivers the same notification: no second run.
    assert handler(event)["runs"] == [run.run_id]
    # The same bytes uploaded again (same ETag) are the same object version: no new run.
    s3.put_object(Bucket=inbox.bucket, Key=DECODED_KEY, Body=b"%PDF-1.7 invoice")
    assert handler(drain(inbox))["runs"] == [run.run_id]
    # New content is a new version: a new run.
    s3.put_object(Bucket=inbox.bucket, Key=DECODED_KEY, Body=b"%PDF-1.7 corrected invoice")
    (second,) = handler(drain(inbox))["runs"]
    assert second != run.run_id
    assert len(runs_of(services)) == 2


def test_moto_inbox_notifies_only_keys_under_the_rules_filters(
    inbox: Inbox, services: Services, stack_rules: TriggerRules
) -> None:
    trigger_functions.configure(services, stack_rules)
    drain(inbox)  # the test event
    inbox.s3.put_object(Bucket=inbox.bucket, Key="notes/readme.txt", Body=b"outside every rule")
    assert drain(inbox) == {"Records": []}
    assert runs_of(services) == []
