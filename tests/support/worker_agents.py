"""Agents for the worker tests, loaded by worker processes via SWITCHYARD_AGENT_MODULES.

- ``stepper``: one tool, ``step``, which the model calls once per step (the fake Messages API
  server's ``StepLoopResponder`` with ``tool_name="step"``, or ``StepProvider`` in-process).
  The tool waits ``SWITCHYARD_TEST_TOOL_S`` seconds (default 0.05) and appends
  ``start|done <pid> <tool_use_id>`` to the file named by ``SWITCHYARD_TEST_TRACE`` (if set),
  so a test can see which process executed which call and whether one was executed twice.
- ``poison``: the same tool, but it raises ``ToolCrash``, a ``BaseException`` the runtime does
  not turn into a tool error: every attempt escapes the runtime, as a crashing process would.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.agents import Agent, Limits, ToolContext, tool
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Usage

TRACE_ENV = "SWITCHYARD_TEST_TRACE"
TOOL_SECONDS_ENV = "SWITCHYARD_TEST_TOOL_S"
MODEL = "claude-haiku-4-5"


class StepInput(BaseModel):
    step: int


class ToolCrash(BaseException):
    """Escapes the runtime's tool error handling, like a segfault would end the process."""


def trace(event: str, tool_use_id: str) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    # One short O_APPEND write per line: lines from several processes never interleave.
    with Path(path).open("a") as f:
        f.write(f"{event} {os.getpid()} {tool_use_id}\n")


def read_trace(path: Path) -> list[tuple[str, int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, pid, tool_use_id = line.split()
        out.append((event, int(pid), tool_use_id))
    return out


@tool(name="step")
async def slow_step(args: StepInput, ctx: ToolContext) -> str:
    """Do this step's work (slowly)."""
    trace("start", ctx.tool_use_id)
    await asyncio.sleep(float(os.environ.get(TOOL_SECONDS_ENV, "0.05")))
    trace("done", ctx.tool_use_id)
    return f"step {args.step} done"


@tool(name="step")
async def crashing_step(args: StepInput, ctx: ToolContext) -> str:
    """Do this step's work (and crash)."""
    trace("start", ctx.tool_use_id)
    raise ToolCrash(f"step {args.step} crashed")


LIMITS = Limits(max_steps=200, max_output_tokens=10_000_000, max_cost_usd=1_000.0, timeout_s=600)

stepper = Agent(
    name="stepper",
    model=MODEL,
    system="Call the step tool once per step until told to stop.",
    tools=(slow_step,),
    limits=LIMITS,
)

poison = Agent(
    name="poison",
    model=MODEL,
    system="Call the step tool.",
    tools=(crashing_step,),
    limits=LIMITS,
)


class StepProvider:
    """In-process twin of the fake server's ``StepLoopResponder``: step k (assistant turns + 1)
    calls ``step`` with tool_use id ``toolu_{k:04d}`` until ``steps`` are done, then answers.
    ``calls[k]`` counts the model calls made for step k."""

    def __init__(self, steps: int, *, latency_s: float = 0.0) -> None:
        self.steps = steps
        self.latency_s = latency_s
        self.calls: dict[int, int] = {}

    async def complete(self, request: ModelRequest) -> ModelResponse:
        step = sum(1 for m in request.messages if m["role"] == "assistant") + 1
        self.calls[step] = self.calls.get(step, 0) + 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        content: list[dict[str, Any]]
        if step > self.steps:
            content = [{"type": "text", "text": f"Done after {self.steps} steps."}]
            stop_reason = "end_turn"
        else:
            content = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{step:04d}",
                    "name": "step",
                    "input": {"step": step},
                }
            ]
            stop_reason = "tool_use"
        return ModelResponse(
            id=f"msg_{step:04d}",
            model=request.model,
            content=content,
            stop_reason=stop_reason,
            usage=Usage(input_tokens=10, output_tokens=5),
        )
