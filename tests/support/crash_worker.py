"""The process the crash test SIGKILLs: executes (or resumes) one run of the loop agent.

It talks to the journal (DynamoDB + S3 on a moto server, via AWS_ENDPOINT_URL) exactly as a
worker would, and prints one line per observable moment so the test can choose kill points
from progress rather than from the clock:

    lease <fence>                      this process took the run's lease
    model-start <step> / model-done <step>
    tool-start <tool_use_id> <idempotency_key>
    effect-applied <tool_use_id> <idempotency_key> <applied now: 1|0>
    tool-done <tool_use_id>
    finished <status>
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from pydantic import BaseModel

from agents.effects import apply_once
from shared.agents import Agent, AgentRegistry, Limits, ToolContext, tool
from shared.config import Settings
from shared.errors import LeaseHeldError
from shared.journal.base import Journal, RunPatch
from shared.journal.dynamodb import DynamoJournal
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Lease
from shared.runtime import AgentRuntime, RuntimeOptions
from tests.support.loop_agent import LoopProvider, payload_text

LEASE_POLL_S = 0.05


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class WorkInput(BaseModel):
    step: int
    size: int


class EffectInput(BaseModel):
    step: int


@tool(name="work")
def logged_work(args: WorkInput, ctx: ToolContext) -> str:
    """Produce this step's payload."""
    say(f"tool-start {ctx.tool_use_id} {ctx.idempotency_key}")
    out = payload_text(args.step, args.size)
    say(f"tool-done {ctx.tool_use_id}")
    return out


@tool(name="record_effect", side_effect=True)
def logged_effect(args: EffectInput, ctx: ToolContext) -> dict[str, Any]:
    """Apply an external effect exactly once per idempotency key."""
    say(f"tool-start {ctx.tool_use_id} {ctx.idempotency_key}")
    applied = apply_once(ctx.idempotency_key, "crash-test", {"step": args.step})
    say(f"effect-applied {ctx.tool_use_id} {ctx.idempotency_key} {int(applied)}")
    # The window the test aims at: the effect happened, its result is not journaled yet.
    time.sleep(0.02)
    say(f"tool-done {ctx.tool_use_id}")
    return {"applied": applied}


def crash_agent(steps: int) -> Agent:
    return Agent(
        name="loop",
        model="claude-haiku-4-5",
        system="Call the tool you are told to, then stop.",
        tools=(logged_work, logged_effect),
        limits=Limits(max_steps=steps + 1, max_output_tokens=10**7, max_cost_usd=1e3),
    )


class LoggedProvider(LoopProvider):
    async def complete(self, request: ModelRequest) -> ModelResponse:
        step = sum(1 for m in request.messages if m["role"] == "assistant") + 1
        say(f"model-start {step}")
        response = await super().complete(request)
        say(f"model-done {step}")
        return response


class AnnouncingJournal:
    """Delegates to the real journal; says which fence this process got."""

    def __init__(self, inner: Journal) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, patch: RunPatch | None = None
    ) -> Lease:
        lease = await self._inner.acquire_lease(run_id, owner, ttl_s, patch)
        say(f"lease {lease.fence}")
        return lease


async def main_async(args: argparse.Namespace) -> int:
    journal = AnnouncingJournal(DynamoJournal.from_settings(Settings.from_env()))
    provider = LoggedProvider(
        args.steps, payload=args.payload, latency_s=args.latency, effect_every=args.effect_every
    )
    runtime = AgentRuntime(
        journal,
        provider,
        AgentRegistry([crash_agent(args.steps)]),
        options=RuntimeOptions(lease_ttl_s=args.lease_ttl),
    )
    while True:
        try:
            run = await runtime.execute(args.run_id)
            break
        except LeaseHeldError:
            # The killed predecessor's lease has not expired yet: wait, as a worker would.
            await asyncio.sleep(LEASE_POLL_S)
    say(f"finished {run.status.value}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--payload", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--effect-every", type=int, default=3)
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
