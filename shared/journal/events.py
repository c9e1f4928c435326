"""Reading events out of records, shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable

from shared.models.events import Event
from shared.models.journal import JournalRecord


def events_after(records: Iterable[JournalRecord], after: int, limit: int) -> list[Event]:
    out: list[Event] = []
    for record in records:
        for event in record.events:
            if event.seq > after:
                out.append(event)
                if len(out) >= limit:
                    return out
    return out
