"""Exact sums of usage: integer counts, cost in integer nano-dollars.

Float dollars added in a different order (or by a different number of processes) give
different totals; integers do not. A cost enters as ``round(cost_usd * 1e9)`` (half a
nano-dollar of rounding per increment at most, far below any model call's price) and leaves
as float dollars rounded to 10 digits, as ``Usage.__add__`` rounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from shared.models.usage import UsageTotals
from shared.usage.base import UsageDelta

NANOS_PER_USD = 1_000_000_000
_COST_DIGITS = 10  # as ``Usage.__add__`` rounds

# The counts of a counter, as its store names them (the DynamoDB item's attributes).
COUNT_NAMES = (
    "runs",
    "steps",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_nanos",
)


def usd_to_nanos(cost_usd: float) -> int:
    return round(cost_usd * NANOS_PER_USD)


def nanos_to_usd(nanos: int) -> float:
    return round(nanos / NANOS_PER_USD, _COST_DIGITS)


@dataclass(slots=True)
class Counts:
    """A mutable exact sum (one counter, a group of a report, a buffer entry)."""

    runs: int = 0
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_nanos: int = 0

    @classmethod
    def of_delta(cls, delta: UsageDelta) -> Counts:
        return cls(
            runs=delta.runs,
            steps=delta.steps,
            input_tokens=delta.input_tokens,
            output_tokens=delta.output_tokens,
            cache_read_input_tokens=delta.cache_read_input_tokens,
            cache_creation_input_tokens=delta.cache_creation_input_tokens,
            cost_nanos=usd_to_nanos(delta.cost_usd),
        )

    @classmethod
    def of_totals(cls, totals: UsageTotals) -> Counts:
        return cls(
            runs=totals.runs,
            steps=totals.steps,
            input_tokens=totals.input_tokens,
            output_tokens=totals.output_tokens,
            cache_read_input_tokens=totals.cache_read_input_tokens,
            cache_creation_input_tokens=totals.cache_creation_input_tokens,
            cost_nanos=usd_to_nanos(totals.cost_usd),
        )

    @classmethod
    def of_item(cls, item: Mapping[str, Any]) -> Counts:
        """From a stored item: a count it lacks is zero."""
        return cls(**{name: int(item.get(name, 0)) for name in COUNT_NAMES})

    def add(self, other: Counts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        """By ``COUNT_NAMES``."""
        return {name: getattr(self, name) for name in COUNT_NAMES}

    @property
    def is_zero(self) -> bool:
        return not any(self.as_dict().values())

    def totals(self) -> UsageTotals:
        return UsageTotals(
            runs=self.runs,
            steps=self.steps,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cost_usd=nanos_to_usd(self.cost_nanos),
        )

    def delta(self, tenant: str, hour: datetime, agent: str) -> UsageDelta:
        """These counts as an increment of (tenant, hour, agent): exact, since a cost of
        whole nano-dollars survives the trip through float dollars and back."""
        return UsageDelta(
            tenant=tenant,
            agent=agent,
            hour=hour,
            runs=self.runs,
            steps=self.steps,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cost_usd=self.cost_nanos / NANOS_PER_USD,
        )
