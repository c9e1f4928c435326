"""``RunQueue`` on Amazon SQS: the runs queue and its dead-letter queue.

The blocking boto3 calls run in a dedicated thread pool (like the journal's), so a long poll
(up to 20 s) or a burst of visibility heartbeats from hundreds of in-flight runs never waits
behind the event loop's default executor.

Semantics are SQS's own, which ``MemoryQueue`` mirrors: a received message stays invisible
for its visibility timeout, reappears unless deleted, and SQS moves it to the DLQ (redrive
policy, ``maxReceiveCount``) on the receive that would exceed the count. ``sent_at_ms`` comes
from the ``SentTimestamp`` attribute and ``receive_count`` from ``ApproximateReceiveCount``.

A body that is not a ``RunMessage`` is not returned (a warning is logged): it stays in the
queue, reappears, and reaches the DLQ after ``maxReceiveCount`` receives like any poison
message, where an operator can inspect it with the AWS tools.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.config import Settings
from shared.dal import aws_client
from shared.errors import QueueError
from shared.queue.base import QueueMessage, RunMessage

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("switchyard.queue")

DEFAULT_MAX_WORKERS = 16
MAX_BATCH = 10
MAX_WAIT_S = 20
MAX_VISIBILITY_S = 43_200  # SQS's ceiling: 12 hours
MAX_DELAY_S = 900
_ATTRIBUTES = ["SentTimestamp", "ApproximateReceiveCount"]


class SqsRunQueue:
    """The runs queue at ``queue_url``, its dead letters at ``dlq_url``.

    Either URL may be empty (an entry point that never queues builds one anyway): using a
    queue that is not configured raises ``QueueError``."""

    def __init__(
        self,
        queue_url: str,
        dlq_url: str = "",
        client: Any = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.queue_url = queue_url
        self.dlq_url = dlq_url
        self.client: Any = client or aws_client(
            "sqs", region=region, endpoint_url=endpoint_url, max_pool_connections=max_workers
        )
        self._owns_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="sqs"
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> SqsRunQueue:
        return cls(
            settings.queue_url,
            settings.dlq_url,
            region=settings.region,
            max_workers=max_workers,
        )

    def close(self) -> None:
        """Stop the thread pool (if this queue created it)."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- the RunQueue protocol -----------------------------------------------------------

    async def send(self, message: RunMessage, *, delay_s: int = 0) -> str:
        return await self._io(self._send, self._runs(), message, delay_s)

    async def receive(
        self, *, max_messages: int = 10, wait_s: float = 20.0, visibility_s: int | None = None
    ) -> list[QueueMessage]:
        return await self._io(self._receive, self._runs(), max_messages, wait_s, visibility_s)

    async def delete(self, receipt: str) -> None:
        await self._io(self._delete, self._runs(), receipt)

    async def change_visibility(self, receipt: str, timeout_s: int) -> None:
        timeout = min(max(0, int(timeout_s)), MAX_VISIBILITY_S)
        await self._io(
            self._call,
            "ChangeMessageVisibility",
            self.client.change_message_visibility,
            QueueUrl=self._runs(),
            ReceiptHandle=receipt,
            VisibilityTimeout=timeout,
        )

    async def dead_letters(self, *, max_messages: int = 10) -> list[QueueMessage]:
        return await self._io(self._receive, self._dlq(), max_messages, 0.0, None)

    async def delete_dead_letter(self, receipt: str) -> None:
        await self._io(self._delete, self._dlq(), receipt)

    async def redrive(self, message: QueueMessage) -> str:
        return await self.send(message.body)

    # ---- blocking implementations (run in the executor) -----------------------------------

    async def _io(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def _runs(self) -> str:
        if not self.queue_url:
            raise QueueError("no runs queue URL configured (SWITCHYARD_QUEUE_URL)")
        return self.queue_url

    def _dlq(self) -> str:
        if not self.dlq_url:
            raise QueueError("no dead-letter queue URL configured (SWITCHYARD_DLQ_URL)")
        return self.dlq_url

    def _call(self, operation: str, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return method(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise QueueError(
                f"SQS {operation} failed: {code}",
                details={"operation": operation, "aws_code": code},
            ) from exc
        except BotoCoreError as exc:
            raise QueueError(
                f"SQS {operation} failed: {exc}", details={"operation": operation}
            ) from exc

    def _send(self, url: str, message: RunMessage, delay_s: int) -> str:
        response = self._call(
            "SendMessage",
            self.client.send_message,
            QueueUrl=url,
            MessageBody=message.model_dump_json(exclude_defaults=True),
            DelaySeconds=min(max(0, int(delay_s)), MAX_DELAY_S),
        )
        return str(response["MessageId"])

    def _receive(
        self, url: str, max_messages: int, wait_s: float, visibility_s: int | None
    ) -> list[QueueMessage]:
        kwargs: dict[str, Any] = {
            "QueueUrl": url,
            "MaxNumberOfMessages": min(max(1, max_messages), MAX_BATCH),
            "WaitTimeSeconds": min(max(0, math.ceil(wait_s)), MAX_WAIT_S),
            "MessageSystemAttributeNames": _ATTRIBUTES,
        }
        if visibility_s is not None:
            kwargs["VisibilityTimeout"] = min(max(0, int(visibility_s)), MAX_VISIBILITY_S)
        response = self._call("ReceiveMessage", self.client.receive_message, **kwargs)
        out: list[QueueMessage] = []
        for raw in response.get("Messages", []):
            parsed = _parse(raw)
            if parsed is not None:
                out.append(parsed)
        return out

    def _delete(self, url: str, receipt: str) -> None:
        self._call("DeleteMessage", self.client.delete_message, QueueUrl=url, ReceiptHandle=receipt)


def _parse(raw: dict[str, Any]) -> QueueMessage | None:
    attributes = raw.get("Attributes", {})
    try:
        body = RunMessage.model_validate_json(raw["Body"])
    except ValidationError:
        logger.warning(
            "SQS message %s is not a run message; left for the DLQ", raw.get("MessageId")
        )
        return None
    return QueueMessage(
        body=body,
        receipt=raw["ReceiptHandle"],
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        sent_at_ms=int(attributes.get("SentTimestamp", 0)),
        message_id=raw["MessageId"],
    )


__all__ = ["SqsRunQueue"]
