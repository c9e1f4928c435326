"""An SQS queue read the way a Lambda event-source mapping reads it.

The local stack has no Lambda service to run its functions (moto's needs Docker), so its
pollers do the mapping's work: receive a batch, hand it to the function as the ``Records``
of an SQS event, and delete what the function processed. This module is the SQS half of
that; ``devstack.pollers`` is the loop.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from shared.dal import aws_client

MAX_BATCH = 10


def _lambda_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # The SQS API says StringValue/BinaryValue/DataType; Lambda's records use camel case.
    out: dict[str, Any] = {"dataType": value.get("DataType", "String")}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:  # bytes from boto3; base64 text in Lambda's records
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return out


class SqsEventSource:
    """The queue at ``queue_url``; ``records`` come in Lambda's SQS event shape."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        client: Any = None,
    ) -> None:
        self.queue_url = queue_url
        self.region = region
        self._sqs = client or aws_client("sqs", region=region, endpoint_url=endpoint_url)
        attributes = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        self.arn: str = attributes["Attributes"]["QueueArn"]

    def receive(self, batch: int = MAX_BATCH, wait_s: int = 1) -> list[dict[str, Any]]:
        """Up to ``batch`` records (long-polling ``wait_s`` seconds), as Lambda passes them."""
        answer = self._sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(batch, MAX_BATCH)),
            WaitTimeSeconds=wait_s,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return [self._record(m) for m in answer.get("Messages", [])]

    def delete(self, records: Iterable[Mapping[str, Any]]) -> None:
        entries = [
            {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(records)
        ]
        for start in range(0, len(entries), MAX_BATCH):
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url, Entries=entries[start : start + MAX_BATCH]
            )

    def _record(self, message: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _lambda_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": self.region,
        }
