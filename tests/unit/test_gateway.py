"""The provider gateway: reservations, waits, 429s, retries, failover, adaptation.

Time is a fake clock that the gateway's sleep advances, so every wait is exact and
instantaneous; buckets are the in-memory store, shared by several gateways as processes
share the DynamoDB one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from shared.config import RateLimitSetting
from shared.errors import (
    ProviderError,
    ProviderOverloadedError,
    ProviderRateLimitedError,
    RateLimitError,
)
from shared.gateway import GatewayOptions, LimitTable, ModelGateway, ThrottledTooLong
from shared.gateway.estimate import estimate_input_tokens
from shared.models.messages import ModelRequest, ModelResponse, RateLimitInfo, RateLimitWindow
from shared.models.run import Usage
from shared.ratelimit import NOTHING, Acquired, Amounts, RateLimits
from shared.ratelimit.memory import MemoryRateLimitStore
from tests.support.scripted_provider import ScriptedProvider, text_response

T0 = 1_800_000_000.0
REQUEST = ModelRequest(
    model="primary",
    system="Be brief.",
    messages=[{"role": "user", "content": "hello " * 50}],
    max_tokens=1000,
)
LIMITS = {"default": RateLimitSetting(requests=3, input_tokens=100_000, output_tokens=100_000)}


@dataclass
class FakeTime:
    now: float = T0
    slept: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class Seen:
    throttles: list[tuple[str, float, str]] = field(default_factory=list)
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)

    def throttled(self, model: str, wait_s: float, reason: str) -> None:
        self.throttles.append((model, wait_s, reason))

    def fell_back(self, model: str, to_model: str, reason: str) -> None:
        self.fallbacks.append((model, to_model, reason))


def gateway(
    provider: ScriptedProvider,
    time: FakeTime,
    store: MemoryRateLimitStore | None = None,
    *,
    limits: dict[str, RateLimitSetting] | None = None,
    attempts: int = 1,
    seen: Seen | None = None,
) -> ModelGateway:
    return ModelGateway(
        provider,
        store=store if store is not None else MemoryRateLimitStore(),
        limits=LimitTable(LIMITS if limits is None else limits, 60.0),
        key_id="key",
        options=GatewayOptions(attempts_per_model=attempts, backoff_s=(0.5, 1.0)),
        observer=seen,
        clock=time.clock,
        sleep=time.sleep,
        jitter=lambda s: s,
    )


USAGE = Usage(input_tokens=80, output_tokens=20)


def answering(usage: Usage = USAGE) -> ScriptedProvider:
    return ScriptedProvider(responder=lambda r: text_response("ok", usage=usage, model=r.model))


async def test_calls_beyond_the_limit_wait_for_the_bucket_and_all_succeed() -> None:
    time, seen = FakeTime(), Seen()
    store = MemoryRateLimitStore()
    provider = answering()
    gw = gateway(provider, time, store, seen=seen)
    calls = [await gw.call(REQUEST, ["primary"]) for _ in range(5)]
    assert provider.calls == 5
    # 3 per minute: the 4th and 5th wait 20 s each for one request to refill.
    assert [c.throttled_s for c in calls] == [0, 0, 0, 20.0, 20.0]
    assert time.slept == [20.0, 20.0]
    assert seen.throttles == [("primary", 20.0, "limit"), ("primary", 20.0, "limit")]


async def test_the_bucket_is_shared_by_every_process() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    first, second = gateway(answering(), time, store), gateway(answering(), time, store)
    for _ in range(3):
        await first.call(REQUEST, ["primary"])
    assert (await second.call(REQUEST, ["primary"])).throttled_s == 20.0


async def test_a_reservation_is_reconciled_with_the_usage_on_the_next_take() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    tight = {"default": RateLimitSetting(requests=100, input_tokens=100_000, output_tokens=2500)}
    gw = gateway(answering(Usage(input_tokens=80, output_tokens=20)), time, store, limits=tight)
    # Each call reserves max_tokens=1000 of the 2500 output tokens but uses 20: without the
    # give-back the third call would wait; with it, ten calls never do.
    results = [await gw.call(REQUEST, ["primary"]) for _ in range(10)]
    assert all(r.throttled_s == 0 for r in results)
    assert estimate_input_tokens(REQUEST) > 80  # the estimate errs high, then is given back


async def test_a_call_that_fails_gives_its_reservation_back() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    one = {"default": RateLimitSetting(requests=1, input_tokens=100_000, output_tokens=100_000)}
    provider = answering()
    provider.fail_at(1, ProviderError("400 bad request", status=400))
    gw = gateway(provider, time, store, limits=one)
    with pytest.raises(ProviderError):
        await gw.call(REQUEST, ["primary"])
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == 0


async def test_a_429_blocks_every_process_until_retry_after_then_is_retried() -> None:
    time, store, seen = FakeTime(), MemoryRateLimitStore(), Seen()
    provider = answering()
    provider.fail_at(1, ProviderRateLimitedError("429", status=429, retry_after_s=7.0))
    gw = gateway(provider, time, store, seen=seen, attempts=1)
    other = gateway(answering(), time, store)
    task = asyncio.create_task(gw.call(REQUEST, ["primary", "backup"]))
    await asyncio.sleep(0)
    # The other process is refused while the bucket is blocked (it waits 7 s too).
    call = await task
    assert call.rate_limited == 1
    assert call.fallbacks == ()  # a rate limit is waited out, never failed over
    assert [r.model for r in provider.requests] == ["primary", "primary"]
    assert ("primary", 7.0, "429") in seen.throttles
    time.now = T0 + 1
    blocked = await store.acquire(
        "key:primary", Amounts(1), RateLimits(3, 100_000, 100_000), now=T0 + 1
    )
    assert not blocked.granted
    assert blocked.wait_s == pytest.approx(6.0)
    assert (await other.call(REQUEST, ["primary"])).throttled_s == pytest.approx(6.0)


async def test_a_429_without_configured_limits_is_still_waited_out() -> None:
    time = FakeTime()
    provider = answering()
    for n in (1, 2, 3):
        provider.fail_at(n, ProviderRateLimitedError("429", status=429, retry_after_s=2.0))
    gw = ModelGateway(provider, clock=time.clock, sleep=time.sleep, jitter=lambda s: s)
    call = await gw.call(REQUEST, ["primary"])
    assert call.rate_limited == 3
    assert time.slept == [2.0, 2.0, 2.0]


async def test_overload_falls_back_at_once_and_records_it() -> None:
    time, seen = FakeTime(), Seen()
    provider = answering()
    provider.fail_at(1, ProviderOverloadedError("529", status=529, retryable=True))
    gw = gateway(provider, time, seen=seen, attempts=3)
    call = await gw.call(REQUEST, ["primary", "backup"])
    assert call.response.model == "backup"
    assert [(f.model, f.reason) for f in call.fallbacks] == [("primary", "overloaded")]
    assert seen.fallbacks == [("primary", "backup", "overloaded")]
    assert time.slept == []


async def test_server_errors_are_retried_with_backoff_then_fall_back() -> None:
    time = FakeTime()
    provider = answering()
    for n in (1, 2, 3):
        provider.fail_at(n, ProviderError("500", status=500, retryable=True))
    gw = gateway(provider, time, attempts=3)
    call = await gw.call(REQUEST, ["primary", "backup"])
    assert [r.model for r in provider.requests] == ["primary"] * 3 + ["backup"]
    assert time.slept == [0.5, 1.0]
    assert [(f.model, f.reason) for f in call.fallbacks] == [("primary", "provider_error")]


async def test_a_non_retryable_error_is_raised_without_retry_or_fallback() -> None:
    provider = answering()
    provider.fail_at(1, ProviderError("400", status=400))
    with pytest.raises(ProviderError, match="400"):
        await gateway(provider, FakeTime(), attempts=3).call(REQUEST, ["primary", "backup"])
    assert provider.calls == 1


async def test_when_the_chain_is_exhausted_the_last_error_is_raised() -> None:
    provider = answering()
    provider.fail_at(1, ProviderOverloadedError("529 a", status=529, retryable=True))
    provider.fail_at(2, ProviderOverloadedError("529 b", status=529, retryable=True))
    with pytest.raises(ProviderOverloadedError, match="529 b"):
        await gateway(provider, FakeTime()).call(REQUEST, ["primary", "backup"])


async def test_a_wait_longer_than_max_wait_raises_instead_of_sleeping() -> None:
    time = FakeTime()
    gw = gateway(answering(), time)
    for _ in range(3):
        await gw.call(REQUEST, ["primary"])
    with pytest.raises(ThrottledTooLong):
        await gw.call(REQUEST, ["primary"], max_wait_s=5.0)
    assert time.slept == []
    assert gw.pressure_s() == pytest.approx(20.0)


def limited(response: ModelResponse, limit: int, remaining: int) -> ModelResponse:
    """``response`` with headers stating a request limit (tokens: plenty)."""
    at = datetime.now(UTC)
    requests = RateLimitWindow(limit=limit, remaining=remaining, reset_at=at)
    tokens = RateLimitWindow(limit=1_000_000, remaining=1_000_000, reset_at=at)
    info = RateLimitInfo(requests=requests, input_tokens=tokens, output_tokens=tokens)
    return response.model_copy(update={"rate_limits": info})


async def test_limits_the_provider_reports_are_learned_and_shared() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    usage = Usage(input_tokens=80, output_tokens=20)
    provider = ScriptedProvider(
        responder=lambda r: limited(text_response("ok", usage=usage, model=r.model), 2, 1_000)
    )
    # Nothing configured: the first call goes unthrottled and teaches the limit (2/min).
    learner = gateway(provider, time, store, limits={})
    await learner.call(REQUEST, ["primary"])
    await learner.call(REQUEST, ["primary"])
    assert (await learner.call(REQUEST, ["primary"])).throttled_s == pytest.approx(30.0)
    # Another process, whose responses say nothing, finds the limit in the store.
    time.now += 60
    other = gateway(answering(), time, store, limits={})
    waits = [(await other.call(REQUEST, ["primary"])).throttled_s for _ in range(3)]
    assert waits == [0, 0, pytest.approx(30.0)]


async def test_reported_limits_below_the_configured_ones_bind() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    provider = ScriptedProvider(
        responder=lambda r: limited(text_response("ok", model=r.model), 2, 100_000)
    )
    configured = {"default": RateLimitSetting(requests=50, input_tokens=10**6, output_tokens=10**6)}
    gw = gateway(provider, time, store, limits=configured)
    waits = [(await gw.call(REQUEST, ["primary"])).throttled_s for _ in range(3)]
    assert waits[:2] == [0, 0]
    assert waits[2] > 0


async def test_a_provider_reporting_less_left_lowers_the_shared_bucket() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    ten = {"default": RateLimitSetting(requests=10, input_tokens=100_000, output_tokens=100_000)}
    # Someone else uses the key: the provider says only 1 request is left after ours.
    provider = ScriptedProvider(
        responder=lambda r: limited(text_response("ok", model=r.model), 10, 1)
    )
    gw = gateway(provider, time, store, limits=ten)
    await gw.call(REQUEST, ["primary"])
    other = gateway(answering(), time, store, limits=ten)
    assert (await other.call(REQUEST, ["primary"])).throttled_s == 0
    assert (await other.call(REQUEST, ["primary"])).throttled_s == pytest.approx(6.0)


async def test_flush_writes_the_carried_give_backs() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    tight = {"default": RateLimitSetting(requests=100, input_tokens=100_000, output_tokens=1000)}
    gw = gateway(answering(Usage(input_tokens=10, output_tokens=0)), time, store, limits=tight)
    await gw.call(REQUEST, ["primary"])
    other = gateway(answering(), time, store, limits=tight)
    # The whole 1000 output tokens are reserved until the give-back is written.
    with pytest.raises(ThrottledTooLong):
        await other.call(REQUEST, ["primary"], max_wait_s=0.0)
    await gw.flush()
    assert (await other.call(REQUEST, ["primary"])).throttled_s == 0


class CountingStore(MemoryRateLimitStore):
    def __init__(self) -> None:
        super().__init__()
        self.takes: list[Amounts] = []

    async def acquire(
        self,
        bucket: str,
        take: Amounts,
        limits: RateLimits,
        *,
        now: float,
        carry: Amounts = NOTHING,
    ) -> Acquired:
        self.takes.append(take)
        return await super().acquire(bucket, take, limits, now=now, carry=carry)


def prefetching(
    provider: ScriptedProvider, time: FakeTime, store: MemoryRateLimitStore, requests: int = 100
) -> ModelGateway:
    room = RateLimitSetting(requests=requests, input_tokens=10**6, output_tokens=10**6)
    roomy = {"default": room}
    return ModelGateway(
        provider,
        store=store,
        limits=LimitTable(roomy, 60.0),
        key_id="key",
        options=GatewayOptions(prefetch_calls=4, prefetch_ttl_s=5.0),
        clock=time.clock,
        sleep=time.sleep,
        jitter=lambda s: s,
    )


async def test_a_roomy_bucket_is_reserved_several_calls_at_a_time() -> None:
    time, store = FakeTime(), CountingStore()
    gw = prefetching(answering(), time, store)
    for _ in range(9):
        await gw.call(REQUEST, ["primary"])
    # The first take learns the bucket is full; later takes reserve several calls each.
    takes = [t.requests for t in store.takes]
    assert takes[0] == 1
    assert takes[1] == 4  # prefetch_calls: 4, the bucket 99 % full
    assert len(takes) <= 4
    taken = await store.acquire("key:primary", Amounts(), RateLimits(100, 10**6, 10**6), now=T0)
    # Reserved ahead, not lost: what is not used yet is still held by this process.
    assert taken.remaining.requests == pytest.approx(100 - sum(takes))


async def test_a_bucket_less_than_half_full_is_reserved_a_call_at_a_time() -> None:
    time, store = FakeTime(), CountingStore()
    gw = prefetching(answering(), time, store, requests=10)
    for _ in range(6):
        await gw.call(REQUEST, ["primary"])
    # 10 a minute: never more than an eighth of it ahead (one call), and nothing once the
    # bucket is not clearly above half full.
    assert [t.requests for t in store.takes] == [1, 2, 1, 1, 1]


async def test_an_unused_allowance_is_given_back_when_it_expires_or_on_flush() -> None:
    time, store = FakeTime(), CountingStore()
    gw = prefetching(answering(), time, store)
    await gw.call(REQUEST, ["primary"])
    await gw.call(REQUEST, ["primary"])  # reserves 3 more than it uses
    limits = RateLimits(100, 10**6, 10**6)
    left = await store.acquire("key:primary", Amounts(), limits, now=T0)
    assert left.remaining.requests == pytest.approx(95)
    await gw.flush()
    left = await store.acquire("key:primary", Amounts(), limits, now=T0)
    assert left.remaining.requests == pytest.approx(98)  # what the two calls took


async def test_an_expired_allowance_is_not_used() -> None:
    time, store = FakeTime(), CountingStore()
    gw = prefetching(answering(), time, store)
    await gw.call(REQUEST, ["primary"])
    await gw.call(REQUEST, ["primary"])
    time.now += 6  # past prefetch_ttl_s
    await gw.call(REQUEST, ["primary"])
    assert len(store.takes) == 3


async def test_concurrent_calls_of_a_process_queue_for_one_take_at_a_time() -> None:
    time, store = FakeTime(), CountingStore()
    gw = prefetching(answering(), time, store)
    await asyncio.gather(*(gw.call(REQUEST, ["primary"]) for _ in range(8)))
    # Without the queue each of the 8 would have taken on its own; queued, a call finds the
    # allowance the one before it reserved.
    assert len(store.takes) <= 4
    assert sum(t.requests for t in store.takes) >= 8


async def test_a_call_larger_than_the_bucket_is_charged_what_it_used_after() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    small = {"default": RateLimitSetting(requests=100, input_tokens=50, output_tokens=10**6)}
    # The prompt alone is estimated above the 50-token capacity, and 80 tokens are used.
    gw = gateway(answering(Usage(input_tokens=80, output_tokens=1)), time, store, limits=small)
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == 0
    # The next call carries the 30 tokens beyond the capacity: the bucket owes them, so it
    # waits for 30 + 50 tokens at 50 a minute.
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == pytest.approx(96.0)


async def test_a_server_error_keeps_its_request_and_input_charged() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    two = {"default": RateLimitSetting(requests=2, input_tokens=10**6, output_tokens=10**6)}
    provider = answering()
    provider.fail_at(1, ProviderError("500", status=500, retryable=True))
    gw = gateway(provider, time, store, limits=two)
    with pytest.raises(ProviderError):
        await gw.call(REQUEST, ["primary"])
    # The provider may have admitted (and counted) the failed call: one request is left.
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == 0
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == pytest.approx(30.0)


class FailingWrites(MemoryRateLimitStore):
    """A store whose tuning writes fail (takes still work)."""

    async def learn_limits(self, bucket: str, limits: RateLimits) -> None:
        raise RateLimitError("rate-limit store: DynamoDB is down")

    async def block(self, bucket: str, until: float) -> None:
        raise RateLimitError("rate-limit store: DynamoDB is down")


async def test_a_failing_store_write_never_throws_away_a_served_response() -> None:
    time, store = FakeTime(), FailingWrites()
    provider = ScriptedProvider(
        responder=lambda r: limited(text_response("ok", model=r.model), 50, 49)
    )
    provider.fail_at(1, ProviderRateLimitedError("429", status=429, retry_after_s=1.0))
    gw = gateway(provider, time, store)
    call = await gw.call(REQUEST, ["primary"])  # the 429's block and the learning both fail
    assert call.response.text() == "ok"
    assert call.rate_limited == 1


class GatedStore(MemoryRateLimitStore):
    """A store whose next take waits for the test, and lands even if its caller is
    cancelled meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def acquire(
        self,
        bucket: str,
        take: Amounts,
        limits: RateLimits,
        *,
        now: float,
        carry: Amounts = NOTHING,
    ) -> Acquired:
        gate, self.gate = self.gate, None
        if gate is None:
            return await super().acquire(bucket, take, limits, now=now, carry=carry)
        self.entered.set()

        async def write() -> Acquired:
            await gate.wait()
            return await super(GatedStore, self).acquire(bucket, take, limits, now=now, carry=carry)

        # Like DynamoDB's thread: cancelling the caller does not stop the write.
        return await asyncio.shield(asyncio.ensure_future(write()))


