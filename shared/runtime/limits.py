"""Per-run limits, checked at every step boundary before the next model call."""

from __future__ import annotations

from shared.agents.definition import Limits
from shared.models.run import RunError, Usage


def timeout_error(limits: Limits) -> RunError:
    return RunError(
        code="timeout",
        message=f"run exceeded its timeout of {limits.timeout_s:g}s",
        details={"limit": "timeout_s", "value": limits.timeout_s},
    )


def exceeded(limits: Limits, *, steps: int, usage: Usage, elapsed_s: float) -> RunError | None:
    if elapsed_s >= limits.timeout_s:
        return timeout_error(limits)
    checks: list[tuple[str, float, float]] = [
        ("max_steps", steps, limits.max_steps),
        ("max_output_tokens", usage.output_tokens, limits.max_output_tokens),
        ("max_cost_usd", usage.cost_usd, limits.max_cost_usd),
    ]
    for name, used, limit in checks:
        if used >= limit:
            return RunError(
                code="budget_exceeded",
                message=f"run reached {name}={limit:g} (used {used:g})",
                details={"limit": name, "value": limit, "used": used},
            )
    return None
