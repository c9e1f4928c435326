"""AWS on this machine: provisioning the table, bucket and queues, and an in-process moto for `dev`.

moto is a development dependency; it is imported only here and only when asked for.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import NamedTuple

from shared.config import Settings
from shared.dal import aws_client
from shared.dal.schema import create_bucket, create_table
from shared.journal.dynamodb import DynamoJournal

DEFAULT_MAX_RECEIVE_COUNT = 5
DLQ_RETENTION_S = 14 * 86_400  # SQS's maximum: dead letters wait two weeks for a human


class QueueUrls(NamedTuple):
    """Where ``provision`` put the runs queue and its dead-letter queue."""

    queue_url: str
    dlq_url: str


def queue_names(settings: Settings) -> tuple[str, str]:
    """The runs queue and DLQ names for a deployment (derived from its table name)."""
    return f"{settings.table_name}-runs", f"{settings.table_name}-runs-dlq"


def provision(
    settings: Settings, *, max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
) -> QueueUrls:
    """Create the journal table, overflow bucket, runs queue and DLQ wherever the AWS endpoint
    points; returns the queue URLs (``settings.model_copy(update=urls._asdict())`` carries
    them into Settings). The runs queue redrives to the DLQ after ``max_receive_count``
    receives; its default visibility timeout is the lease period, as the workers use it."""
    create_table(aws_client("dynamodb", region=settings.region), settings.table_name)
    create_bucket(aws_client("s3", region=settings.region), settings.bucket_name)
    return create_queues(settings, max_receive_count=max_receive_count)


def create_queues(
    settings: Settings, *, max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT
) -> QueueUrls:
    sqs = aws_client("sqs", region=settings.region)
    runs_name, dlq_name = queue_names(settings)
    dlq_url: str = sqs.create_queue(
        QueueName=dlq_name, Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_S)}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
    attributes = {
        "VisibilityTimeout": str(max(1, math.ceil(settings.lease_ttl_s))),
        "RedrivePolicy": json.dumps(redrive),
    }
    queue_url: str = sqs.create_queue(QueueName=runs_name)["QueueUrl"]
    # Set separately so re-provisioning with another max_receive_count updates the policy.
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=attributes)
    return QueueUrls(queue_url=queue_url, dlq_url=dlq_url)


@contextlib.contextmanager
def local_aws(settings: Settings) -> Iterator[DynamoJournal]:
    """A DynamoDB+S3 journal on moto, in this process, for as long as the block runs."""
    from moto import mock_aws

    with mock_aws():
        provision(settings)
        yield DynamoJournal.from_settings(settings)
