"""Building blocks for runtime tests: recording tools, a harness, a fake clock, journal checks.

Tools are built per ``Toolbox`` (closures over it), so each test counts its own calls. A test
can make a tool's next call raise (any ``BaseException``, to simulate a crash mid-call) or
hold it on a :class:`Gate`; both are one-shot, so a resumed run goes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from shared.agents import Agent, AgentRegistry, Limits, Tool, ToolContext, tool
from shared.errors import SwitchyardError
from shared.journal import MemoryJournal
from shared.logic.runs import Budget, SubmitRun, submit_run
from shared.models.events import Event
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import Run
from shared.providers.base import Provider
from shared.runtime import AgentRuntime, RuntimeOptions
from shared.runtime.state import replay
from tests.support.scripted_provider import Gate

SECRET = "sk-test-5ecret-value-0123456789"


class LookupInput(BaseModel):
    query: str = Field(description="What to look up", max_length=50)
    limit: int = Field(default=3, ge=1, le=10)


class EmailInput(BaseModel):
    to: str
    body: str


class DeployInput(BaseModel):
    service: str
    version: str


class Empty(BaseModel):
    pass


@dataclass
class ToolInvocation:
    name: str
    input: dict[str, Any]
    ctx: ToolContext


class Interrupted(BaseException):
    """A process-level interruption raised mid-tool (not an ``Exception``: tools can't catch it)."""


class Toolbox:
    def __init__(self) -> None:
        self.invocations: list[ToolInvocation] = []
        self.raise_next: dict[str, BaseException] = {}
        self.raise_at_step: dict[tuple[str, int], BaseException] = {}
        self.gates: dict[str, Gate] = {}
        # Called with the tool's name as each invocation starts (e.g. to cancel mid-batch).
        self.on_invoke: Callable[[str], object] | None = None
        self.tools: dict[str, Tool] = {t.name: t for t in self._build()}

    # ---- control ---------------------------------------------------------------------------

    def block_next(self, name: str) -> Gate:
        gate = Gate()
        self.gates[name] = gate
        return gate

    def calls(self, name: str) -> list[ToolInvocation]:
        return [i for i in self.invocations if i.name == name]

    def _record(self, name: str, args: BaseModel, ctx: ToolContext) -> None:
        self.invocations.append(ToolInvocation(name, args.model_dump(), ctx))

    async def _enter(self, name: str, args: BaseModel, ctx: ToolContext) -> None:
        self._record(name, args, ctx)
        if self.on_invoke is not None:
            self.on_invoke(name)
        gate = self.gates.pop(name, None)
        if gate is not None:
            await gate.hold()
        exc = self.raise_next.pop(name, None) or self.raise_at_step.pop((name, ctx.step), None)
        if exc is not None:
            raise exc

    # ---- the tools -------------------------------------------------------------------------

    def _build(self) -> list[Tool]:
        box = self

        @tool
        async def lookup(args: LookupInput, ctx: ToolContext) -> dict[str, object]:
            """Look something up (read-only)."""
            await box._enter("lookup", args, ctx)
            return {"query": args.query, "hits": args.limit}

        @tool
        def lookup_sync(args: LookupInput, ctx: ToolContext) -> str:
            """A synchronous read-only lookup."""
            box._record("lookup_sync", args, ctx)
            return f"sync result for {args.query}"

        @tool(side_effect=True)
        async def send_email(args: EmailInput, ctx: ToolContext) -> dict[str, object]:
            """Send an email (side effect)."""
            await box._enter("send_email", args, ctx)
            return {"sent_to": args.to}

        @tool(side_effect=True, requires_approval=True)
        async def deploy(args: DeployInput, ctx: ToolContext) -> dict[str, object]:
            """Deploy a service version (a human approves it)."""
            await box._enter("deploy", args, ctx)
            return {"deployed": args.service, "version": args.version}

        @tool
        async def explode(args: Empty, ctx: ToolContext) -> str:
            """Always fails."""
            await box._enter("explode", args, ctx)
            raise ValueError("kaboom: disk on fire")

        @tool
        def reveal(args: Empty, ctx: ToolContext) -> str:
            """Echoes a secret (a careless tool)."""
            box._record("reveal", args, ctx)
            return f"the key is {ctx.secret('api_key')}"

        @tool
        async def leak_error(args: Empty, ctx: ToolContext) -> str:
            """Raises with a secret in its message."""
            await box._enter("leak_error", args, ctx)
            raise RuntimeError(f"auth failed for key {ctx.secret('api_key')}")

        @tool
        async def leak_details(args: Empty, ctx: ToolContext) -> str:
            """Raises a SwitchyardError carrying a secret in its details."""
            await box._enter("leak_details", args, ctx)
            raise SwitchyardError("upstream refused", details={"key": ctx.secret("api_key")})

        @tool
        async def missing_secret(args: Empty, ctx: ToolContext) -> str:
            """Asks for a secret nobody configured."""
            await box._enter("missing_secret", args, ctx)
            return ctx.secret("not_configured")

        return [
            lookup,
            lookup_sync,
            send_email,
            deploy,
            explode,
            reveal,
            leak_error,
            leak_details,
            missing_secret,
        ]

    def agent(
        self,
        *tool_names: str,
        name: str = "tester",
        limits: Limits | None = None,
        fallback_models: tuple[str, ...] = (),
    ) -> Agent:
        return Agent(
            name=name,
            model="test-model",
            fallback_models=fallback_models,
            system="You are a test agent.",
            tools=tuple(self.tools[n] for n in tool_names),
            limits=limits or Limits(),
        )


class FakeClock:
    """Wall clock for the journal's lease expiry; moves only when the test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    agents: list[Agent]
    secrets: dict[str, str] = field(default_factory=dict)
    journal: MemoryJournal = field(default_factory=MemoryJournal)

    def __post_init__(self) -> None:
        self.registry = AgentRegistry(self.agents)

    def runtime(
        self,
        provider: Provider,
        *,
        options: RuntimeOptions | None = None,
        owner: str | None = None,
        **extra: Any,
    ) -> AgentRuntime:
        """``extra``: more AgentRuntime arguments (gateway, usage, daily_budget...)."""
        return AgentRuntime(
            self.journal,
            provider,
            self.registry,
            options=options,
            owner=owner,
            secrets=self.secrets,
            **extra,
        )

    async def submit(
        self, input: Any = "hello", *, agent: str = "tester", budget: Budget | None = None
    ) -> str:
        run = await submit_run(
            self.journal,
            self.registry,
            SubmitRun(agent=agent, input=input, budget=budget or Budget()),
        )
        return run.run_id

    async def records(self, run_id: str) -> list[JournalRecord]:
        return await self.journal.records(run_id)

    async def events(self, run_id: str) -> list[Event]:
        return await self.journal.events(run_id, limit=10_000)


def kinds(records: list[JournalRecord]) -> list[RecordKind]:
    return [r.kind for r in records]


def assert_journal_consistent(records: list[JournalRecord], run: Run) -> None:
    """Seqs contiguous from 1, events numbered inside their record, one model record per step
    in order, and a replay that agrees with the stored run."""
    assert records, "no records"
    expected_seq = 1
    for record in records:
        assert record.seq == expected_seq, [r.seq for r in records]
        assert [e.seq for e in record.events] == list(
            range(record.seq, record.seq + len(record.events))
        )
        expected_seq = record.next_seq
    steps = [r.step for r in records if r.kind is RecordKind.MODEL]
    assert steps == list(range(1, len(steps) + 1)), steps
    state = replay(records)
    assert state.step == run.steps
    if run.status.is_terminal:
        assert state.status is run.status
        assert state.error == run.error
        assert state.output == run.output
        assert state.usage == run.usage


def conversation(records: list[JournalRecord], user_input: Any) -> list[dict[str, Any]]:
    return replay(records).messages(user_input)


async def wait_for(event: asyncio.Event) -> None:
    """Await ``event``, failing the test (not hanging it) if it never comes."""
    async with asyncio.timeout(5):
        await event.wait()
