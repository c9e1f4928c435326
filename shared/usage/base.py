"""Usage counters: what a tenant's agents used, per UTC hour, and per UTC day in total.

A ``UsageDelta`` is an increment of one (tenant, hour, agent) counter. ``UsageCounters``
stores the counters: ``add`` increments each delta's hour counter and the tenant's day total
(the day its hour falls in), by addition in the store (increments from many processes
commute, nothing is read first), ``hours`` reads hour counters back for ``GET /v1/usage``
and ``day_total`` the day's total for the daily budget.

Counts are exact: every backend keeps cost as integer nano-dollars (``shared.usage.counts``),
so any number of increments in any order sums to the same total.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.models.usage import UsageTotals

HOUR = timedelta(hours=1)


def require_aware(value: datetime, name: str) -> datetime:
    """``value`` in UTC; a naive datetime is refused (``ValueError``): which hour it names
    would depend on the machine's time zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def hour_of(at: datetime) -> datetime:
    """The UTC hour ``at`` falls in (an aware datetime)."""
    return require_aware(at, "at").replace(minute=0, second=0, microsecond=0)


def hour_ceil(at: datetime) -> datetime:
    """The first UTC hour boundary at or after ``at`` (an aware datetime)."""
    floor = hour_of(at)
    return floor if floor == require_aware(at, "at") else floor + HOUR


class UsageDelta(BaseModel):
    """An increment of one agent's usage counter for one UTC hour (counts >= 0)."""

    model_config = ConfigDict(frozen=True)

    tenant: str = Field(min_length=1)
    agent: str = Field(min_length=1)
    hour: datetime = Field(description="Aware, converted to UTC, on the hour")
    runs: int = Field(default=0, ge=0)
    steps: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cost_usd: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @field_validator("hour")
    @classmethod
    def _on_the_hour(cls, value: datetime) -> datetime:
        hour = require_aware(value, "hour")
        if hour != hour_of(hour):
            raise ValueError("hour must be on the hour (in UTC): truncate it with hour_of")
        return hour

    @property
    def day(self) -> date:
        """The UTC day whose total this delta adds to."""
        return self.hour.date()


class HourUsage(BaseModel):
    """One agent's counter for one UTC hour."""

    model_config = ConfigDict(frozen=True)

    hour: datetime
    agent: str
    totals: UsageTotals


class UsageCounters(Protocol):
    """The counters of every tenant. Storage failures are ``UsageStoreError``."""

    async def add(self, deltas: Sequence[UsageDelta]) -> None:
        """Add each delta to its (tenant, hour, agent) counter and to its tenant's total of
        the UTC day of its hour, creating counters at zero. Each counter is incremented
        atomically (concurrent adds never lose one another's counts), but a failed call may
        have applied some of its counters and not others."""

    async def day_total(self, tenant: str, day: date) -> UsageTotals:
        """The tenant's total for the UTC day (zeros if nothing was added)."""

    async def hours(self, tenant: str, start: datetime, end: datetime) -> list[HourUsage]:
        """The tenant's hour counters with ``start <= hour < end`` (aware datetimes; naive
        ones are ``ValueError``), by hour, then agent."""
