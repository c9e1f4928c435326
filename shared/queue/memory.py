"""In-memory queue with SQS semantics (visibility, receive counts, DLQ), for tests and dev."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import QueueError
from shared.queue.base import QueueMessage, RunMessage


@dataclass
class _Entry:
    message_id: str
    body: RunMessage
    sent_at_ms: int
    visible_at: float
    receive_count: int = 0
    receipt: str | None = None


class MemoryQueue:
    def __init__(
        self,
        *,
        visibility_s: int = 30,
        max_receive_count: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.visibility_s = visibility_s
        self.max_receive_count = max_receive_count
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._dead: dict[str, _Entry] = {}
        self._order = itertools.count()
        self._arrived = asyncio.Event()

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    async def send(self, message: RunMessage, *, delay_s: int = 0) -> str:
        message_id = str(uuid.uuid4())
        self._entries[message_id] = _Entry(
            message_id, message, self._now_ms(), self._clock() + delay_s
        )
        self._arrived.set()
        return message_id

    def _take(self, max_messages: int, visibility_s: int) -> list[QueueMessage]:
        now = self._clock()
        out: list[QueueMessage] = []
        for entry in list(self._entries.values()):
            if len(out) >= max_messages:
                break
            if entry.visible_at > now:
                continue
            if entry.receive_count >= self.max_receive_count:
                # Like SQS redrive: moved to the DLQ when a receive would exceed the count.
                del self._entries[entry.message_id]
                entry.receipt = None
                entry.visible_at = now
                self._dead[entry.message_id] = entry
                continue
            entry.receive_count += 1
            entry.receipt = f"{entry.message_id}:{next(self._order)}"
            entry.visible_at = now + visibility_s
            out.append(_view(entry))
        return out

    async def receive(
        self, *, max_messages: int = 10, wait_s: float = 20.0, visibility_s: int | None = None
    ) -> list[QueueMessage]:
        visibility = self.visibility_s if visibility_s is None else visibility_s
        deadline = self._clock() + wait_s
        while True:
            taken = self._take(max_messages, visibility)
            if taken or self._clock() >= deadline:
                return taken
            self._arrived.clear()
            # Wake on a send, or poll again soon for messages becoming visible.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=min(0.05, wait_s))

    def _by_receipt(self, receipt: str, pool: dict[str, _Entry]) -> _Entry:
        for entry in pool.values():
            if entry.receipt == receipt:
                return entry
        raise QueueError("receipt handle is not current (the message was received again)")

    async def delete(self, receipt: str) -> None:
        entry = self._by_receipt(receipt, self._entries)
        del self._entries[entry.message_id]

    async def change_visibility(self, receipt: str, timeout_s: int) -> None:
        entry = self._by_receipt(receipt, self._entries)
        entry.visible_at = self._clock() + timeout_s
        if timeout_s == 0:
            self._arrived.set()

    async def dead_letters(self, *, max_messages: int = 10) -> list[QueueMessage]:
        out = []
        for entry in list(self._dead.values())[:max_messages]:
            entry.receipt = f"{entry.message_id}:{next(self._order)}"
            out.append(_view(entry))
        return out

    async def delete_dead_letter(self, receipt: str) -> None:
        entry = self._by_receipt(receipt, self._dead)
        del self._dead[entry.message_id]

    async def redrive(self, message: QueueMessage) -> str:
        return await self.send(message.body)

    def depth(self) -> int:
        return len(self._entries)


def _view(entry: _Entry) -> QueueMessage:
    assert entry.receipt is not None
    return QueueMessage(
        body=entry.body,
        receipt=entry.receipt,
        receive_count=entry.receive_count,
        sent_at_ms=entry.sent_at_ms,
        message_id=entry.message_id,
    )
