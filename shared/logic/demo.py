"""The demo tour `make dev` prints: every example agent run end to end, step by step.

It shows the three things the platform is for: a short run, a multi-step run whose worker
stops mid-run and is resumed by another from the journal, and a run that pauses for a human's
approval and continues after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from shared.agents import AgentRegistry
from shared.console import render
from shared.journal.base import Journal
from shared.logic.runs import ApprovalDecision, SubmitRun, decide_approval, submit_run
from shared.models.events import Event, EventType
from shared.models.run import Run, RunStatus
from shared.providers.base import Provider
from shared.runtime import AgentRuntime, RuntimeOptions

Print = Callable[[str], None]
POLL_S = 0.02


@dataclass(frozen=True)
class DemoResult:
    runs: list[Run]


class _Tailer:
    """Prints each run's events once, in order, remembering where each run's cursor is."""

    def __init__(self, journal: Journal, out: Print) -> None:
        self.journal = journal
        self.out = out
        self.cursors: dict[str, int] = {}

    async def drain(self, run_id: str) -> list[Event]:
        events = await self.journal.events(run_id, after=self.cursors.get(run_id, 0), limit=100)
        for event in events:
            self.out(render(event))
            self.cursors[run_id] = event.seq
        return events

    async def follow(self, run_id: str, work: asyncio.Task[Run]) -> None:
        """Print events while ``work`` runs, then whatever it journaled last."""
        while not work.done():
            if not await self.drain(run_id):
                await asyncio.sleep(POLL_S)
        while await self.drain(run_id):
            pass

    async def execute(self, runtime: AgentRuntime, run_id: str) -> Run:
        work = asyncio.create_task(runtime.execute(run_id))
        await self.follow(run_id, work)
        return await work

    async def stop_after_step(self, runtime: AgentRuntime, run_id: str, step: int) -> None:
        """Run until ``step`` is journaled, then stop the worker the way ECS stops a task."""
        work = asyncio.create_task(runtime.execute(run_id))
        while not work.done():
            events = await self.drain(run_id)
            if any(
                e.type is EventType.STEP_COMPLETED and e.data.get("step") == step for e in events
            ):
                work.cancel()
            elif not events:
                await asyncio.sleep(POLL_S)
        with contextlib.suppress(asyncio.CancelledError):
            await work
        while await self.drain(run_id):
            pass


async def run_tour(
    journal: Journal,
    provider: Provider,
    registry: AgentRegistry,
    out: Print = print,
) -> DemoResult:
    options = RuntimeOptions(lease_ttl_s=5.0)
    worker_a = AgentRuntime(journal, provider, registry, options=options, owner="worker-a")
    worker_b = AgentRuntime(journal, provider, registry, options=options, owner="worker-b")
    runs: list[Run] = []
    tail = _Tailer(journal, out)

    out("\n1. ticket-triage: a one-step classifier (sync shape)")
    run = await submit_run(
        journal,
        registry,
        SubmitRun(agent="ticket-triage", input="I was charged twice for my billing plan"),
    )
    runs.append(await tail.execute(worker_a, run.run_id))

    out("\n2. researcher: multi-step with a side-effecting tool; worker-a stops after step 2,")
    out("   worker-b resumes from the journal: journaled model calls and tool results are not")
    out("   repeated; a read-only tool call that was in flight runs again")
    run = await submit_run(
        journal,
        registry,
        SubmitRun(agent="researcher", input="How do durable agents survive crashes?"),
    )
    await tail.stop_after_step(worker_a, run.run_id, 2)
    out("   -- worker-a stopped; worker-b takes over --")
    runs.append(await tail.execute(worker_b, run.run_id))

    out("\n3. ops-assistant: pauses for human approval before restarting a service")
    run = await submit_run(
        journal, registry, SubmitRun(agent="ops-assistant", input="checkout is slow")
    )
    paused = await tail.execute(worker_a, run.run_id)
    if paused.status is RunStatus.AWAITING_APPROVAL:
        out("   -- no worker holds the run while it waits; a human approves it --")
        await decide_approval(
            journal, run.run_id, ApprovalDecision(decision="approve", comment="go ahead")
        )
        runs.append(await tail.execute(worker_b, run.run_id))
    else:
        runs.append(paused)
    return DemoResult(runs=runs)


def summary(result: DemoResult) -> list[str]:
    lines = [f"{'run':<32} {'agent':<14} {'status':<10} {'steps':>5} {'tokens':>7} {'cost $':>9}"]
    for r in result.runs:
        tokens = r.usage.input_tokens + r.usage.output_tokens
        lines.append(
            f"{r.run_id:<32} {r.agent:<14} {r.status.value:<10} {r.steps:>5} {tokens:>7} "
            f"{r.usage.cost_usd:>9.5f}"
        )
    return lines
