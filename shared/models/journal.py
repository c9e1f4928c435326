"""Journal records: what one conditional append writes.

A record holds only what its step added: the model's response, the tool results that were
not journaled yet, or a status change. Resume replays records in order to rebuild the
conversation. ``seq`` is the seq of the record's first event, so the next record's seq is
``seq + len(events)``; appends are conditional on that seq not existing (fencing).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from shared.models.events import Event
from shared.models.run import RunError, RunStatus, Usage


class RecordKind(StrEnum):
    CREATED = "created"
    STARTED = "started"
    MODEL = "model"
    TOOLS = "tools"
    APPROVAL = "approval"
    FINISHED = "finished"


class ToolResult(BaseModel):
    step: int
    tool_use_id: str
    name: str
    content: str
    is_error: bool = False
    idempotency_key: str | None = None


class JournalRecord(BaseModel):
    seq: int
    kind: RecordKind
    at: datetime
    fence: int = 0
    step: int = 0
    model: str | None = None
    response: dict[str, Any] | None = None
    tool_results: list[ToolResult] = Field(default_factory=list)
    usage: Usage | None = None
    status: RunStatus | None = None
    output: Any = None
    error: RunError | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    events: list[Event] = Field(default_factory=list)

    def to_json(self) -> str:
        """The stored form: fields at their defaults are left out (they read back the same),
        which keeps a typical step record a few hundred bytes smaller."""
        return self.model_dump_json(exclude_defaults=True)

    @property
    def next_seq(self) -> int:
        return self.seq + max(1, len(self.events))
