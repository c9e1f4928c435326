"""Queues: the runs queue, its dead-letter path, and the function that marks dead letters.

::

    runs ──(max_receive_count)──▶ runs-failed (transit) ──ESM──▶ DLQ function ──▶ runs-dlq
                                        └──(failed_max_receive_count)──────────▶ runs-dlq

- ``runs``: its visibility timeout is the lease period (``lease_ttl_s``): a crashed worker's
  message reappears about when its lease expires, and the worker's heartbeat extends both.
- ``runs-failed``: the runs queue's redrive target, consumed by the DLQ function
  (``ReportBatchItemFailures``), which marks the run failed and re-sends the message to
  ``runs-dlq``. Lambda deletes what the function reports processed, so the function keeps a
  copy in the DLQ first (docs/operations.md, "Dead-letter queue").
- ``runs-dlq``: nothing consumes it; messages wait for an operator's redrive (14 days; SQS
  counts retention from the original enqueue). Short visibility timeout, so a redrive right
  after a listing sees every message.

Every queue is encrypted (SQS-managed SSE) and refuses requests without TLS.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import constants as c
from infra.config import StackSettings
from infra.constructs.function import PythonFunction

MAX_VISIBILITY_S = 43_200


def secure_queue(
    scope: Construct,
    id: str,
    *,
    queue_name: str,
    visibility_timeout_s: int,
    retention_days: int,
    dead_letter: sqs.DeadLetterQueue | None = None,
    receive_wait_s: int = 0,
) -> sqs.Queue:
    return sqs.Queue(
        scope,
        id,
        queue_name=queue_name,
        visibility_timeout=Duration.seconds(min(visibility_timeout_s, MAX_VISIBILITY_S)),
        retention_period=Duration.days(retention_days),
        receive_message_wait_time=Duration.seconds(receive_wait_s),
        dead_letter_queue=dead_letter,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )


def consumer_visibility_s(function_timeout_s: int) -> int:
    """A queue an event-source mapping reads: six times the function timeout (AWS's advice,
    so a batch retried within the mapping's own retries stays invisible)."""
    return min(6 * function_timeout_s, MAX_VISIBILITY_S)


class Queues(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: StackSettings) -> None:
        super().__init__(scope, id)
        prefix = settings.resource_prefix
        q = settings.queues
        self.dlq = secure_queue(
            self,
            c.DLQ_ID,
            queue_name=f"{prefix}-runs-dlq",
            visibility_timeout_s=q.dlq_visibility_timeout_s,
            retention_days=q.dlq_retention_days,
        )
        self.failed = secure_queue(
            self,
            c.FAILED_QUEUE_ID,
            queue_name=f"{prefix}-runs-failed",
            visibility_timeout_s=consumer_visibility_s(settings.functions.dlq.timeout_s),
            retention_days=q.dlq_retention_days,
            dead_letter=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=q.failed_max_receive_count
            ),
        )
        self.runs = secure_queue(
            self,
            c.RUNS_QUEUE_ID,
            queue_name=f"{prefix}-runs",
            visibility_timeout_s=settings.lease_ttl_s,
            retention_days=q.runs_retention_days,
            receive_wait_s=20,
            dead_letter=sqs.DeadLetterQueue(
                queue=self.failed, max_receive_count=q.max_receive_count
            ),
        )

        self.dlq_function = PythonFunction(
            self,
            c.DLQ_FUNCTION_ID,
            settings=settings,
            function=settings.functions.dlq,
            function_dir="dlq",
            handler=c.DLQ_HANDLER,
            service="dlq",
            description="Switchyard: marks dead-lettered runs failed and keeps them in the DLQ",
        )
        self.dlq_mapping = event_sources.SqsEventSource(
            self.failed, batch_size=10, report_batch_item_failures=True
        )
        self.dlq_function.alias.add_event_source(self.dlq_mapping)


__all__ = ["Queues", "consumer_visibility_s", "secure_queue"]
