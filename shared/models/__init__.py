"""Pydantic models shared by every layer (API, runtime, journal)."""

from shared.models.events import Event, EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.messages import ModelRequest, ModelResponse, ToolSpec
from shared.models.run import Lease, Run, RunError, RunStatus, Shape, Usage

__all__ = [
    "Event",
    "EventType",
    "JournalRecord",
    "Lease",
    "ModelRequest",
    "ModelResponse",
    "RecordKind",
    "Run",
    "RunError",
    "RunStatus",
    "Shape",
    "ToolSpec",
    "Usage",
]
