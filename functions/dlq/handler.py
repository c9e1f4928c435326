"""Lambda entry of the dead-letter function (an SQS event-source mapping).

Topology (docs/operations.md): the runs queue redrives to a *transit* queue after
``maxReceiveCount`` receives; this function consumes the transit queue. For each record it
marks the run failed (``dead_lettered``) and re-sends the message to the DLQ operators read
(``SWITCHYARD_DLQ_URL``, nothing consumes it), then reports the record processed, and Lambda
deletes it from the transit queue. So the message stays available for ``redrive``.

Records whose run is leased by a live worker, or that failed, are reported in
``batchItemFailures`` (the mapping needs ``ReportBatchItemFailures``) and delivered again; a
record that keeps failing reaches the DLQ through the transit queue's own redrive policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from functions import PerContainer, run_sync
from shared.config import Settings
from shared.errors import ConfigError
from shared.logic.dlq import DeadLetterSink, Settled, settle_dead_letter
from shared.logic.service import Services
from shared.observability import get_logger
from shared.queue.base import QueueMessage, RunMessage

logger = get_logger("switchyard-dlq")


@dataclass(frozen=True)
class Container:
    services: Services
    dlq: DeadLetterSink


def build_container(env: Mapping[str, str] | None = None) -> Container:
    from shared.logic.webhooks import completion_hook
    from shared.wiring import build_services, load_settings

    settings = (
        load_settings() if env is None else Settings.from_env(env)  # tests pass their own
    )
    if settings.backend != "aws":
        raise ConfigError(
            f"the DLQ function runs on SQS (SWITCHYARD_BACKEND=aws), not {settings.backend!r}; "
            "elsewhere call shared.logic.dlq.handle_dead_letter directly"
        )
    if not settings.dlq_url:
        raise ConfigError("SWITCHYARD_DLQ_URL is not set: the DLQ function keeps messages there")
    from shared.dal.sqs import SqsRunQueue

    services = build_services(settings, backend="aws", on_complete=completion_hook(settings))
    # A RunQueue whose queue is the DLQ: its send() is how a handled dead letter is kept.
    dlq = SqsRunQueue(settings.dlq_url, region=settings.region)
    return Container(services=services, dlq=dlq)


_container: PerContainer[Container] = PerContainer(build_container)


def container() -> Container:
    return _container.get()


def configure(services: Services | None, dlq: DeadLetterSink | None = None) -> None:
    """Use ``services`` and keep dead letters in ``dlq`` from now on (tests, the local
    stack); ``None`` forgets them, so the next invocation builds from the environment."""
    if services is None:
        _container.set(None)
        return
    if dlq is None:
        raise ConfigError("configure() needs the DLQ the dead letters are kept in")
    _container.set(Container(services=services, dlq=dlq))


def queue_message(record: Mapping[str, Any]) -> QueueMessage:
    """An SQS record of the event-source mapping as the queue interface's message."""
    attributes = record.get("attributes") or {}
    return QueueMessage(
        body=RunMessage.model_validate_json(str(record["body"])),
        receipt=str(record.get("receiptHandle", "")),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        sent_at_ms=int(attributes.get("SentTimestamp", 0)),
        message_id=str(record["messageId"]),
    )


async def handle(c: Container, event: Mapping[str, Any]) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    settled: dict[str, str] = {}
    for record in event.get("Records") or []:
        message_id = str(record.get("messageId", ""))
        try:
            outcome = await settle_dead_letter(c.services, queue_message(record), c.dlq)
        except Exception as exc:
            logger.exception(
                "dead letter not settled",
                extra={"message_id": message_id, "error_type": type(exc).__name__},
            )
            failures.append({"itemIdentifier": message_id})
            continue
        settled[message_id] = outcome.value
        if outcome is Settled.RETRY:
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures, "settled": settled}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    c = container()
    return run_sync(handle(c, event))
