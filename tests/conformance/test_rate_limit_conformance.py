"""One suite for every RateLimitStore backend: in-memory and DynamoDB (moto).

``views`` are stores that share buckets as separate processes would: the memory backend has
one store per process, so its views are the same object; the DynamoDB views are separate
store objects (each with its own idea of the item) on one table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from shared.ratelimit import Amounts, RateLimits, RateLimitStore, Remaining
from shared.ratelimit.dynamodb import DynamoRateLimitStore
from shared.ratelimit.memory import MemoryRateLimitStore
from tests.conformance.conftest import T0, Aws

LIMITS = RateLimits(requests=5, input_tokens=1000, output_tokens=8000, period_s=60.0)
ONE = Amounts(requests=1)
BUCKET = "anthropic:key0:claude-test"

Views = Callable[[], RateLimitStore]


@pytest.fixture(params=["memory", "dynamodb"])
def views(request: pytest.FixtureRequest) -> Iterator[Views]:
    if request.param == "memory":
        shared = MemoryRateLimitStore()
        yield lambda: shared
        return
    aws: Aws = request.getfixturevalue("aws")
    made: list[DynamoRateLimitStore] = []

    def view() -> RateLimitStore:
        store = DynamoRateLimitStore(aws.table, max_workers=4)
        made.append(store)
        return store

    try:
        yield view
    finally:
        for store in made:
            store.close()


@pytest.fixture
def store(views: Views) -> RateLimitStore:
    return views()


async def test_a_fresh_bucket_grants_its_limit_then_refuses_with_the_wait(
    store: RateLimitStore,
) -> None:
    for _ in range(5):
        assert (await store.acquire(BUCKET, ONE, LIMITS, now=T0)).granted
    refused = await store.acquire(BUCKET, ONE, LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(12.0)  # one request refills every 60 / 5 s
    assert refused.remaining.requests == pytest.approx(0.0)


async def test_the_bucket_refills_continuously(store: RateLimitStore) -> None:
    for _ in range(5):
        await store.acquire(BUCKET, ONE, LIMITS, now=T0)
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 11.9)).granted
    assert (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 12.0)).granted
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 12.0)).granted
    # After a full period idle it holds its whole capacity again, no more.
    for _ in range(5):
        assert (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 600)).granted
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 600)).granted


async def test_token_dimensions_and_a_refused_take_takes_nothing(store: RateLimitStore) -> None:
    first = await store.acquire(BUCKET, Amounts(1, 600, 100), LIMITS, now=T0)
    assert first.granted
    assert first.remaining.input_tokens == pytest.approx(400.0)
    assert first.remaining.requests == pytest.approx(4.0)
    refused = await store.acquire(BUCKET, Amounts(1, 600, 100), LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(12.0)  # 200 tokens short at 1000 per 60 s
    # Nothing was taken by the refusal: the 400 left are all there.
    assert (await store.acquire(BUCKET, Amounts(1, 400, 100), LIMITS, now=T0)).granted
    assert not (await store.acquire(BUCKET, Amounts(0, 1, 0), LIMITS, now=T0)).granted


async def test_a_take_larger_than_the_capacity_fits_a_full_bucket(store: RateLimitStore) -> None:
    assert (await store.acquire(BUCKET, Amounts(1, 5000, 0), LIMITS, now=T0)).granted
    refused = await store.acquire(BUCKET, Amounts(1, 1, 0), LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(0.06, abs=0.001)  # one token's worth


async def test_carry_and_adjust_give_back_what_was_not_used(store: RateLimitStore) -> None:
    reserve = Amounts(1, 10, 3000)
    assert (await store.acquire(BUCKET, reserve, LIMITS, now=T0)).granted
    assert (await store.acquire(BUCKET, reserve, LIMITS, now=T0)).granted
    assert not (await store.acquire(BUCKET, reserve, LIMITS, now=T0)).granted
    # The first call used 500 output tokens of its 3000: the next take carries the rest back.
    carried = await store.acquire(BUCKET, reserve, LIMITS, now=T0, carry=Amounts(0, 0, -2500))
    assert carried.granted
    assert not (await store.acquire(BUCKET, reserve, LIMITS, now=T0)).granted
    await store.adjust(BUCKET, Amounts(0, 0, -3000), LIMITS, now=T0)
    assert (await store.acquire(BUCKET, reserve, LIMITS, now=T0)).granted


async def test_a_charge_beyond_the_estimate_delays_later_takes(store: RateLimitStore) -> None:
    assert (await store.acquire(BUCKET, Amounts(1, 100, 10), LIMITS, now=T0)).granted
    await store.adjust(BUCKET, Amounts(0, 850, 0), LIMITS, now=T0)  # it used 950, not 100
    refused = await store.acquire(BUCKET, Amounts(1, 100, 10), LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(3.0)  # 50 tokens short


async def test_a_block_refuses_everything_until_it_ends(store: RateLimitStore) -> None:
    await store.block(BUCKET, T0 + 10)
    refused = await store.acquire(BUCKET, ONE, LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(10.0)
    await store.block(BUCKET, T0 + 5)  # an earlier end does not shorten it
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 9)).granted
    assert (await store.acquire(BUCKET, ONE, LIMITS, now=T0 + 10)).granted


async def test_observed_remaining_lowers_the_bucket_never_raises_it(
    store: RateLimitStore,
) -> None:
    # The provider says 1 request is left: someone else uses this key.
    await store.observe(BUCKET, Remaining(1, 1000, 8000), LIMITS, now=T0)
    assert (await store.acquire(BUCKET, ONE, LIMITS, now=T0)).granted
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0)).granted
    # A provider saying more is left than the bucket holds changes nothing.
    await store.observe(BUCKET, Remaining(5, 1000, 8000), LIMITS, now=T0)
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0)).granted


async def test_learned_limits_are_shared(views: Views) -> None:
    learner, other = views(), views()
    assert (await other.acquire(BUCKET, ONE, LIMITS, now=T0)).limits is None
    told = RateLimits(requests=50, input_tokens=40_000, output_tokens=10_000, period_s=60.0)
    assert await other.learned_limits(BUCKET) is None
    await learner.learn_limits(BUCKET, told)
    assert (await other.acquire(BUCKET, ONE, LIMITS, now=T0)).limits == told
    assert await views().learned_limits(BUCKET) == told


async def test_buckets_are_independent(store: RateLimitStore) -> None:
    for _ in range(5):
        await store.acquire(BUCKET, ONE, LIMITS, now=T0)
    assert not (await store.acquire(BUCKET, ONE, LIMITS, now=T0)).granted
    assert (await store.acquire(BUCKET + "-other", ONE, LIMITS, now=T0)).granted


async def test_concurrent_takes_from_many_processes_never_exceed_the_limit(
    views: Views,
) -> None:
    limits = RateLimits(requests=20, input_tokens=100_000, output_tokens=100_000)
    stores = [views() for _ in range(3)]

    async def take(store: RateLimitStore) -> bool:
        return (await store.acquire(BUCKET, Amounts(1, 10, 10), limits, now=T0)).granted

    granted = await asyncio.gather(*(take(stores[i % 3]) for i in range(45)))
    assert sum(granted) == 20
    # And once time has passed they grant exactly the refill, whoever asks.
    later = await asyncio.gather(
        *(stores[i % 3].acquire(BUCKET, Amounts(1, 10, 10), limits, now=T0 + 6) for i in range(9))
    )
    assert sum(a.granted for a in later) == 2  # 6 s at 20 per minute


async def test_an_idle_bucket_always_grants_and_counts_a_carried_charge(
    store: RateLimitStore,
) -> None:
    # Calls made before the limits were known used 10 requests' worth: the bucket ends up
    # empty (never more than empty), and the take is granted all the same.
    granted = await store.acquire(BUCKET, ONE, LIMITS, now=T0, carry=Amounts(requests=10))
    assert granted.granted
    refused = await store.acquire(BUCKET, ONE, LIMITS, now=T0)
    assert not refused.granted
    assert refused.wait_s == pytest.approx(12.0)
