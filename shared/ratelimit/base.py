"""Shared rate-limit buckets: the types and the store interface every backend implements.

A bucket is one provider key's limits for one model: requests, input tokens and output
tokens per ``period_s``, each a token bucket of capacity = the limit that refills
continuously (as the Anthropic API documents its own limits). The store keeps each bucket as
GCRA state (``shared.ratelimit.gcra``): per dimension, the time at which it would be full
again, so a take is one conditional write whose increments commute, and every process that
shares the store (every Lambda and worker) shares the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RateLimits:
    """Capacity per ``period_s`` of each dimension (all > 0)."""

    requests: int
    input_tokens: int
    output_tokens: int
    period_s: float = 60.0


@dataclass(frozen=True)
class Amounts:
    """How much of each dimension (a take, a give-back when negative)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )

    def __neg__(self) -> Amounts:
        return Amounts(-self.requests, -self.input_tokens, -self.output_tokens)

    def covers(self, other: Amounts) -> bool:
        return (
            self.requests >= other.requests
            and self.input_tokens >= other.input_tokens
            and self.output_tokens >= other.output_tokens
        )

    @property
    def is_zero(self) -> bool:
        return not (self.requests or self.input_tokens or self.output_tokens)


NOTHING = Amounts()


@dataclass(frozen=True)
class Remaining:
    """What a bucket had left right after a take (or when the take was refused)."""

    requests: float
    input_tokens: float
    output_tokens: float


@dataclass(frozen=True)
class Acquired:
    """A take's outcome: granted, or refused with how long until it would fit.

    ``limits`` are the ones the provider reported for this bucket (learned from its
    headers by any process), when some have been; None otherwise.
    """

    granted: bool
    wait_s: float
    remaining: Remaining
    limits: RateLimits | None = None


class RateLimitStore(Protocol):
    """Buckets shared by every process. ``now`` is epoch seconds (every caller's clock).

    Failures are ``RateLimitError``.
    """

    async def acquire(
        self,
        bucket: str,
        take: Amounts,
        limits: RateLimits,
        *,
        now: float,
        carry: Amounts = NOTHING,
    ) -> Acquired:
        """Take ``take`` if every dimension has room for it now, else take nothing.

        ``carry`` is applied with a granted take: the caller's earlier reservations
        reconciled with actual usage (negative gives back). A take larger than a
        dimension's capacity is clamped to it, so it fits once the bucket is full. Refused
        while the bucket is blocked (``block``); ``wait_s`` then counts to the block's end.
        """

    async def adjust(self, bucket: str, delta: Amounts, limits: RateLimits, *, now: float) -> None:
        """Apply ``delta`` unconditionally (a reconciliation nobody's take carried)."""

    async def block(self, bucket: str, until: float) -> None:
        """Refuse every take before ``until`` (the provider answered 429 with retry-after).
        A later ``until`` than the stored one wins; an earlier one changes nothing."""

    async def observe(
        self, bucket: str, remaining: Remaining, limits: RateLimits, *, now: float
    ) -> None:
        """The provider said this much remains: make the bucket hold no more than that
        (someone else uses the same key). A bucket already at or below it is left alone."""

    async def learn_limits(self, bucket: str, limits: RateLimits) -> None:
        """Store the limits the provider reports for this bucket, for every process."""

    async def learned_limits(self, bucket: str) -> RateLimits | None:
        """The limits some process stored for this bucket, if any."""
