"""Per-run limits, checked at every step boundary before the next model call."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

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
    input_tokens = (
        usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    )
    checks: list[tuple[str, float, float]] = [
        ("max_steps", steps, limits.max_steps),
        ("max_input_tokens", input_tokens, limits.max_input_tokens),
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


def daily_budget_exceeded(tenant: str, *, spent_usd: float, budget_usd: float) -> RunError | None:
    if spent_usd < budget_usd:
        return None
    return RunError(
        code="budget_exceeded",
        message=(
            f"tenant {tenant!r} reached its daily budget, tenant_daily_budget_usd={budget_usd:g} "
            f"(spent ${spent_usd:.4f} today, UTC)"
        ),
        details={"limit": "tenant_daily_budget_usd", "value": budget_usd, "used": spent_usd},
    )


def tool_call_signature(use: dict[str, Any]) -> str:
    """A tool call's identity for loop detection: its name and canonical input."""
    return f"{use.get('name', '')}\n{json.dumps(use.get('input') or {}, sort_keys=True)}"


class RepeatedCalls:
    """Loop detection: this run's tool calls counted by signature, each message once, so a
    check costs the messages added since the last one, not the whole run."""

    def __init__(self, first: int = 0) -> None:
        self._seen: Counter[str] = Counter()
        self._counted = first  # messages[first:_counted] are counted

    def check(
        self,
        messages: list[dict[str, Any]],
        end: int,
        pending: list[dict[str, Any]],
        limits: Limits,
    ) -> RunError | None:
        """A pending call made ``max_repeated_tool_calls`` times in this run, this one included.

        ``messages[:end]`` are the run's messages before the response that asked for
        ``pending`` (from the index given at construction: earlier runs of a thread do not
        count).
        """
        for message in messages[self._counted : end]:
            if message.get("role") == "assistant" and isinstance(message.get("content"), list):
                uses = [b for b in message["content"] if b.get("type") == "tool_use"]
                self._seen.update(tool_call_signature(use) for use in uses)
        self._counted = max(self._counted, end)
        asked: Counter[str] = Counter()
        for use in pending:
            signature = tool_call_signature(use)
            asked[signature] += 1
            repeats = self._seen[signature] + asked[signature]
            if repeats >= limits.max_repeated_tool_calls:
                return RunError(
                    code="loop_detected",
                    message=(
                        f"the model asked for {use.get('name')} with the same input {repeats} "
                        f"times (max_repeated_tool_calls={limits.max_repeated_tool_calls})"
                    ),
                    details={
                        "limit": "max_repeated_tool_calls",
                        "value": limits.max_repeated_tool_calls,
                        "tool": use.get("name"),
                        "repeats": repeats,
                    },
                )
        return None
