"""Event payloads. Small by design: previews, never full tool output, never secrets."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from shared.models.events import Event, EventType
from shared.models.journal import ToolResult

PREVIEW_CHARS = 200


def preview(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


class EventBuilder:
    """Numbers events from a record's seq so the record's seq is its first event's."""

    def __init__(self, first_seq: int, at: datetime) -> None:
        self._next = first_seq
        self._at = at
        self.events: list[Event] = []

    def add(self, type_: EventType, **data: Any) -> None:
        self.events.append(Event(seq=self._next, type=type_, at=self._at, data=data))
        self._next += 1

    def tool_results(self, results: list[ToolResult]) -> None:
        for r in results:
            self.add(
                EventType.TOOL_COMPLETED,
                step=r.step,
                tool_use_id=r.tool_use_id,
                name=r.name,
                is_error=r.is_error,
                output_chars=len(r.content),
            )
