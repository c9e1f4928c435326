"""Events: the cursor-addressed progress record of a run.

Events are not stored on their own: each journal record carries the events its write
produced, and the record's sequence number is the seq of its first event. So the event
stream costs no extra write, and a cursor never skips or repeats an event.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class EventType(StrEnum):
    RUN_STATUS = "run.status"
    STEP_COMPLETED = "step.completed"
    TOOL_CALLED = "tool.called"
    TOOL_COMPLETED = "tool.completed"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"


class Event(BaseModel):
    seq: int
    type: EventType
    at: datetime
    data: dict[str, Any] = Field(default_factory=dict)
