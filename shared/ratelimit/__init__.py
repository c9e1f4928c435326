"""Shared rate-limit buckets for model calls (``base``), one store per backend."""

from shared.ratelimit.base import (
    NOTHING,
    Acquired,
    Amounts,
    RateLimits,
    RateLimitStore,
    Remaining,
)

__all__ = ["NOTHING", "Acquired", "Amounts", "RateLimitStore", "RateLimits", "Remaining"]
