"""Agent definitions: model chain, prompt, tools, limits and preferred shape."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.agents.tools import Tool
from shared.errors import AgentError
from shared.models.run import Shape

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class Limits(BaseModel):
    """Per-run limits. Reaching one ends the run as failed with a clear reason."""

    model_config = ConfigDict(frozen=True)

    max_steps: int = Field(default=25, ge=1)
    # A backstop: max_cost_usd usually binds first (10M input tokens cost $10 at $1/M). A
    # long run re-sends its growing prompt each step, so its total grows with steps squared.
    max_input_tokens: int = Field(
        default=10_000_000,
        ge=1,
        description="total over the run, prompt-cache reads and writes included",
    )
    max_output_tokens: int = Field(default=50_000, ge=1, description="total over the run")
    max_tokens_per_call: int = Field(default=4096, ge=1)
    max_cost_usd: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=900.0, gt=0)
    # The same tool with the same input asked for this many times ends the run (a loop).
    max_repeated_tool_calls: int = Field(default=5, ge=2)

    def tightened(self, budget: dict[str, float]) -> Limits:
        """Apply a per-request budget; it can only lower the agent's own limits."""
        updates: dict[str, Any] = {}
        if "max_steps" in budget:
            updates["max_steps"] = min(self.max_steps, int(budget["max_steps"]))
        if "max_cost_usd" in budget:
            updates["max_cost_usd"] = min(self.max_cost_usd, float(budget["max_cost_usd"]))
        for name in ("max_input_tokens", "max_output_tokens", "max_repeated_tool_calls"):
            if name in budget:
                updates[name] = min(getattr(self, name), int(budget[name]))
        return self.model_copy(update=updates)


@dataclass(frozen=True)
class Agent:
    name: str
    model: str
    system: str
    tools: tuple[Tool, ...] = ()
    fallback_models: tuple[str, ...] = ()
    limits: Limits = field(default_factory=Limits)
    shape: Shape = Shape.AUTO
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise AgentError(
                f"agent name {self.name!r} must match {_NAME.pattern} (lowercase, digits, - or _)"
            )
        names = [t.name for t in self.tools]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise AgentError(f"agent {self.name!r} has duplicate tools: {sorted(duplicates)}")

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model, *self.fallback_models)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "fallback_models": list(self.fallback_models),
            "shape": self.shape.value,
            "limits": self.limits.model_dump(),
            "tools": [
                {
                    **t.spec().model_dump(),
                    "side_effect": t.side_effect,
                    "requires_approval": t.requires_approval,
                }
                for t in self.tools
            ],
        }
