"""The queue the API and triggers put runs on and workers take them from.

At-least-once, like SQS: a received message is invisible for its visibility timeout and
reappears unless deleted; after ``max_receive_count`` receives it moves to the dead-letter
queue. Workers delete a message only once its run is journaled as finished or paused.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict


class RunMessage(BaseModel):
    """The body: which run to execute (and, for pipeline stages, the task token to answer)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    task_token: str | None = None


class QueueMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    body: RunMessage
    receipt: str
    receive_count: int
    sent_at_ms: int
    message_id: str


class RunQueue(Protocol):
    async def send(self, message: RunMessage, *, delay_s: int = 0) -> str:
        """Enqueue; returns the message id."""

    async def receive(
        self, *, max_messages: int = 10, wait_s: float = 20.0, visibility_s: int | None = None
    ) -> list[QueueMessage]:
        """Long-poll up to ``wait_s`` for at most ``max_messages`` (≤ 10)."""

    async def delete(self, receipt: str) -> None:
        """Acknowledge a received message."""

    async def change_visibility(self, receipt: str, timeout_s: int) -> None:
        """Extend (heartbeat) or shorten (0 = release now) a received message's invisibility."""

    async def dead_letters(self, *, max_messages: int = 10) -> list[QueueMessage]:
        """Receive from the dead-letter queue (for the DLQ handler and `dlq list`)."""

    async def delete_dead_letter(self, receipt: str) -> None:
        """Acknowledge a dead letter."""

    async def redrive(self, message: QueueMessage) -> str:
        """Send a dead letter's body back to the runs queue."""
