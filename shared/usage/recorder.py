"""A process's usage buffer in front of the shared counters, and its view of a day's spend.

A busy worker makes many model calls a second; writing the counters at each would cost two
writes per call, all on the tenant's day total. So ``record`` only adds to a buffer in memory
(merged per (tenant, hour, agent)), and ``flush`` writes the buffer at most once per
``flush_s`` (each counter once however many steps it merges), or at once with ``force``.

A flush that fails (``UsageStoreError``) is logged, not raised: the runtime flushes after
each step and a run must not fail because its usage could not be counted. Its deltas go back
into the buffer, merged with whatever was recorded meanwhile, and are written by a later
flush (no earlier than ``flush_s`` after the failed one, so a failing store is not hammered
once per step). ``add`` is not a transaction, so when a flush fails part-way the counters it
did write are written again by the retry: a failure while DynamoDB is failing can overcount
(by that flush's deltas at most), never undercount. Other errors (bugs) propagate, with the
deltas back in the buffer too. A process that crashes loses its unflushed deltas: the
counters undercount by at most one flush interval of that process (the runs' own usage, in
the journal, stays exact).

``spent_today(tenant)`` is what the budget is checked against before each model call: the
tenant's stored total of the current UTC day (re-read at most once per ``flush_s`` per tenant,
cached in between), plus what this process has spent that the cached total cannot include:
its buffer, its flushes under way, and what it has written since the cached total was read.
A flush that lands while that total is being read may be counted twice until the next
re-read; budget checks err on the side of stopping. Other processes' spend shows up within
``flush_s`` of their flush.

Every method is safe to call from many tasks at once, on one event loop or several threads'
loops (the API serves each thread on its own loop): state changes under one
``threading.Lock``, never held across an ``await``. Flushes are not serialized: each takes
the buffer as it is and leaves an empty one for records made meanwhile, and the stores' adds
commute, so concurrent flushes write disjoint deltas.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from shared.errors import UsageStoreError
from shared.models.run import Usage
from shared.usage.base import UsageCounters, UsageDelta, hour_of
from shared.usage.counts import Counts, nanos_to_usd, usd_to_nanos

logger = logging.getLogger("switchyard.usage")

BufferKey = tuple[str, datetime, str]  # (tenant, hour, agent)
TenantDay = tuple[str, date]


@dataclass(frozen=True)
class _DayView:
    """A tenant's stored day total as read at ``read_at`` (clock time the read started),
    and how much this process had written to that day by then."""

    day: date
    stored_nanos: int
    read_at: float
    written_nanos: int


class UsageRecorder:
    """Buffers usage per process and flushes it to ``counters`` (see the module)."""

    def __init__(
        self, counters: UsageCounters, *, flush_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if flush_s <= 0:
            raise ValueError("flush_s must be positive")
        self.counters = counters
        self.flush_s = flush_s
        self._clock = clock
        self._lock = threading.Lock()
        self._buffer: dict[BufferKey, Counts] = {}
        # Cost of deltas taken by flushes still writing, per (tenant, day).
        self._in_flight: dict[TenantDay, int] = {}
        # Cost this process has written, per (tenant, day), since it started (today's only).
        self._written: dict[TenantDay, int] = {}
        self._views: dict[str, _DayView] = {}
        # The first flush waits an interval too: a process's first steps are batched as well.
        self._last_flush = clock()

    def record(
        self,
        *,
        tenant: str,
        agent: str,
        usage: Usage,
        at: datetime,
        steps: int = 1,
        runs: int = 0,
    ) -> None:
        """Buffer one step's usage (``at``: an aware datetime, the step's time). ``runs=1``
        for a run's first step, so that each run is counted once."""
        delta = UsageDelta(
            tenant=tenant,
            agent=agent,
            hour=hour_of(at),
            runs=runs,
            steps=steps,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cost_usd=usage.cost_usd,
        )
        counts = Counts.of_delta(delta)
        with self._lock:
            self._buffer.setdefault((tenant, delta.hour, agent), Counts()).add(counts)

    async def flush(self, *, force: bool = False) -> None:
        """Write the buffer if ``force`` or if ``flush_s`` has passed since the last flush
        that wrote; nothing to write, nothing done. Never raises ``UsageStoreError``: the
        deltas stay buffered (see the module)."""
        with self._lock:
            now = self._clock()
            if not self._buffer or (not force and now - self._last_flush < self.flush_s):
                return
            batch, self._buffer = self._buffer, {}
            self._last_flush = now
            for key, counts in batch.items():
                _bump(self._in_flight, _tenant_day(key), counts.cost_nanos)
        # Shielded: a flush cancelled by its caller (a worker stopping) does not stop the
        # write, whose threads go on anyway; the batch is settled by how the write ended,
        # so a write that landed is never put back and written again.
        write = asyncio.ensure_future(
            self.counters.add([counts.delta(*key) for key, counts in batch.items()])
        )
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            write.add_done_callback(lambda done: self._settle(batch, written=_landed(done)))
            raise
        except UsageStoreError as exc:
            logger.warning(
                "usage counters not written, kept for the next flush: %s",
                exc.message,
                extra={"deltas": len(batch)},
            )
            self._settle(batch, written=False)
        except BaseException:
            self._settle(batch, written=False)
            raise
        else:
            self._settle(batch, written=True)

    async def spent_today(self, tenant: str) -> float:
        """USD the tenant has spent this UTC day, as far as this process can tell (see the
        module). ``UsageStoreError`` if the stored total had to be read and could not be."""
        now = self._clock()
        today = _utc_day(now)
        with self._lock:
            view = self._views.get(tenant)
            current = view if view is not None and view.day == today else None
            stale = current is None or now - current.read_at >= self.flush_s
            if stale and current is not None:
                # Claimed: callers until the read lands use the view as it was.
                self._views[tenant] = _DayView(
                    today, current.stored_nanos, now, current.written_nanos
                )
            written = self._written.get((tenant, today), 0)
        fresh: _DayView | None = None
        if stale:
            try:
                total = await self.counters.day_total(tenant, today)
            except BaseException:
                if current is not None:
                    with self._lock:  # unclaimed: the next caller tries again
                        claimed = self._views.get(tenant)
                        if claimed is not None and claimed.read_at == now:
                            self._views[tenant] = current
                raise
            fresh = _DayView(today, usd_to_nanos(total.cost_usd), now, written)
        with self._lock:
            latest = self._views.get(tenant)
            # A slower read that started earlier must not replace a newer one.
            if fresh is not None and (
                latest is None
                or latest.day < today
                or (latest.day == today and latest.read_at <= now)
            ):
                self._views[tenant] = latest = fresh
            if latest is None or latest.day != today:
                latest = fresh or current
            assert latest is not None  # read above when there was no view of today
            return nanos_to_usd(self._spent(latest, tenant, today))

    def pending(self) -> list[UsageDelta]:
        """The buffered deltas (not those a flush is writing), e.g. to log at shutdown."""
        with self._lock:
            return [counts.delta(*key) for key, counts in self._buffer.items()]

    # ---- under the lock ----------------------------------------------------------------------

    def _settle(self, batch: dict[BufferKey, Counts], *, written: bool) -> None:
        with self._lock:
            for key, counts in batch.items():
                tenant_day = _tenant_day(key)
                _bump(self._in_flight, tenant_day, -counts.cost_nanos)
                if written:
                    _bump(self._written, tenant_day, counts.cost_nanos)
                else:
                    self._buffer.setdefault(key, Counts()).add(counts)
            # Only the current day's writes are ever compared with a stored total.
            today = _utc_day(self._clock())
            for tenant_day in [k for k in self._written if k[1] < today]:
                del self._written[tenant_day]

    def _spent(self, view: _DayView, tenant: str, today: date) -> int:
        key = (tenant, today)
        buffered = sum(
            counts.cost_nanos for k, counts in self._buffer.items() if _tenant_day(k) == key
        )
        written_since = self._written.get(key, 0) - view.written_nanos
        return view.stored_nanos + written_since + self._in_flight.get(key, 0) + buffered


def _landed(write: asyncio.Future[None]) -> bool:
    return not write.cancelled() and write.exception() is None


def _tenant_day(key: BufferKey) -> TenantDay:
    return key[0], key[1].date()


def _bump(sums: dict[TenantDay, int], key: TenantDay, amount: int) -> None:
    value = sums.get(key, 0) + amount
    if value:
        sums[key] = value
    else:
        sums.pop(key, None)


def _utc_day(epoch_s: float) -> date:
    return datetime.fromtimestamp(epoch_s, UTC).date()
