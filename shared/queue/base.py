"""The queue the API and triggers put runs on and workers take them from.

At-least-once, like SQS: a received message is invisible for its visibility timeout and
reappears unless deleted; after ``max_receive_count`` receives it moves to the dead-letter
queue. Workers delete a message only once its run is journaled as finished or paused.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

from shared.models.job import AgentDispatch


def stage_run_id(task_token: str) -> str:
    """The run an agent stage's dispatch starts: derived from its task token, so every
    delivery of the message (and no other) names the same run."""
    digest = hashlib.sha256(task_token.encode()).digest()[:16]
    return "run_" + base64.b32encode(digest).decode().rstrip("=")


class RunMessage(BaseModel):
    """The body: which run to execute.

    Pipeline stages add a task token: ``stage`` (an agent stage's dispatch, whose run the
    first receiver creates, its id derived from the token) or ``resume`` (a paused stage run's
    new token, attached to its attempt; nothing to execute)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run_id: str
    task_token: str | None = None
    stage: AgentDispatch | None = None
    resume: bool = False

    @model_validator(mode="before")
    @classmethod
    def _stage_run_id(cls, value: Any) -> Any:
        if isinstance(value, dict) and not value.get("run_id") and value.get("stage"):
            token = value.get("task_token")
            if isinstance(token, str) and token:
                return {**value, "run_id": stage_run_id(token)}
        return value

    @model_validator(mode="after")
    def _token_for_stages(self) -> RunMessage:
        if (self.stage is not None or self.resume) and not self.task_token:
            raise ValueError("a stage message needs its task token")
        return self


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
