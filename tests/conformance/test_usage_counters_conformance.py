"""The usage counters contract (``shared.usage.base.UsageCounters``), checked against every
backend: in-memory and DynamoDB (moto).

``views`` are counters that share one store as separate processes would: the memory backend
has one store per process, so its views are the same object; the DynamoDB views are separate
objects (each with its own thread pool) on one table. The last section checks what only the
DynamoDB layout promises (keys, attributes, expiry, requests per call, errors).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.config import Settings
from shared.dal.dynamodb import Item, RunTable
from shared.dal.metering import RequestMeter
from shared.dal.schema import (
    CREATED,
    SK,
    TENANT_PK,
    TTL_ATTRIBUTE,
    usage_day_sk,
    usage_hour_sk,
    usage_hours_between,
    usage_pk,
)
from shared.errors import JournalError, UsageStoreError
from shared.models.usage import UsageTotals
from shared.usage import HourUsage, MemoryUsageCounters, UsageCounters, UsageDelta
from shared.usage.dynamodb import MIN_RETENTION_DAYS, DynamoUsageCounters
from tests.conformance.conftest import REGION, Aws

H0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = date(2026, 11, 20)
DAY_S = 86_400

Views = Callable[[], UsageCounters]


@pytest.fixture(params=["memory", "dynamodb"])
def views(request: pytest.FixtureRequest) -> Iterator[Views]:
    if request.param == "memory":
        shared = MemoryUsageCounters()
        yield lambda: shared
        return
    aws: Aws = request.getfixturevalue("aws")
    made: list[DynamoUsageCounters] = []

    def view() -> UsageCounters:
        counters = DynamoUsageCounters(aws.table, max_workers=4)
        made.append(counters)
        return counters

    try:
        yield view
    finally:
        for counters in made:
            counters.close()


@pytest.fixture
def counters(views: Views) -> UsageCounters:
    return views()


def delta(
    n: int = 1,
    *,
    tenant: str = "acme",
    agent: str = "researcher",
    hour: datetime = H0,
    cost: float | None = None,
    runs: int = 0,
) -> UsageDelta:
    """Distinct counts per field (so a mixed-up field shows), ``n`` times over."""
    return UsageDelta(
        tenant=tenant,
        agent=agent,
        hour=hour,
        runs=runs,
        steps=n,
        input_tokens=1000 * n,
        output_tokens=100 * n,
        cache_read_input_tokens=10 * n,
        cache_creation_input_tokens=7 * n,
        cost_usd=0.125 * n if cost is None else cost,
    )


def totals(n: int = 1, *, cost: float | None = None, runs: int = 0) -> UsageTotals:
    """What ``delta(n)`` adds up to."""
    d = delta(n, cost=cost, runs=runs)
    return UsageTotals(**d.model_dump(exclude={"tenant", "agent", "hour"}))


def hour_usage(hour: datetime, agent: str, t: UsageTotals) -> HourUsage:
    return HourUsage(hour=hour, agent=agent, totals=t)


# ---- adding and reading ---------------------------------------------------------------------


async def test_nothing_added_reads_as_zero(counters: UsageCounters) -> None:
    assert await counters.hours("acme", H0 - 24 * HOUR, H0 + 24 * HOUR) == []
    assert await counters.day_total("acme", DAY) == UsageTotals()


async def test_hours_are_per_agent_and_hour_ordered_by_hour_then_agent(
    counters: UsageCounters,
) -> None:
    await counters.add(
        [
            delta(1, agent="ticket-triage", hour=H0 + HOUR),
            delta(2, agent="researcher", hour=H0 + HOUR, runs=1),
            delta(4, agent="researcher", hour=H0),
        ]
    )
    assert await counters.hours("acme", H0, H0 + 2 * HOUR) == [
        hour_usage(H0, "researcher", totals(4)),
        hour_usage(H0 + HOUR, "researcher", totals(2, runs=1)),
        hour_usage(H0 + HOUR, "ticket-triage", totals(1)),
    ]
    assert await counters.day_total("acme", DAY) == totals(7, runs=1)


async def test_deltas_of_one_counter_merge_within_and_across_adds(counters: UsageCounters) -> None:
    await counters.add([delta(1, runs=1), delta(2)])
    await counters.add([delta(4, runs=1)])
    await counters.add([])
    [only] = await counters.hours("acme", H0, H0 + HOUR)
    assert only == hour_usage(H0, "researcher", totals(7, runs=2))
    assert await counters.day_total("acme", DAY) == totals(7, runs=2)


async def test_an_hour_given_in_another_offset_is_the_same_utc_hour(
    counters: UsageCounters,
) -> None:
    paris = timezone(timedelta(hours=1))
    await counters.add([delta(1, hour=H0.astimezone(paris)), delta(2, hour=H0)])
    [only] = await counters.hours("acme", H0, H0 + HOUR)
    assert only.hour == H0
    assert only.hour.utcoffset() == timedelta(0)
    assert only.totals == totals(3)


async def test_hours_are_half_open_and_unaligned_bounds_select_whole_hours(
    counters: UsageCounters,
) -> None:
    await counters.add([delta(1, hour=H0), delta(2, hour=H0 + HOUR), delta(4, hour=H0 + 2 * HOUR)])

    async def steps(start: datetime, end: datetime) -> list[int]:
        return [h.totals.steps for h in await counters.hours("acme", start, end)]

    assert await steps(H0, H0 + 2 * HOUR) == [1, 2]  # the end hour is excluded
    assert await steps(H0 + HOUR, H0 + 3 * HOUR) == [2, 4]
    # An hour counts when it starts within [start, end).
    assert await steps(H0 + timedelta(minutes=30), H0 + timedelta(hours=2, minutes=30)) == [2, 4]
    assert await steps(H0 - timedelta(microseconds=1), H0 + timedelta(microseconds=1)) == [1]
    assert await steps(H0 + timedelta(microseconds=1), H0 + HOUR) == []
    assert await steps(H0, H0) == []
    assert await steps(H0 + 2 * HOUR, H0) == []
    assert await steps(H0 - 100 * HOUR, H0 + 100 * HOUR) == [1, 2, 4]


async def test_naive_bounds_are_refused(counters: UsageCounters) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await counters.hours("acme", H0.replace(tzinfo=None), H0 + HOUR)
    with pytest.raises(ValueError, match="timezone-aware"):
        await counters.hours("acme", H0, (H0 + HOUR).replace(tzinfo=None))


async def test_day_totals_split_at_utc_midnight(counters: UsageCounters) -> None:
    midnight = datetime(2026, 11, 21, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    await counters.add(
        [
            delta(1, hour=midnight - HOUR, agent="researcher"),
            delta(2, hour=midnight - HOUR, agent="ticket-triage"),
            # 01:00 at +02:00 is 23:00 UTC: the day before, in UTC.
            delta(4, hour=datetime(2026, 11, 21, 1, tzinfo=plus_two)),
            delta(8, hour=midnight),
            delta(16, hour=midnight + 23 * HOUR),
            delta(32, hour=midnight + 24 * HOUR),
        ]
    )
    assert await counters.day_total("acme", date(2026, 11, 20)) == totals(7)
    assert await counters.day_total("acme", date(2026, 11, 21)) == totals(24)
    assert await counters.day_total("acme", date(2026, 11, 22)) == totals(32)
    assert await counters.day_total("acme", date(2026, 11, 19)) == UsageTotals()
    hours = await counters.hours("acme", midnight - HOUR, midnight + HOUR)
    assert [(h.hour, h.agent, h.totals.steps) for h in hours] == [
        (midnight - HOUR, "researcher", 5),
        (midnight - HOUR, "ticket-triage", 2),
        (midnight, "researcher", 8),
    ]


# ---- isolation and keys ---------------------------------------------------------------------


async def test_tenants_are_isolated(counters: UsageCounters) -> None:
    await counters.add([delta(1, tenant="acme"), delta(2, tenant="globex")])
    await counters.add([delta(4, tenant="acme", agent="ticket-triage")])
    acme = await counters.hours("acme", H0, H0 + HOUR)
    assert [(h.agent, h.totals) for h in acme] == [
        ("researcher", totals(1)),
        ("ticket-triage", totals(4)),
    ]
    assert await counters.hours("globex", H0, H0 + HOUR) == [
        hour_usage(H0, "researcher", totals(2))
    ]
    assert await counters.day_total("acme", DAY) == totals(5)
    assert await counters.day_total("globex", DAY) == totals(2)
    assert await counters.hours("initech", H0, H0 + HOUR) == []
    assert await counters.day_total("initech", DAY) == UsageTotals()


# Tenants and agents that a naive key (no escaping) would mix up: a ``#`` shifts the split
# between parts, an escape sequence typed literally would read as the escaped character.
AWKWARD_TENANTS = ("a", "a#b", "a%23b", "a#b#c", "a%", "USAGE#a")
AWKWARD_AGENTS = ("x", "x#y", "x%23y", "x#", "#", "$", "näive ✓", "H#2026")


async def test_separators_and_escapes_in_names_never_share_a_counter(
    counters: UsageCounters,
) -> None:
    deltas = [
        delta(1 + i * len(AWKWARD_AGENTS) + j, tenant=tenant, agent=agent)
        for i, tenant in enumerate(AWKWARD_TENANTS)
        for j, agent in enumerate(AWKWARD_AGENTS)
    ]
    await counters.add(deltas)
    for i, tenant in enumerate(AWKWARD_TENANTS):
        got = await counters.hours(tenant, H0 - HOUR, H0 + 2 * HOUR)
        expected = sorted(
            (
                hour_usage(H0, agent, totals(1 + i * len(AWKWARD_AGENTS) + j))
                for j, agent in enumerate(AWKWARD_AGENTS)
            ),
            key=lambda h: h.agent,
        )
        assert got == expected, tenant
        first = 1 + i * len(AWKWARD_AGENTS)
        day = sum(range(first, first + len(AWKWARD_AGENTS)))
        assert await counters.day_total(tenant, DAY) == totals(day), tenant


# ---- exact and concurrent ---------------------------------------------------------------------


async def test_cost_is_exact_to_the_nano_dollar_whatever_the_order(
    counters: UsageCounters,
) -> None:
    # Float dollars would lose these: a nano-dollar is below the float resolution that
    # repeated addition to a million dollars keeps.
    big = delta(cost=1_000_000.000000001)
    tiny = [delta(cost=1e-9) for _ in range(1000)]
    await counters.add([big, *tiny[:500]])
    await counters.add(tiny[500:])
    [only] = await counters.hours("acme", H0, H0 + HOUR)
    assert only.totals.cost_usd == 1_000_000.000001001
    assert (await counters.day_total("acme", DAY)).cost_usd == 1_000_000.000001001


async def test_concurrent_adds_from_tasks_sum_exactly(views: Views) -> None:
    tasks, adds = 25, 8
    shared = [views() for _ in range(5)]  # processes, each with its own client

    async def one_task(i: int) -> None:
        counters = shared[i % len(shared)]
        for k in range(adds):
            agent = "researcher" if (i + k) % 2 else "ticket-triage"
            await counters.add([delta(1, agent=agent, cost=0.1, runs=1)])

    await asyncio.gather(*(one_task(i) for i in range(tasks)))

    n = tasks * adds
    hours = await shared[0].hours("acme", H0, H0 + HOUR)
    assert sum(h.totals.steps for h in hours) == n
    assert {h.agent: h.totals.runs for h in hours} == {
        "researcher": n // 2,
        "ticket-triage": n // 2,
    }
    assert await shared[0].day_total("acme", DAY) == totals(n, cost=20.0, runs=n)


def test_concurrent_adds_from_threads_sum_exactly(views: Views) -> None:
    threads, adds = 8, 25

    def one_thread(i: int) -> None:
        counters = views()  # a process of its own, on its own event loop

        async def run() -> None:
            for k in range(adds):
                hour = H0 + (k % 3) * HOUR
                await counters.add([delta(1, hour=hour, cost=0.3), delta(2, hour=hour, cost=0.7)])

        asyncio.run(run())

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(one_thread, range(threads)))

    counters = views()
    total = asyncio.run(counters.day_total("acme", DAY))
    assert total == totals(3 * threads * adds, cost=1.0 * threads * adds)
    hours = asyncio.run(counters.hours("acme", H0, H0 + 3 * HOUR))
    assert [h.totals.steps for h in hours] == [3 * 9 * threads, 3 * 8 * threads, 3 * 8 * threads]


# ---- DynamoDB layout ------------------------------------------------------------------------


@pytest.fixture
def dynamo(aws: Aws) -> Iterator[DynamoUsageCounters]:
    counters = DynamoUsageCounters(aws.table, max_workers=4)
    yield counters
    counters.close()


def _item(aws: Aws, pk: str, sk: str) -> Item:
    item = aws.table.get({"pk": pk, SK: sk})
    assert item is not None, (pk, sk)
    return item


def test_key_layout() -> None:
    assert usage_pk("acme") == "USAGE#acme"
    assert usage_pk("a#b") == "USAGE#a%23b"
    assert usage_pk("a%23b") == "USAGE#a%2523b"
    assert usage_hour_sk(H0, "researcher") == "H#2026-11-20T10:00:00Z#researcher"
    assert usage_hour_sk(H0.astimezone(timezone(timedelta(hours=-5))), "x#y") == (
        "H#2026-11-20T10:00:00Z#x%23y"
    )
    assert usage_day_sk(DAY) == "D#2026-11-20"
    lo, hi = usage_hours_between(H0, H0 + HOUR)
    assert (lo, hi) == ("H#2026-11-20T10:00:00Z#", "H#2026-11-20T11:00:00Z$")
    inside = [usage_hour_sk(h, a) for h in (H0, H0 + HOUR) for a in AWKWARD_AGENTS]
    outside = [usage_hour_sk(h, a) for h in (H0 - HOUR, H0 + 2 * HOUR) for a in AWKWARD_AGENTS]
    assert all(lo <= sk <= hi for sk in inside)
    assert not any(lo <= sk <= hi for sk in [*outside, usage_day_sk(DAY)])


async def test_dynamodb_items(aws: Aws, dynamo: DynamoUsageCounters) -> None:
    await dynamo.add([delta(1, agent="x#y", runs=1), delta(2, agent="x#y", cost=0.1)])
    retention = MIN_RETENTION_DAYS * DAY_S
    hour_item = _item(aws, "USAGE#acme", "H#2026-11-20T10:00:00Z#x%23y")
    assert hour_item == {
        "pk": "USAGE#acme",
        "sk": "H#2026-11-20T10:00:00Z#x%23y",
        "tenant": "acme",
        "agent": "x#y",
        "hour": "2026-11-20T10:00:00Z",
        "runs": 1,
        "steps": 3,
        "input_tokens": 3000,
        "output_tokens": 300,
        "cache_read_input_tokens": 30,
        "cache_creation_input_tokens": 21,
        "cost_nanos": 225_000_000,
        # Tied to the end of the hour, not to the time of the write.
        TTL_ATTRIBUTE: int((H0 + HOUR).timestamp()) + retention,
    }
    day_item = _item(aws, "USAGE#acme", "D#2026-11-20")
    assert day_item["day"] == "2026-11-20"
    assert day_item["cost_nanos"] == 225_000_000
    assert "agent" not in day_item
    end_of_day = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp())
    assert day_item[TTL_ATTRIBUTE] == end_of_day + retention
    scanned = aws.dynamodb.scan(TableName=aws.table_name)["Items"]
    assert len(scanned) == 2
    assert all(TENANT_PK not in i and CREATED not in i for i in scanned)  # no run list shows them


async def test_dynamodb_writes_one_update_per_item_and_reads_nothing_to_add(
    aws: Aws, dynamo: DynamoUsageCounters
) -> None:
    meter = RequestMeter()
    meter.attach(aws.table.client)

    async def counted(action: Awaitable[object]) -> dict[str, int]:
        meter.reset()
        await action
        return {op: counts["requests"] for op, counts in meter.snapshot().items()}

    # Two agents in one hour (one of them twice) and another hour of the same day: three
    # hour counters and one day total.
    deltas = [delta(1), delta(2), delta(1, agent="ticket-triage"), delta(1, hour=H0 + HOUR)]
    assert await counted(dynamo.add(deltas)) == {"dynamodb.UpdateItem": 4}
    assert await counted(dynamo.add([])) == {}
    assert await counted(dynamo.day_total("acme", DAY)) == {"dynamodb.GetItem": 1}
    assert await counted(dynamo.hours("acme", H0, H0 + 24 * HOUR)) == {"dynamodb.Query": 1}
    assert await counted(dynamo.hours("acme", H0, H0)) == {}


def test_dynamodb_retention_is_at_least_35_days(aws: Aws) -> None:
    assert DynamoUsageCounters(aws.table, retention_days=7).retention_days == MIN_RETENTION_DAYS
    assert DynamoUsageCounters(aws.table, retention_days=90).retention_days == 90


async def test_dynamodb_from_settings(aws: Aws) -> None:
    settings = Settings(table_name=aws.table_name, region=REGION, retention_days=60)
    counters = DynamoUsageCounters.from_settings(settings, max_workers=2)
    try:
        await counters.add([delta(1)])
        item = _item(aws, "USAGE#acme", "D#2026-11-20")
        end_of_day = int(datetime(2026, 11, 21, tzinfo=UTC).timestamp())
        assert item[TTL_ATTRIBUTE] == end_of_day + 60 * DAY_S
        assert await counters.day_total("acme", DAY) == totals(1)
    finally:
        counters.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.add([delta(1)]),
        lambda c: c.day_total("acme", DAY),
        lambda c: c.hours("acme", H0, H0 + HOUR),
    ],
    ids=["add", "day_total", "hours"],
)
async def test_dynamodb_failures_are_usage_store_errors(
    aws: Aws, call: Callable[[DynamoUsageCounters], Awaitable[Any]]
) -> None:
    counters = DynamoUsageCounters(RunTable("no-such-table", aws.table.client), max_workers=2)
    try:
        with pytest.raises(UsageStoreError, match="usage counters") as caught:
            await call(counters)
        assert isinstance(caught.value.__cause__, JournalError)
    finally:
        counters.close()
