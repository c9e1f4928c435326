"""Orchestration overhead: a 50-step run through the runtime vs a bare agent loop.

Both drive the same in-process fake model (fixed latency, default 20 ms) and the same tool;
the runtime adds journaling (in-memory backend), leases, events, limits and cancellation
checks. Runs alternate between the two so machine noise hits both; medians are compared.
Target: overhead <= 3 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from shared.agents import AgentRegistry, ToolContext
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.messages import ModelRequest
from shared.models.run import RunStatus
from shared.runtime import AgentRuntime
from tests.support.loop_agent import LoopProvider, loop_agent

TARGET_PCT = 3.0


async def bare_loop(steps: int, payload: int, latency_s: float) -> float:
    """What a notebook agent does: call, run tools, append, repeat. No durability."""
    agent = loop_agent(steps)
    provider = LoopProvider(steps, payload=payload, latency_s=latency_s)
    specs = [t.spec() for t in agent.tools]
    messages: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
    started = time.perf_counter()
    step = 0
    while True:
        step += 1
        response = await provider.complete(
            ModelRequest(model=agent.model, system=agent.system, messages=messages, tools=specs)
        )
        messages.append({"role": "assistant", "content": response.content})
        uses = response.tool_uses()
        if not uses:
            break
        results = []
        for use in uses:
            tool = agent.tool(use["name"])
            assert tool is not None
            ctx = ToolContext("bare", "t", step, use["id"], f"bare:{step}:{use['id']}")
            content = await tool.invoke(use["input"], ctx)
            results.append({"type": "tool_result", "tool_use_id": use["id"], "content": content})
        messages.append({"role": "user", "content": results})
    return time.perf_counter() - started


async def runtime_loop(steps: int, payload: int, latency_s: float) -> float:
    agent = loop_agent(steps)
    registry = AgentRegistry([agent])
    journal = MemoryJournal()
    runtime = AgentRuntime(
        journal, LoopProvider(steps, payload=payload, latency_s=latency_s), registry
    )
    started = time.perf_counter()
    run = await submit_run(journal, registry, SubmitRun(agent=agent.name, input="go"))
    done = await runtime.execute(run.run_id)
    elapsed = time.perf_counter() - started
    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.steps == steps + 1
    return elapsed


async def measure(steps: int, payload: int, latency_ms: float, repeats: int) -> dict[str, Any]:
    latency_s = latency_ms / 1000
    bare: list[float] = []
    durable: list[float] = []
    await runtime_loop(3, payload, 0.0)  # warm imports and pydantic schema caches
    for _ in range(repeats):
        bare.append(await bare_loop(steps, payload, latency_s))
        durable.append(await runtime_loop(steps, payload, latency_s))
    bare_s = statistics.median(bare)
    runtime_s = statistics.median(durable)
    overhead_pct = (runtime_s / bare_s - 1) * 100
    return {
        "benchmark": "runtime_overhead",
        "steps": steps,
        "model_latency_ms": latency_ms,
        "payload_bytes": payload,
        "repeats": repeats,
        "bare_loop_s": round(bare_s, 4),
        "runtime_s": round(runtime_s, 4),
        "overhead_per_step_ms": round((runtime_s - bare_s) / (steps + 1) * 1000, 3),
        "overhead_pct": round(overhead_pct, 2),
        "target_pct": TARGET_PCT,
        "meets_target": overhead_pct <= TARGET_PCT,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--payload", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.steps, args.payload, args.latency_ms, args.repeats))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
