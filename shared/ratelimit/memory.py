"""The in-memory rate-limit store: one process's buckets, the reference for every backend.

Every method runs without awaiting in between, so under asyncio each is atomic.
"""

from __future__ import annotations

from shared.ratelimit import gcra
from shared.ratelimit.base import NOTHING, Acquired, Amounts, RateLimits, Remaining
from shared.ratelimit.gcra import BucketState


class MemoryRateLimitStore:
    def __init__(self) -> None:
        self._buckets: dict[str, BucketState] = {}

    def state(self, bucket: str) -> BucketState:
        return self._buckets.get(bucket, BucketState())

    async def acquire(
        self,
        bucket: str,
        take: Amounts,
        limits: RateLimits,
        *,
        now: float,
        carry: Amounts = NOTHING,
    ) -> Acquired:
        state = self.state(bucket)
        plan = gcra.plan_take(state, take, limits, gcra.to_us(now), carry)
        if plan.granted:
            self._buckets[bucket] = BucketState(
                tat=plan.new_tat, blocked_until=state.blocked_until, limits=state.limits
            )
        return Acquired(plan.granted, plan.wait_s, plan.remaining, state.limits)

    async def adjust(self, bucket: str, delta: Amounts, limits: RateLimits, *, now: float) -> None:
        del now  # an adjustment does not depend on the time
        self._buckets[bucket] = gcra.adjusted(self.state(bucket), delta, limits)

    async def block(self, bucket: str, until: float) -> None:
        state = self.state(bucket)
        until_us = gcra.to_us(until)
        if until_us > state.blocked_until:
            self._buckets[bucket] = BucketState(state.tat, until_us, state.limits)

    async def observe(
        self, bucket: str, remaining: Remaining, limits: RateLimits, *, now: float
    ) -> None:
        state = self.state(bucket)
        floors = gcra.floor_tat(remaining, limits, gcra.to_us(now))
        tat = tuple(
            floor if current is None or current < floor else current
            for current, floor in zip(state.tat, floors, strict=True)
        )
        self._buckets[bucket] = BucketState(
            (tat[0], tat[1], tat[2]), state.blocked_until, state.limits
        )

    async def learn_limits(self, bucket: str, limits: RateLimits) -> None:
        state = self.state(bucket)
        self._buckets[bucket] = BucketState(state.tat, state.blocked_until, limits)

    async def learned_limits(self, bucket: str) -> RateLimits | None:
        return self.state(bucket).limits
