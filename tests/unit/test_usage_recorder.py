"""The per-process usage buffer (``shared.usage.recorder.UsageRecorder``): buffering and
merging, the flush interval on an injected clock, failed writes, and the day's spend that
budgets are checked against."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from threading import Thread

import pytest
from pydantic import ValidationError

from shared.config import Settings
from shared.errors import UsageStoreError
from shared.logic.service import Services
from shared.models.run import Usage
from shared.models.usage import UsageTotals
from shared.usage import (
    HourUsage,
    MemoryUsageCounters,
    UsageDelta,
    UsageRecorder,
    build_usage_recorder,
    hour_ceil,
    hour_of,
)
from shared.wiring import build_services

AT = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
H10 = datetime(2026, 11, 20, 10, tzinfo=UTC)
DAY = date(2026, 11, 20)
FLUSH_S = 5.0


@dataclass
class Clock:
    now: float = AT.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Spy:
    """Memory counters that record each call, and can fail or hold a write."""

    store: MemoryUsageCounters = field(default_factory=MemoryUsageCounters)
    adds: list[list[UsageDelta]] = field(default_factory=list)
    day_reads: list[tuple[str, date]] = field(default_factory=list)
    fail: bool = False
    fail_reads: bool = False
    gate: asyncio.Event | None = None  # an add waits for it, when set
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def add(self, deltas: Sequence[UsageDelta]) -> None:
        self.adds.append(list(deltas))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise UsageStoreError("usage counters: DynamoDB is down")
        await self.store.add(deltas)

    async def day_total(self, tenant: str, day: date) -> UsageTotals:
        self.day_reads.append((tenant, day))
        if self.fail_reads:
            raise UsageStoreError("usage counters: DynamoDB is down")
        return await self.store.day_total(tenant, day)

    async def hours(self, tenant: str, start: datetime, end: datetime) -> list[HourUsage]:
        return await self.store.hours(tenant, start, end)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def recorder(spy: Spy, clock: Clock) -> UsageRecorder:
    return UsageRecorder(spy, flush_s=FLUSH_S, clock=clock)


def used(n: int = 1, cost: float = 0.125) -> Usage:
    return Usage(
        input_tokens=1000 * n,
        output_tokens=100 * n,
        cache_read_input_tokens=10 * n,
        cache_creation_input_tokens=7 * n,
        cost_usd=cost,
    )


def record(
    recorder: UsageRecorder,
    n: int = 1,
    *,
    tenant: str = "acme",
    agent: str = "researcher",
    at: datetime = AT,
    cost: float = 0.125,
    runs: int = 0,
    steps: int = 1,
) -> None:
    recorder.record(tenant=tenant, agent=agent, usage=used(n, cost), at=at, steps=steps, runs=runs)


async def stored(spy: Spy, tenant: str = "acme") -> list[tuple[datetime, str, UsageTotals]]:
    hours = await spy.store.hours(tenant, H10 - timedelta(days=2), H10 + timedelta(days=2))
    return [(h.hour, h.agent, h.totals) for h in hours]


def summed(steps: int, n: int, cost: float, runs: int = 0) -> UsageTotals:
    return UsageTotals(
        runs=runs,
        steps=steps,
        input_tokens=1000 * n,
        output_tokens=100 * n,
        cache_read_input_tokens=10 * n,
        cache_creation_input_tokens=7 * n,
        cost_usd=cost,
    )


# ---- buffering -----------------------------------------------------------------------------


async def test_record_buffers_and_merges_per_tenant_hour_and_agent(
    recorder: UsageRecorder, spy: Spy
) -> None:
    record(recorder, 1, runs=1)
    record(recorder, 2, at=AT + timedelta(minutes=40))  # 10:55, the same hour
    record(recorder, 4, agent="ticket-triage")
    record(recorder, 8, at=AT + timedelta(hours=1))  # 11:15
    record(recorder, 16, tenant="globex")
    assert spy.adds == []  # nothing written yet

    pending = {(d.tenant, d.hour, d.agent): d for d in recorder.pending()}
    assert set(pending) == {
        ("acme", H10, "researcher"),
        ("acme", H10, "ticket-triage"),
        ("acme", H10 + timedelta(hours=1), "researcher"),
        ("globex", H10, "researcher"),
    }
    merged = pending["acme", H10, "researcher"]
    assert (merged.runs, merged.steps, merged.input_tokens, merged.cost_usd) == (1, 2, 3000, 0.25)
    assert merged.cache_creation_input_tokens == 21


async def test_flush_waits_for_the_interval_then_writes_each_counter_once(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    for _ in range(10):
        record(recorder)
    await recorder.flush()  # the interval counts from the recorder's start
    clock.advance(FLUSH_S - 0.001)
    await recorder.flush()
    assert spy.adds == []

    clock.advance(0.001)
    await recorder.flush()
    assert len(spy.adds) == 1
    assert await stored(spy) == [(H10, "researcher", summed(10, 10, 1.25))]
    assert recorder.pending() == []

    record(recorder, 3)
    await recorder.flush()  # within the interval of the last write
    assert len(spy.adds) == 1
    clock.advance(FLUSH_S)
    await recorder.flush()
    assert len(spy.adds) == 2
    assert await stored(spy) == [(H10, "researcher", summed(11, 13, 1.375))]


async def test_force_writes_at_once_and_an_empty_buffer_writes_nothing(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    await recorder.flush(force=True)
    assert spy.adds == []
    record(recorder)
    await recorder.flush(force=True)
    assert len(spy.adds) == 1
    record(recorder)
    await recorder.flush(force=True)  # force ignores the interval of the last write too
    assert len(spy.adds) == 2
    assert await stored(spy) == [(H10, "researcher", summed(2, 2, 0.25))]


async def test_an_idle_interval_lets_the_next_record_be_written_at_once(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    clock.advance(10 * FLUSH_S)
    await recorder.flush()  # nothing buffered: nothing written, the interval not restarted
    record(recorder)
    await recorder.flush()
    assert len(spy.adds) == 1


# ---- failed writes -------------------------------------------------------------------------


async def test_a_failed_write_is_logged_and_its_deltas_kept_for_a_later_flush(
    recorder: UsageRecorder, spy: Spy, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    spy.fail = True
    record(recorder, 1, runs=1)
    clock.advance(FLUSH_S)
    with caplog.at_level(logging.WARNING, logger="switchyard.usage"):
        await recorder.flush()  # does not raise
    assert len(spy.adds) == 1
    assert "DynamoDB is down" in caplog.text
    assert await stored(spy) == []
    assert [d.steps for d in recorder.pending()] == [1]

    spy.fail = False
    record(recorder, 2)
    await recorder.flush()  # the failed attempt restarted the interval
    assert len(spy.adds) == 1
    clock.advance(FLUSH_S)
    await recorder.flush()
    assert len(spy.adds) == 2
    assert [d.steps for d in spy.adds[1]] == [2]  # merged: one delta for the counter
    assert await stored(spy) == [(H10, "researcher", summed(2, 3, 0.25, runs=1))]
    assert recorder.pending() == []


async def test_a_failed_forced_flush_does_not_raise_either(
    recorder: UsageRecorder, spy: Spy
) -> None:
    spy.fail = True
    record(recorder)
    await recorder.flush(force=True)
    assert len(recorder.pending()) == 1


async def test_records_made_during_a_flush_are_not_lost(recorder: UsageRecorder, spy: Spy) -> None:
    spy.gate = asyncio.Event()
    record(recorder, 1)
    flushing = asyncio.create_task(recorder.flush(force=True))
    await spy.entered.wait()
    record(recorder, 2)  # while the first write is under way
    record(recorder, 4, agent="ticket-triage")
    assert sorted(d.steps for d in recorder.pending()) == [1, 1]
    spy.gate.set()
    await flushing
    assert await stored(spy) == [(H10, "researcher", summed(1, 1, 0.125))]

    await recorder.flush(force=True)
    assert await stored(spy) == [
        (H10, "researcher", summed(2, 3, 0.25)),
        (H10, "ticket-triage", summed(1, 4, 0.125)),
    ]


async def test_a_failed_flush_merges_back_with_records_made_meanwhile(
    recorder: UsageRecorder, spy: Spy
) -> None:
    spy.gate, spy.fail = asyncio.Event(), True
    record(recorder, 1, runs=1)
    flushing = asyncio.create_task(recorder.flush(force=True))
    await spy.entered.wait()
    record(recorder, 2)
    spy.gate.set()
    await flushing
    [pending] = recorder.pending()
    assert (pending.runs, pending.steps, pending.input_tokens, pending.cost_usd) == (
        1,
        2,
        3000,
        0.25,
    )


async def test_a_cancelled_flush_lets_its_write_finish_and_never_writes_twice(
    recorder: UsageRecorder, spy: Spy
) -> None:
    spy.gate = asyncio.Event()
    record(recorder)
    flushing = asyncio.create_task(recorder.flush(force=True))
    await spy.entered.wait()
    flushing.cancel()  # a worker stopping while its counts are being written
    with pytest.raises(asyncio.CancelledError):
        await flushing
    spy.gate.set()  # the write was not stopped: it lands
    await _write_settled(spy)
    await recorder.flush(force=True)
    assert len(spy.adds) == 1  # written once, not put back and written again
    assert (await spy.store.day_total("acme", AT.date())).steps == 1


async def test_a_cancelled_flush_whose_write_fails_keeps_its_deltas(
    recorder: UsageRecorder, spy: Spy
) -> None:
    spy.gate = asyncio.Event()
    spy.fail = True
    record(recorder)
    flushing = asyncio.create_task(recorder.flush(force=True))
    await spy.entered.wait()
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    spy.gate.set()
    await _write_settled(spy)
    assert [d.steps for d in recorder.pending()] == [1]


async def _write_settled(spy: Spy) -> None:
    """Let the released write and its settling callback run (a few loop turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_concurrent_records_and_flushes_count_everything_exactly(
    spy: Spy, clock: Clock
) -> None:
    recorder = UsageRecorder(spy, flush_s=FLUSH_S, clock=clock)
    runs, steps = 40, 25

    async def one_run(i: int) -> None:
        agent = ("researcher", "ticket-triage", "ops-assistant")[i % 3]
        for step in range(steps):
            record(recorder, agent=agent, cost=0.1, runs=1 if step == 0 else 0)
            if step % 5 == 0:
                clock.advance(1.0)
            await recorder.flush(force=step == steps - 1)
            await asyncio.sleep(0)  # let the other runs interleave

    await asyncio.gather(*(one_run(i) for i in range(runs)))
    await recorder.flush(force=True)

    assert len(spy.adds) < runs * steps  # buffered: far fewer writes than steps
    assert recorder.pending() == []
    total = await spy.store.day_total("acme", DAY)
    assert total == summed(runs * steps, runs * steps, 0.1 * runs * steps, runs=runs)
    assert total.cost_usd == 100.0


def test_records_from_threads_are_all_counted(spy: Spy, clock: Clock) -> None:
    recorder = UsageRecorder(spy, flush_s=FLUSH_S, clock=clock)

    def many() -> None:
        for _ in range(500):
            record(recorder, cost=0.001)

    threads = [Thread(target=many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    asyncio.run(recorder.flush(force=True))
    assert asyncio.run(spy.store.day_total("acme", DAY)) == summed(4000, 4000, 4.0)


# ---- the day's spend -----------------------------------------------------------------------


async def test_spent_today_is_the_stored_total_plus_what_is_not_flushed(
    recorder: UsageRecorder, spy: Spy
) -> None:
    # Another process's spend, already stored.
    await spy.store.add([UsageDelta(tenant="acme", agent="x", hour=H10, cost_usd=2.5)])
    assert await recorder.spent_today("acme") == 2.5
    record(recorder, cost=0.25)
    record(recorder, agent="ticket-triage", cost=0.125)
    assert await recorder.spent_today("acme") == 2.875
    assert spy.day_reads == [("acme", DAY)]  # read once, cached
    assert await recorder.spent_today("globex") == 0.0


async def test_spent_today_rereads_the_stored_total_once_per_interval(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    assert await recorder.spent_today("acme") == 0.0
    await spy.store.add([UsageDelta(tenant="acme", agent="x", hour=H10, cost_usd=1.0)])
    clock.advance(FLUSH_S - 0.001)
    assert await recorder.spent_today("acme") == 0.0  # cached: the other process not seen yet
    assert len(spy.day_reads) == 1
    clock.advance(0.001)
    assert await recorder.spent_today("acme") == 1.0
    assert await recorder.spent_today("acme") == 1.0
    assert len(spy.day_reads) == 2


async def test_spent_today_counts_its_own_flushes_before_the_next_read(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    await spy.store.add([UsageDelta(tenant="acme", agent="x", hour=H10, cost_usd=1.0)])
    assert await recorder.spent_today("acme") == 1.0
    record(recorder, cost=0.5)
    await recorder.flush(force=True)
    assert recorder.pending() == []
    # Written after the cached read: still counted, once.
    assert await recorder.spent_today("acme") == 1.5
    clock.advance(FLUSH_S)
    assert await recorder.spent_today("acme") == 1.5  # re-read: now in the stored total
    assert len(spy.day_reads) == 2


async def test_spent_today_counts_a_flush_under_way(recorder: UsageRecorder, spy: Spy) -> None:
    spy.gate = asyncio.Event()
    record(recorder, cost=0.5)
    assert await recorder.spent_today("acme") == 0.5
    flushing = asyncio.create_task(recorder.flush(force=True))
    await spy.entered.wait()
    assert await recorder.spent_today("acme") == 0.5
    spy.gate.set()
    await flushing
    assert await recorder.spent_today("acme") == 0.5


async def test_spent_today_counts_a_failed_flushs_deltas(recorder: UsageRecorder, spy: Spy) -> None:
    spy.fail = True
    record(recorder, cost=0.5)
    await recorder.flush(force=True)
    assert await recorder.spent_today("acme") == 0.5


async def test_spent_today_is_the_current_utc_day_only(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    yesterday = H10 - timedelta(days=1)
    await spy.store.add([UsageDelta(tenant="acme", agent="x", hour=yesterday, cost_usd=9.0)])
    record(recorder, at=AT - timedelta(days=1), cost=4.0)  # buffered, but yesterday's
    record(recorder, cost=0.5)
    assert await recorder.spent_today("acme") == 0.5

    # Past midnight: a new day, read afresh however recent the last read.
    clock.now = datetime(2026, 11, 21, 0, 0, 1, tzinfo=UTC).timestamp()
    assert await recorder.spent_today("acme") == 0.0
    assert spy.day_reads == [("acme", DAY), ("acme", date(2026, 11, 21))]
    record(recorder, at=datetime.fromtimestamp(clock.now, UTC), cost=0.25)
    assert await recorder.spent_today("acme") == 0.25


async def test_a_failed_read_raises_and_the_next_call_reads_again(
    recorder: UsageRecorder, spy: Spy, clock: Clock
) -> None:
    spy.fail_reads = True
    with pytest.raises(UsageStoreError):
        await recorder.spent_today("acme")
    spy.fail_reads = False
    assert await recorder.spent_today("acme") == 0.0

    clock.advance(FLUSH_S)
    spy.fail_reads = True
    with pytest.raises(UsageStoreError):
        await recorder.spent_today("acme")
    spy.fail_reads = False
    await spy.store.add([UsageDelta(tenant="acme", agent="x", hour=H10, cost_usd=1.0)])
    assert await recorder.spent_today("acme") == 1.0  # not the old total, cached as if read
    assert len(spy.day_reads) == 4


# ---- deltas, construction ------------------------------------------------------------------


def test_hours_are_utc_and_truncated() -> None:
    assert hour_of(AT) == H10
    india = timezone(timedelta(hours=5, minutes=30))
    assert hour_of(datetime(2026, 11, 20, 16, 45, tzinfo=india)) == H10 + timedelta(hours=1)
    assert hour_ceil(AT) == H10 + timedelta(hours=1)
    assert hour_ceil(H10) == H10
    with pytest.raises(ValueError, match="timezone-aware"):
        hour_of(AT.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"hour": H10.replace(tzinfo=None)}, "timezone-aware"),
        ({"hour": AT}, "on the hour"),
        ({"steps": -1}, "greater than or equal"),
        ({"cost_usd": -0.5}, "greater than or equal"),
        ({"cost_usd": float("nan")}, "finite"),
        ({"tenant": ""}, "at least 1"),
    ],
)
def test_a_bad_delta_is_refused(fields: dict[str, object], says: str) -> None:
    values: dict[str, object] = {"tenant": "acme", "agent": "a", "hour": H10, **fields}
    with pytest.raises(ValidationError, match=says):
        UsageDelta.model_validate(values)


def test_record_refuses_a_naive_time(recorder: UsageRecorder) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        record(recorder, at=AT.replace(tzinfo=None))
    assert recorder.pending() == []


def test_flush_s_must_be_positive(spy: Spy) -> None:
    with pytest.raises(ValueError, match="flush_s"):
        UsageRecorder(spy, flush_s=0)


def test_the_factory_wiring_and_the_services_default_use_memory_counters() -> None:
    recorder = build_usage_recorder(Settings(usage_flush_s=2.5), "memory")
    assert isinstance(recorder.counters, MemoryUsageCounters)
    assert recorder.flush_s == 2.5
    services = build_services(Settings(usage_flush_s=3.0), backend="memory")
    assert isinstance(services.usage.counters, MemoryUsageCounters)
    assert services.usage.flush_s == 3.0
    [usage] = [f for f in dataclasses.fields(Services) if f.name == "usage"]
    assert usage.default_factory is not dataclasses.MISSING
    default = usage.default_factory()
    assert isinstance(default, UsageRecorder)
    assert isinstance(default.counters, MemoryUsageCounters)