async def test_a_call_cancelled_while_taking_gives_back_what_the_take_got() -> None:
    time, store = FakeTime(), GatedStore()
    two = {"default": RateLimitSetting(requests=2, input_tokens=10**6, output_tokens=10**6)}
    gw = gateway(answering(), time, store, limits=two)
    gate = store.gate = asyncio.Event()
    task = asyncio.create_task(gw.call(REQUEST, ["primary"]))
    await store.entered.wait()
    task.cancel()  # the run's timeout fires while the store is writing
    with pytest.raises(asyncio.CancelledError):
        await task
    gate.set()  # the write lands all the same
    for _ in range(5):
        await asyncio.sleep(0)
    # Nobody used that take: it rides back with the next one, so both requests are there.
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == 0
    assert (await gw.call(REQUEST, ["primary"])).throttled_s == 0


async def test_models_under_one_configured_prefix_share_its_bucket() -> None:
    time, store = FakeTime(), MemoryRateLimitStore()
    family = {"claude-x": RateLimitSetting(requests=2, input_tokens=10**6, output_tokens=10**6)}
    gw = gateway(answering(), time, store, limits=family)
    assert gw.bucket("claude-x-20260101") == gw.bucket("claude-x-latest") == "key:claude-x"
    await gw.call(REQUEST, ["claude-x-20260101"])
    await gw.call(REQUEST, ["claude-x-latest"])
    assert (await gw.call(REQUEST, ["claude-x-20260101"])).throttled_s == pytest.approx(30.0)
    assert gw.bucket("other-model") == "key:other-model"


async def test_a_429_takes_the_shared_bucket_down_to_what_the_provider_says() -> None:
    # The provider's bucket started refilling later than ours (or another client shares the
    # key): ours thinks 9 of 10 requests are left, the 429's headers say 0.
    time, store = FakeTime(), MemoryRateLimitStore()
    ten = {"default": RateLimitSetting(requests=10, input_tokens=10**6, output_tokens=10**6)}
    provider = answering()
    refused = limited(text_response("x"), 10, 0).rate_limits
    provider.fail_at(1, ProviderRateLimitedError("429", status=429, rate_limits=refused))
    gw = gateway(provider, time, store, limits=ten)
    call = await gw.call(REQUEST, ["primary"])
    assert call.rate_limited == 1
    other = gateway(answering(), time, store, limits=ten)
    # Without the correction the other process would send at once, into another 429.
    assert (await other.call(REQUEST, ["primary"])).throttled_s > 0
