"""In-memory usage counters: one process's, the reference for every backend.

Safe to share between tasks and threads: each method holds one lock and never awaits while
holding it, so one ``add`` applies all its deltas or none. Nothing expires.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date, datetime

from shared.models.usage import UsageTotals
from shared.usage.base import HourUsage, UsageDelta, require_aware
from shared.usage.counts import Counts

HourKey = tuple[datetime, str]  # (hour, agent)


class MemoryUsageCounters:
    """``UsageCounters`` in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hours: dict[str, dict[HourKey, Counts]] = {}
        self._days: dict[str, dict[date, Counts]] = {}

    async def add(self, deltas: Sequence[UsageDelta]) -> None:
        increments = [(delta, Counts.of_delta(delta)) for delta in deltas]
        with self._lock:
            for delta, counts in increments:
                hours = self._hours.setdefault(delta.tenant, {})
                hours.setdefault((delta.hour, delta.agent), Counts()).add(counts)
                days = self._days.setdefault(delta.tenant, {})
                days.setdefault(delta.day, Counts()).add(counts)

    async def day_total(self, tenant: str, day: date) -> UsageTotals:
        with self._lock:
            counts = self._days.get(tenant, {}).get(day)
            return counts.totals() if counts is not None else UsageTotals()

    async def hours(self, tenant: str, start: datetime, end: datetime) -> list[HourUsage]:
        start, end = require_aware(start, "start"), require_aware(end, "end")
        with self._lock:
            found = [
                HourUsage(hour=hour, agent=agent, totals=counts.totals())
                for (hour, agent), counts in self._hours.get(tenant, {}).items()
                if start <= hour < end
            ]
        return sorted(found, key=lambda h: (h.hour, h.agent))
