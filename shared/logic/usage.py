"""Usage: what a tenant's runs used (tokens, steps, cost) over a window, grouped.

The use case behind ``GET /v1/usage``. It reads the tenant's runs through the journal's
``list_runs`` (the tenant's index, newest first), skips those created at or after ``end``,
stops at the first one created before ``start``, and reads each run in between for its usage
(the index carries no usage): one index page per ``PAGE_SIZE`` runs from now back to
``start``, plus one run read per run in the window (more for a run whose input or output
overflowed to S3: the journal has no usage-only read). A ``running`` run's usage is read live
from its journal, as ``GET /v1/runs/{run_id}`` shows it; any other run's is the usage on its
run item (final once it has finished).

A report reads at most ``max_runs`` runs between now and ``start``; past that it is refused
(``ValidationFailedError``) rather than answered partially or left to time out. Only the
tenant's own runs are ever read, and only those the journal still holds (its retention).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from shared.errors import RunNotFoundError, ValidationFailedError
from shared.journal.base import Journal
from shared.models.run import Run, RunStatus, RunSummary
from shared.models.usage import GroupBy, UsageGroup, UsageReport, UsageTotals
from shared.runtime.state import replay

PAGE_SIZE = 100
MAX_RUNS = 10_000
READ_CONCURRENCY = 16
_COST_DIGITS = 10  # as ``Usage.__add__`` rounds


async def usage_report(
    journal: Journal,
    tenant: str,
    *,
    group_by: GroupBy,
    start: datetime,
    end: datetime,
    max_runs: int | None = None,
) -> UsageReport:
    """The tenant's usage of runs created in ``[start, end)`` (aware datetimes), grouped.
    ``max_runs`` defaults to ``MAX_RUNS``. Runs are summed page by page, never all held."""
    limit = MAX_RUNS if max_runs is None else max_runs
    tally = Tally(group_by)
    seen = 0
    cursor: str | None = None
    while True:
        page = await journal.list_runs(tenant, limit=PAGE_SIZE, cursor=cursor)
        wanted: list[RunSummary] = []
        reached_start = False
        for summary in page.runs:
            if summary.created_at < start:
                reached_start = True
                break
            seen += 1
            if seen > limit:
                raise ValidationFailedError(
                    f"more than {limit} runs were created between from and now: "
                    "narrow the window or move it closer to now",
                    details={"max_runs": limit},
                )
            if summary.created_at < end:
                wanted.append(summary)
        for run in await _read_runs(journal, tenant, wanted):
            tally.add(run)
        if reached_start or page.next_cursor is None:
            return tally.report(start, end)
        cursor = page.next_cursor


class Tally:
    """Running sums per key (the agent or the tenant) and overall."""

    def __init__(self, group_by: GroupBy) -> None:
        self.group_by = group_by
        self.groups: dict[str, UsageTotals] = {}
        self.total = UsageTotals()

    def add(self, run: Run) -> None:
        key = run.agent if self.group_by is GroupBy.AGENT else run.tenant
        self.groups[key] = _plus(self.groups.get(key, UsageTotals()), run)
        self.total = _plus(self.total, run)

    def report(self, start: datetime, end: datetime) -> UsageReport:
        """Groups by cost descending, then key."""
        ordered = sorted(self.groups.items(), key=lambda item: (-item[1].cost_usd, item[0]))
        return UsageReport(
            from_=start,
            to=end,
            group_by=self.group_by,
            groups=[UsageGroup(key=key, **totals.model_dump()) for key, totals in ordered],
            total=self.total,
        )


def _plus(totals: UsageTotals, run: Run) -> UsageTotals:
    usage = run.usage
    return UsageTotals(
        runs=totals.runs + 1,
        steps=totals.steps + run.steps,
        input_tokens=totals.input_tokens + usage.input_tokens,
        output_tokens=totals.output_tokens + usage.output_tokens,
        cache_read_input_tokens=totals.cache_read_input_tokens + usage.cache_read_input_tokens,
        cache_creation_input_tokens=totals.cache_creation_input_tokens
        + usage.cache_creation_input_tokens,
        cost_usd=round(totals.cost_usd + usage.cost_usd, _COST_DIGITS),
    )


async def _read_runs(journal: Journal, tenant: str, summaries: list[RunSummary]) -> list[Run]:
    gate = asyncio.Semaphore(READ_CONCURRENCY)

    async def read(run_id: str) -> Run | None:
        async with gate:
            try:
                run = await journal.get_run(run_id)
            except RunNotFoundError:  # expired (retention) since it was listed
                return None
            if run.status is RunStatus.RUNNING:
                state = replay(await journal.records(run_id))
                run = run.model_copy(update={"steps": state.step, "usage": state.usage})
            return run

    runs = await asyncio.gather(*(read(s.run_id) for s in summaries))
    # The index is the tenant's; checked again so that nothing else could ever be counted.
    return [run for run in runs if run is not None and run.tenant == tenant]
