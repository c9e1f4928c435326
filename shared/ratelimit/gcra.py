"""Token buckets as GCRA state: the arithmetic every backend shares.

GCRA (the generic cell rate algorithm) keeps, per dimension, one number: the theoretical
arrival time ``tat``, the instant at which the bucket would be full again. A unit of a
dimension with limit ``L`` per period ``P`` costs ``P / L`` of time; a take of ``n`` units
fits when ``max(tat, now) + n * P / L <= now + P`` (a full bucket holds ``L``), and moves
``tat`` to that sum. That is exactly a token bucket of capacity ``L`` refilling at ``L / P``,
but a take never needs the refill computed by the writer: when ``tat >= now`` it is
``tat += cost`` whatever ``tat`` is, so concurrent takes from many processes commute, and a
DynamoDB conditional ``SET tat = tat + :cost`` never conflicts with another one. Only an idle
dimension (``tat < now``) is written as ``now + cost``, guarded by ``tat < now``.

Times are integer microseconds since the epoch, so every backend computes the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.ratelimit.base import Amounts, RateLimits, Remaining

US = 1_000_000
DIMENSIONS = ("requests", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class BucketState:
    """A bucket as stored. ``tat`` per dimension (None: never taken), a block, limits."""

    tat: tuple[int | None, int | None, int | None] = (None, None, None)
    blocked_until: int = 0
    limits: RateLimits | None = None


@dataclass(frozen=True)
class DimensionPlan:
    """How one dimension is written by a take.

    ``idle``: ``tat`` is before now (``floor``), the new one is ``value`` (guard: ``tat <
    floor`` or absent). Otherwise ``tat`` is advanced by ``value``, the take and the carry
    together (guard: ``floor <= tat <= ceiling``, which is what fitting means).
    """

    idle: bool
    value: int
    floor: int
    ceiling: int


@dataclass(frozen=True)
class TakePlan:
    granted: bool
    wait_s: float
    dimensions: tuple[DimensionPlan, DimensionPlan, DimensionPlan]
    new_tat: tuple[int, int, int]
    remaining: Remaining


def to_us(seconds: float) -> int:
    return math.floor(seconds * US)


def _limit(limits: RateLimits, index: int) -> int:
    return (limits.requests, limits.input_tokens, limits.output_tokens)[index]


def _amount(amounts: Amounts, index: int) -> int:
    return (amounts.requests, amounts.input_tokens, amounts.output_tokens)[index]


def cost_us(amount: int, limit: int, period_us: int, *, clamp: bool) -> int:
    """Time ``amount`` units stand for. Rounded up: a take never costs less than it is, and a
    give-back (negative) never returns more than it was."""
    if clamp:
        amount = min(amount, limit)
    return -((-amount * period_us) // limit)


def remaining_units(tat: int | None, now: int, limit: int, period_us: int) -> float:
    """Units the bucket holds at ``now``."""
    effective = now if tat is None else max(tat, now)
    return max(0.0, min(float(limit), (now + period_us - effective) * limit / period_us))


def remaining(state: BucketState, limits: RateLimits, now: int) -> Remaining:
    period = to_us(limits.period_s)
    values = [remaining_units(state.tat[i], now, _limit(limits, i), period) for i in range(3)]
    return Remaining(*values)


def plan_take(
    state: BucketState, take: Amounts, limits: RateLimits, now: int, carry: Amounts
) -> TakePlan:
    """Whether ``take`` (with ``carry``) fits the bucket at ``now``, and how to write it."""
    period = to_us(limits.period_s)
    plans: list[DimensionPlan] = []
    new_tat: list[int] = []
    wait = 0
    for i in range(3):
        limit = _limit(limits, i)
        cost = cost_us(_amount(take, i), limit, period, clamp=True)
        shift = cost_us(_amount(carry, i), limit, period, clamp=False)
        tat = state.tat[i]
        if tat is None or tat < now:
            # Idle: the bucket is full. A give-back cannot fill it further; a charge counts,
            # but never beyond an empty bucket, so an idle bucket always grants.
            value = now + cost + min(max(shift, 0), period - cost)
            plans.append(DimensionPlan(idle=True, value=value, floor=now, ceiling=0))
            new_tat.append(value)
        else:
            ceiling = now + period - cost - shift
            dim = DimensionPlan(idle=False, value=cost + shift, floor=now, ceiling=ceiling)
            plans.append(dim)
            new_tat.append(tat + cost + shift)
            wait = max(wait, tat - ceiling)
    if state.blocked_until > now:
        wait = max(wait, state.blocked_until - now)
    granted = wait <= 0
    after = BucketState(tat=(new_tat[0], new_tat[1], new_tat[2])) if granted else state
    return TakePlan(
        granted=granted,
        wait_s=max(0, wait) / US,
        dimensions=(plans[0], plans[1], plans[2]),
        new_tat=(new_tat[0], new_tat[1], new_tat[2]),
        remaining=remaining(after, limits, now),
    )


def adjusted(state: BucketState, delta: Amounts, limits: RateLimits) -> BucketState:
    """``state`` with ``delta`` applied to every dimension (absent ones start at zero)."""
    period = to_us(limits.period_s)
    tat = tuple(
        (state.tat[i] or 0) + cost_us(_amount(delta, i), _limit(limits, i), period, clamp=False)
        for i in range(3)
    )
    return BucketState(
        tat=(tat[0], tat[1], tat[2]), blocked_until=state.blocked_until, limits=state.limits
    )


def floor_tat(remaining: Remaining, limits: RateLimits, now: int) -> tuple[int, int, int]:
    """The ``tat`` per dimension at which the bucket holds exactly ``remaining`` at ``now``."""
    period = to_us(limits.period_s)
    held = (remaining.requests, remaining.input_tokens, remaining.output_tokens)
    return (
        now + period - int(held[0] * period // limits.requests),
        now + period - int(held[1] * period // limits.input_tokens),
        now + period - int(held[2] * period // limits.output_tokens),
    )
