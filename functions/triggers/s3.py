"""S3 trigger: ObjectCreated notifications → runs, per the S3 trigger rules.

Two event shapes reach it:

- SQS records (the event-source mapping of the trigger queue the bucket notifies), each
  body an S3 notification document (or an SNS envelope around one). The answer lists the
  records that failed (``batchItemFailures``), so only those are delivered again; the
  mapping needs ``ReportBatchItemFailures``.
- S3 records (the bucket invoking the function directly). A failure raises, and Lambda
  retries the invocation; records that already started their run start nothing new.

``s3:TestEvent`` (sent when a notification is configured) and records other than
ObjectCreated are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from functions import run_sync
from functions.triggers import Container, container
from shared.logic.triggers import Started, s3_records, start_from_s3_record, started_id
from shared.models.run import Run
from shared.observability import get_logger

logger = get_logger("switchyard-trigger-s3")


def _notification(body: str) -> dict[str, Any]:
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("the message body is not a JSON object")
    if document.get("Type") == "Notification" and isinstance(document.get("Message"), str):
        return _notification(document["Message"])  # S3 → SNS → SQS
    return document


async def _from_sqs(c: Container, records: list[Mapping[str, Any]]) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    started: list[Started] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            for s3_record in s3_records(_notification(str(record["body"]))):
                started.extend(await start_from_s3_record(c.services, c.rules, s3_record))
        except Exception as exc:
            logger.exception(
                "S3 trigger record failed",
                extra={"message_id": message_id, "error_type": type(exc).__name__},
            )
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures, **_ids(started)}


async def _from_s3(c: Container, records: list[Mapping[str, Any]]) -> dict[str, Any]:
    started: list[Started] = []
    for record in records:
        started.extend(await start_from_s3_record(c.services, c.rules, record))
    return _ids(started)


def _ids(started: list[Started]) -> dict[str, list[str]]:
    """What the invocation started: run ids and, for pipeline rules, job ids."""
    jobs = [started_id(s) for s in started if not isinstance(s, Run)]
    runs = [started_id(s) for s in started if isinstance(s, Run)]
    return {"runs": runs, "jobs": jobs} if jobs else {"runs": runs}


async def handle(c: Container, event: Mapping[str, Any]) -> dict[str, Any]:
    records = [r for r in event.get("Records") or [] if isinstance(r, Mapping)]
    if records and all(r.get("eventSource") == "aws:sqs" for r in records):
        return await _from_sqs(c, records)
    if not records:  # s3:TestEvent delivered directly, or nothing to do
        return {"runs": []}
    return await _from_s3(c, records)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    c = container()
    return run_sync(handle(c, event))
