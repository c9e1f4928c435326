"""DynamoDB usage counters, in the journal's single table (layout in ``shared.dal.schema``).

One partition per tenant, without the ``by_tenant`` index keys (so no counter ever shows in
a run list):

- ``USAGE#{tenant}`` / ``H#{hour}#{agent}``: one agent's counts for one UTC hour, with
  ``tenant``, ``agent`` and ``hour`` (ISO, ``Z``) as plain attributes for reading back;
- ``USAGE#{tenant}`` / ``D#{yyyy-mm-dd}``: the tenant's total for one UTC day, with
  ``tenant`` and ``day``.

The counts are ``runs``, ``steps``, the four token counts and ``cost_nanos`` (integer
nano-dollars: DynamoDB adds integers exactly, whereas float dollars added in whatever order
processes flush would drift). ``add`` first merges its deltas per item, then writes each item
once: one UpdateItem whose ``ADD`` increments the counts (creating the item at zero), with no
read and no condition, so writes from every process commute and none is ever refused. The
writes of one ``add`` run concurrently and are not a transaction: when some fail, the others
stay applied (``UsageStoreError`` is raised once all have finished).

Reads are strongly consistent, so a flushed count is visible to the next read:
``day_total`` is one GetItem; ``hours`` one Query of the tenant's partition for the sort-key
range of the hours asked (every page: a 31-day window of 10 agents is about 7,500 small
items, 2 pages).

Expiry (``expires_at``): ``retention_days`` after the end of the counter's hour or day, the
same value at every write. Tied to the period rather than to the write, a counter lives as
long whoever wrote it last. The retention is ``SWITCHYARD_RETENTION_DAYS`` but at least
``MIN_RETENTION_DAYS`` (35): a report's window reaches back 31 days (plus the hour it is
rounded down to), and the days beyond that leave room for a window read near the boundary;
DynamoDB deletes expired items lazily, never early. So, unlike runs, counters may outlive the
journal's retention; runs deleted by TTL still count in the hours they used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ParamSpec, TypeVar

from shared.config import Settings
from shared.dal.dynamodb import RunTable
from shared.dal.schema import (
    PK,
    SK,
    TTL_ATTRIBUTE,
    usage_day_sk,
    usage_hour_sk,
    usage_hours_between,
    usage_pk,
)
from shared.errors import JournalError, UsageStoreError
from shared.journal.dynamodb import DAY_S, BlockingCalls
from shared.models.usage import UsageTotals
from shared.usage.base import HOUR, HourUsage, UsageDelta, hour_ceil, hour_of, require_aware
from shared.usage.counts import COUNT_NAMES, Counts

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WORKERS = 8
MIN_RETENTION_DAYS = 35

HourItem = tuple[str, datetime, str]  # (tenant, hour, agent)
DayItem = tuple[str, date]  # (tenant, day)

# ADD of every count; the placeholders are the attribute names (none is a reserved word
# here, but placeholders keep it so should the list grow).
_ADD = "ADD " + ", ".join(f"#{name} :{name}" for name in COUNT_NAMES)


class DynamoUsageCounters:
    """``UsageCounters`` on the Switchyard table (``RunTable``)."""

    def __init__(
        self,
        table: RunTable,
        *,
        retention_days: int = MIN_RETENTION_DAYS,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.table = table
        self.retention_days = max(retention_days, MIN_RETENTION_DAYS)
        self._io = BlockingCalls(executor, max_workers=max_workers, thread_name_prefix="usage")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> DynamoUsageCounters:
        """The counters on the deployment's table, with a default boto3 client whose
        connection pool matches the thread pool."""
        table = RunTable(
            settings.table_name, region=settings.region, max_pool_connections=max_workers
        )
        return cls(table, retention_days=settings.retention_days, max_workers=max_workers)

    def close(self) -> None:
        """Stop the thread pool (if these counters created it)."""
        self._io.close()

    # ---- the UsageCounters protocol ----------------------------------------------------------

    async def add(self, deltas: Sequence[UsageDelta]) -> None:
        hours, days = _merged(deltas)
        writes = [
            self._call(self._add_hour, tenant, hour, agent, counts)
            for (tenant, hour, agent), counts in hours.items()
        ]
        writes += [
            self._call(self._add_day, tenant, day, counts) for (tenant, day), counts in days.items()
        ]
        # Every write is waited for before raising, so that when this returns or raises no
        # write of it is still under way (the caller may keep the deltas to try again).
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def day_total(self, tenant: str, day: date) -> UsageTotals:
        item = await self._call(self.table.get, {PK: usage_pk(tenant), SK: usage_day_sk(day)})
        return Counts.of_item(item).totals() if item is not None else UsageTotals()

    async def hours(self, tenant: str, start: datetime, end: datetime) -> list[HourUsage]:
        first = hour_ceil(require_aware(start, "start"))
        last = hour_of(require_aware(end, "end") - timedelta(microseconds=1))
        if first > last:
            return []
        items = await self._call(
            self.table.query,
            PK,
            usage_pk(tenant),
            sort_name=SK,
            between=usage_hours_between(first, last),
        )
        found = [
            HourUsage(
                hour=datetime.fromisoformat(item["hour"]),
                agent=item["agent"],
                totals=Counts.of_item(item).totals(),
            )
            for item in items
        ]
        # Escaping can order agents differently from their names: sorted as the memory
        # backend sorts them.
        return sorted(found, key=lambda h: (h.hour, h.agent))

    # ---- blocking implementations (run in the executor) --------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await self._io(fn, *args, **kwargs)
        except JournalError as exc:  # RunTable's errors, as the counters'
            raise UsageStoreError(f"usage counters: {exc.message}", details=exc.details) from exc

    def _add_hour(self, tenant: str, hour: datetime, agent: str, counts: Counts) -> None:
        key = {PK: usage_pk(tenant), SK: usage_hour_sk(hour, agent)}
        labels = {"tenant": tenant, "agent": agent, "hour": _iso_hour(hour)}
        self._add(key, counts, labels, expires=hour + HOUR)

    def _add_day(self, tenant: str, day: date, counts: Counts) -> None:
        key = {PK: usage_pk(tenant), SK: usage_day_sk(day)}
        labels = {"tenant": tenant, "day": day.isoformat()}
        end = datetime.combine(day, time(), tzinfo=UTC) + timedelta(days=1)
        self._add(key, counts, labels, expires=end)

    def _add(
        self, key: Mapping[str, str], counts: Counts, labels: Mapping[str, str], expires: datetime
    ) -> None:
        names = {f"#{name}": name for name in COUNT_NAMES}
        values: dict[str, Any] = {f":{name}": value for name, value in counts.as_dict().items()}
        sets = [f"#{name} = :{name}" for name in (*labels, "ttl")]
        names.update({f"#{name}": name for name in labels})
        values.update({f":{name}": value for name, value in labels.items()})
        names["#ttl"] = TTL_ATTRIBUTE
        values[":ttl"] = int(expires.timestamp()) + self.retention_days * DAY_S
        self.table.update(
            key,
            update=f"{_ADD} SET {', '.join(sets)}",
            names=names,
            values=values,
            return_values="NONE",
        )


def _merged(deltas: Sequence[UsageDelta]) -> tuple[dict[HourItem, Counts], dict[DayItem, Counts]]:
    """The increments per item: one write per hour counter and per day total touched."""
    hours: dict[HourItem, Counts] = {}
    days: dict[DayItem, Counts] = {}
    for delta in deltas:
        counts = Counts.of_delta(delta)
        hours.setdefault((delta.tenant, delta.hour, delta.agent), Counts()).add(counts)
        days.setdefault((delta.tenant, delta.day), Counts()).add(counts)
    return hours, days


def _iso_hour(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


__all__ = ["MIN_RETENTION_DAYS", "DynamoUsageCounters"]
