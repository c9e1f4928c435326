"""Which limits apply to a model: the configured ones, tightened by what the provider says."""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import RateLimitSetting
from shared.models.messages import RateLimitInfo
from shared.ratelimit import RateLimits, Remaining

DEFAULT_KEY = "default"


class LimitTable:
    """Configured limits by model-name prefix (longest wins), ``default`` for the rest."""

    def __init__(self, configured: Mapping[str, RateLimitSetting], period_s: float) -> None:
        self._configured = dict(configured)
        self._prefixes = sorted((k for k in configured if k != DEFAULT_KEY), key=len, reverse=True)
        self.period_s = period_s

    def __bool__(self) -> bool:
        return bool(self._configured)

    def class_of(self, model: str) -> str:
        """The configured prefix that covers ``model`` (not ``default``), else the model."""
        return next((p for p in self._prefixes if model.startswith(p)), model)

    def configured(self, model: str) -> RateLimits | None:
        setting = next(
            (self._configured[p] for p in self._prefixes if model.startswith(p)),
            self._configured.get(DEFAULT_KEY),
        )
        if setting is None:
            return None
        return RateLimits(
            requests=setting.requests,
            input_tokens=setting.input_tokens,
            output_tokens=setting.output_tokens,
            period_s=self.period_s,
        )


def tightest(configured: RateLimits | None, learned: RateLimits | None) -> RateLimits | None:
    """Per dimension, the lower of the two: an operator may keep below the provider's limit
    (a key shared with other systems), and the provider's own limit always binds."""
    if configured is None or learned is None:
        return configured or learned
    return RateLimits(
        requests=min(configured.requests, learned.requests),
        input_tokens=min(configured.input_tokens, learned.input_tokens),
        output_tokens=min(configured.output_tokens, learned.output_tokens),
        period_s=configured.period_s,
    )


def reported_limits(info: RateLimitInfo | None, period_s: float) -> RateLimits | None:
    """The limits a response's headers state, when they state all three."""
    if info is None:
        return None
    values = (info.requests.limit, info.input_tokens.limit, info.output_tokens.limit)
    if any(v is None or v <= 0 for v in values):
        return None
    requests, input_tokens, output_tokens = (int(v or 0) for v in values)
    return RateLimits(requests, input_tokens, output_tokens, period_s)


def reported_remaining(info: RateLimitInfo | None, fallback: Remaining) -> Remaining | None:
    """What the provider says is left (dimensions it does not state: ``fallback``'s)."""
    if info is None:
        return None
    values = (info.requests.remaining, info.input_tokens.remaining, info.output_tokens.remaining)
    if all(v is None for v in values):
        return None
    return Remaining(
        requests=fallback.requests if values[0] is None else float(values[0]),
        input_tokens=fallback.input_tokens if values[1] is None else float(values[1]),
        output_tokens=fallback.output_tokens if values[2] is None else float(values[2]),
    )
