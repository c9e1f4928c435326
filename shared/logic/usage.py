"""Usage: what a tenant's agents used (runs, steps, tokens, cost) over a window, grouped.

The use case behind ``GET /v1/usage``. It reads the tenant's hour counters
(``shared.usage``): the window is counted in whole UTC hours, ``start`` rounded down and
``end`` rounded up to the hour, and the report gives that effective window. Each hour counts
what the agents' steps used in it, whichever run they belong to and wherever it started; a
run counts in ``runs`` once, in the hour of its first model call (whoever records it with
``runs=1``). One read of the counters whatever the number of runs (on DynamoDB one Query, a page
per MB of counters: a 31-day window of ten agents is about two). Only the tenant's own
counters are read.

Sums are exact (integer nano-dollars, ``shared.usage.counts``), so a total does not depend on
how the hours were added up.
"""

from __future__ import annotations

from datetime import datetime

from shared.models.usage import GroupBy, UsageGroup, UsageReport
from shared.usage.base import UsageCounters, hour_ceil, hour_of
from shared.usage.counts import Counts


async def usage_report(
    counters: UsageCounters,
    tenant: str,
    *,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
) -> UsageReport:
    """The tenant's usage in the hours from ``start`` (rounded down) to ``end`` (rounded
    up), aware datetimes, grouped by agent or into the tenant's one group."""
    first, stop = hour_of(start), hour_ceil(end)
    groups: dict[str, Counts] = {}
    total = Counts()
    for hour in await counters.hours(tenant, first, stop):
        counts = Counts.of_totals(hour.totals)
        key = hour.agent if group_by is GroupBy.AGENT else tenant
        groups.setdefault(key, Counts()).add(counts)
        total.add(counts)
    used = [(key, counts) for key, counts in groups.items() if not counts.is_zero]
    # Ordered on the exact cost, so that equal costs tie and fall back to the key.
    used.sort(key=lambda item: (-item[1].cost_nanos, item[0]))
    return UsageReport(
        from_=first,
        to=stop,
        group_by=group_by,
        groups=[UsageGroup(key=key, **counts.totals().model_dump()) for key, counts in used],
        total=total.totals(),
    )
