"""A deterministic N-step agent for benchmarks and crash tests.

``LoopProvider`` answers step k (k = assistant messages so far + 1) with one tool_use of
``work`` (or of ``record_effect`` every ``effect_every`` steps) until ``steps`` tool steps are
done, then ends the turn. Its tool_use ids depend only on the step, and ``work`` returns
``payload`` bytes of text, so a run's conversation size is known in advance.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from typing import Any

from pydantic import BaseModel

from agents.effects import apply_once
from shared.agents import Agent, Limits, ToolContext, tool
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Usage


class WorkInput(BaseModel):
    step: int
    size: int
    incompressible: bool = False


class EffectInput(BaseModel):
    step: int


def random_text(size: int) -> str:
    """``size`` characters of base64 noise: nothing to gain from compression but 6/8."""
    return base64.b64encode(os.urandom(size))[:size].decode()


def payload_text(step: int, size: int) -> str:
    """``size`` characters of hex text: compresses about 2:1, less than prose or JSON do."""
    seed = hashlib.sha256(f"step-{step}".encode()).hexdigest()
    out: list[str] = []
    while sum(len(p) for p in out) < size:
        seed = hashlib.sha256(seed.encode()).hexdigest()
        out.append(seed + " ")
    return "".join(out)[:size]


@tool
def work(args: WorkInput) -> str:
    """Produce this step's payload."""
    if args.incompressible:
        return random_text(args.size)
    return payload_text(args.step, args.size)


@tool(side_effect=True)
def record_effect(args: EffectInput, ctx: ToolContext) -> dict[str, Any]:
    """Apply an external effect exactly once per idempotency key."""
    applied = apply_once(ctx.idempotency_key, "loop", {"step": args.step})
    return {"applied": applied, "key": ctx.idempotency_key}


def loop_agent(steps: int, *, name: str = "loop") -> Agent:
    return Agent(
        name=name,
        model="claude-haiku-4-5",
        system="Call the tool you are told to, then stop.",
        tools=(work, record_effect),
        limits=Limits(
            max_steps=steps + 1,
            # Long runs re-send a growing prompt: 200 steps of 2 KB are ~10M input tokens.
            max_input_tokens=1_000_000_000,
            max_output_tokens=10_000_000,
            max_cost_usd=1_000.0,
            timeout_s=3600,
        ),
    )


class LoopProvider:
    def __init__(
        self,
        steps: int,
        *,
        payload: int = 2000,
        latency_s: float = 0.0,
        effect_every: int = 0,
        incompressible: bool = False,
    ) -> None:
        self.steps = steps
        self.payload = payload
        self.latency_s = latency_s
        self.effect_every = effect_every
        self.incompressible = incompressible
        self.calls = 0

    def response_for(self, step: int) -> ModelResponse:
        content: list[dict[str, Any]]
        if step > self.steps:
            content = [{"type": "text", "text": f"done after {self.steps} steps"}]
            stop_reason = "end_turn"
        elif self.effect_every and step % self.effect_every == 0:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{step:04d}",
                    "name": "record_effect",
                    "input": {"step": step},
                }
            ]
            stop_reason = "tool_use"
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{step:04d}",
                    "name": "work",
                    "input": {
                        "step": step,
                        "size": self.payload,
                        "incompressible": self.incompressible,
                    },
                }
            ]
            stop_reason = "tool_use"
        return ModelResponse(
            id=f"msg_{step:04d}",
            model="claude-haiku-4-5",
            content=content,
            stop_reason=stop_reason,
            usage=Usage(input_tokens=100 + step * (self.payload // 4), output_tokens=20),
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        step = sum(1 for m in request.messages if m["role"] == "assistant") + 1
        return self.response_for(step)


def conversation_bytes(messages: list[dict[str, Any]]) -> int:
    return len(json.dumps(messages, separators=(",", ":")).encode())
