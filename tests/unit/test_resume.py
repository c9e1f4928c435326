"""Resume: an interrupted run, executed again by a new runtime, ends as if never interrupted.

A journaled model call is never repeated, a journaled tool result is never re-executed, and a
tool interrupted mid-call runs again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shared.errors import ProviderError
from shared.journal import MemoryJournal, RunPatch
from shared.logic.runs import ApprovalDecision, decide_approval
from shared.models.events import EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import Lease, Run, RunStatus
from shared.runtime import RuntimeOptions
from tests.support.runtime_kit import (
    FakeClock,
    Harness,
    Interrupted,
    Toolbox,
    assert_journal_consistent,
    conversation,
    wait_for,
)
from tests.support.scripted_provider import ScriptedProvider, plan

INPUT = {"task": "check and notify"}
TURNS = (
    [("lookup", {"query": "a"})],  # step 1: read-only, rides with the next model record
    [("send_email", {"to": "ops@example.com", "body": "hi"})],  # step 2: journaled at once
    [("lookup", {"query": "b"}), ("lookup_sync", {"query": "c"})],  # step 3: a batch
    "all done",
)
STEPS = len(TURNS)
TOOLS = ("lookup", "send_email", "lookup_sync")


def _harness(toolbox: Toolbox, **kwargs: Any) -> Harness:
    return Harness([toolbox.agent(*TOOLS)], **kwargs)


def _provider() -> ScriptedProvider:
    return ScriptedProvider(responder=plan(*TURNS))


@dataclass(frozen=True)
class Baseline:
    run: Run
    messages: list[dict[str, Any]]  # the final conversation, rebuilt from the journal
    last_request: list[dict[str, Any]]  # what the model saw on its last call


@pytest.fixture
async def baseline() -> Baseline:
    """The same run, never interrupted."""
    h = _harness(Toolbox())
    provider = _provider()
    run_id = await h.submit(INPUT)
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert dict(provider.calls_per_step) == {s: 1 for s in range(1, STEPS + 1)}
    messages = conversation(await h.records(run_id), INPUT)
    return Baseline(run, messages, provider.requests[-1].messages)


def _journaled_results(records: list[JournalRecord]) -> set[str]:
    return {r.tool_use_id for rec in records for r in rec.tool_results}


async def _assert_same_as_baseline(
    h: Harness, run: Run, base: Baseline, last: ScriptedProvider
) -> None:
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == base.run.output
    assert run.steps == base.run.steps == STEPS
    records = await h.records(run.run_id)
    assert conversation(records, INPUT) == base.messages
    assert last.requests[-1].messages == base.last_request
    assert_journal_consistent(records, run)


# ---- the model call fails or the worker dies around it -------------------------------------


@pytest.mark.parametrize("k", range(1, STEPS + 1))
@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("worker crashed"),
        ProviderError("503 from upstream", status=503, retryable=True),
        Interrupted("power cut"),
    ],
    ids=["exception", "retryable-provider-error", "base-exception"],
)
async def test_provider_failing_at_call_k(
    toolbox: Toolbox, baseline: Baseline, k: int, exc: BaseException
) -> None:
    h = _harness(toolbox)
    run_id = await h.submit(INPUT)
    first = _provider()
    first.fail_at(k, exc)
    with pytest.raises(type(exc)):
        await h.runtime(first).execute(run_id)

    interrupted = await h.journal.get_run(run_id)
    assert interrupted.status is RunStatus.QUEUED  # handed back, lease released
    journaled = _journaled_results(await h.records(run_id))
    before = Counter(i.ctx.tool_use_id for i in toolbox.invocations)

    second = _provider()
    run = await h.runtime(second).execute(run_id)

    await _assert_same_as_baseline(h, run, baseline, second)
    # Steps before k were journaled by the first runtime and never asked again.
    assert dict(first.calls_per_step) == {s: 1 for s in range(1, k + 1)}
    assert dict(second.calls_per_step) == {s: 1 for s in range(k, STEPS + 1)}
    after = Counter(i.ctx.tool_use_id for i in toolbox.invocations)
    for use_id in journaled:
        assert after[use_id] == before[use_id] == 1, use_id
    # The side effect is journaled the moment it returns: exactly one send, whatever k is.
    assert len(toolbox.calls("send_email")) == 1


async def test_worker_task_cancelled_mid_model_call(toolbox: Toolbox, baseline: Baseline) -> None:
    """SIGTERM-style: the task running the loop is cancelled while the model call is pending."""
    h = _harness(toolbox)
    run_id = await h.submit(INPUT)
    first = _provider()
    gate = first.block_at(3)
    task = asyncio.create_task(h.runtime(first).execute(run_id))
    await wait_for(gate.entered)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await h.journal.get_run(run_id)).status is RunStatus.QUEUED

    second = _provider()
    run = await h.runtime(second).execute(run_id)
    await _assert_same_as_baseline(h, run, baseline, second)
    assert first.completed == 2
    assert dict(second.calls_per_step) == {3: 1, 4: 1}


# ---- a tool is interrupted mid-call --------------------------------------------------------


@pytest.mark.parametrize("name", ["lookup", "send_email"])
@pytest.mark.parametrize(
    "exc",
    [Interrupted("power cut"), asyncio.CancelledError()],
    ids=["base-exception", "cancelled-error"],
)
async def test_tool_interrupted_mid_call(
    toolbox: Toolbox, baseline: Baseline, name: str, exc: BaseException
) -> None:
    h = _harness(toolbox)
    run_id = await h.submit(INPUT)
    toolbox.raise_next[name] = exc
    first = _provider()
    with pytest.raises(type(exc)):
        await h.runtime(first).execute(run_id)
    assert (await h.journal.get_run(run_id)).status is RunStatus.QUEUED
    [interrupted] = toolbox.calls(name)
    assert interrupted.ctx.tool_use_id not in _journaled_results(await h.records(run_id))

    second = _provider()
    run = await h.runtime(second).execute(run_id)
    await _assert_same_as_baseline(h, run, baseline, second)

    # Every model call happened exactly once across both runtimes: all were journaled.
    assert first.calls_per_step + second.calls_per_step == Counter(range(1, STEPS + 1))
    retried = [c for c in toolbox.calls(name) if c.ctx.tool_use_id == interrupted.ctx.tool_use_id]
    assert len(retried) == 2
    assert retried[0].ctx.idempotency_key == retried[1].ctx.idempotency_key
    assert (
        retried[1].ctx.idempotency_key
        == f"{run_id}:{interrupted.ctx.step}:{retried[0].ctx.tool_use_id}"
    )
    assert retried[0].input == retried[1].input


async def test_journaled_side_effect_is_not_re_executed(
    toolbox: Toolbox, baseline: Baseline
) -> None:
    """The email (step 2) is journaled on its own; a crash in step 3's tools does not resend it,
    while step 3's read-only batch, never journaled, runs again."""
    h = _harness(toolbox)
    run_id = await h.submit(INPUT)
    toolbox.raise_at_step[("lookup", 3)] = Interrupted("crash in step 3")
    first = _provider()
    with pytest.raises(Interrupted):
        await h.runtime(first).execute(run_id)
    second = _provider()
    run = await h.runtime(second).execute(run_id)
    await _assert_same_as_baseline(h, run, baseline, second)
    assert len(toolbox.calls("send_email")) == 1
    assert [c.ctx.step for c in toolbox.calls("lookup")] == [1, 3, 3]
    assert dict(second.calls_per_step) == {4: 1}


async def test_crashed_worker_is_resumed_after_its_lease_expires(
    toolbox: Toolbox, baseline: Baseline
) -> None:
    """A worker dies holding the lease (no release): another takes over after expiry."""
    clock = FakeClock()
    h = _harness(toolbox, journal=MemoryJournal(clock))
    run_id = await h.submit(INPUT)
    gate = toolbox.block_next("send_email")
    options = RuntimeOptions(lease_ttl_s=30.0)
    dead = asyncio.create_task(h.runtime(_provider(), options=options).execute(run_id))
    await wait_for(gate.entered)  # frozen mid side effect, lease held

    second = _provider()
    clock.advance(31)
    run = await h.runtime(second, options=options).execute(run_id)
    await _assert_same_as_baseline(h, run, baseline, second)
    sends = toolbox.calls("send_email")
    assert len(sends) == 2
    assert sends[0].ctx.idempotency_key == sends[1].ctx.idempotency_key
    assert dict(second.calls_per_step) == {3: 1, 4: 1}

    # The zombie finally dies; it must not touch the finished run.
    records_before = await h.records(run_id)
    dead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dead
    assert await h.records(run_id) == records_before
    assert await h.journal.get_run(run_id) == run


async def test_interrupted_approved_tool_reruns_without_asking_again(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("deploy")])
    provider = ScriptedProvider(
        responder=plan([("deploy", {"service": "api", "version": "7"})], "shipped")
    )
    run_id = await h.submit()
    await h.runtime(provider).execute(run_id)
    await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    toolbox.raise_next["deploy"] = Interrupted("crash mid deploy")
    with pytest.raises(Interrupted):
        await h.runtime(provider).execute(run_id)
    assert (await h.journal.get_run(run_id)).status is RunStatus.QUEUED

    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    deploys = toolbox.calls("deploy")
    assert len(deploys) == 2
    assert deploys[0].ctx.idempotency_key == deploys[1].ctx.idempotency_key
    events = await h.events(run_id)
    assert sum(e.type is EventType.APPROVAL_REQUESTED for e in events) == 1
    assert sum(e.type is EventType.APPROVAL_DECIDED for e in events) == 1
    assert provider.calls == 2
    assert_journal_consistent(await h.records(run_id), run)


async def test_resumed_status_event_says_so(toolbox: Toolbox) -> None:
    h = _harness(toolbox)
    run_id = await h.submit(INPUT)
    first = _provider()
    first.fail_at(3, RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        await h.runtime(first, owner="worker-a").execute(run_id)
    await h.runtime(_provider(), owner="worker-b").execute(run_id)
    running = [
        e.data
        for e in await h.events(run_id)
        if e.type is EventType.RUN_STATUS and e.data["status"] == "running"
    ]
    assert [(d["worker"], d["resumed"], d["step"]) for d in running] == [
        ("worker-a", False, 0),
        ("worker-b", True, 2),
    ]


# ---- the process dies between two journal writes -------------------------------------------


class FaultyJournal(MemoryJournal):
    """Dies (raises ``Interrupted``, not an error anything handles) on the writes a test picks.

    ``crash_on(method, argument)`` decides; it stays armed, so the dying runtime's own cleanup
    fails too, as it would if the process were gone."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.crash_on: Callable[[str, object], bool] | None = None

    def _maybe_die(self, method: str, argument: object) -> None:
        if self.crash_on is not None and self.crash_on(method, argument):
            raise Interrupted(f"died at {method}")

    async def append(self, run_id: str, record: JournalRecord) -> None:
        self._maybe_die("append", record)
        await super().append(run_id, record)

    async def update_run(
        self,
        run_id: str,
        patch: RunPatch,
        *,
        lease: Lease | None,
        expected_status: RunStatus | None = None,
    ) -> Run:
        if lease is not None:
            self._maybe_die("update_run", patch)
        return await super().update_run(run_id, patch, lease=lease, expected_status=expected_status)

    async def release_lease(self, lease: Lease, patch: RunPatch | None = None) -> Run:
        self._maybe_die("release_lease", patch)
        return await super().release_lease(lease, patch)


async def _die_then_resume(
    h: Harness, journal: FaultyJournal, clock: FakeClock, run_id: str, turns: Any
) -> tuple[Run, ScriptedProvider]:
    first = ScriptedProvider(responder=turns)
    with pytest.raises(Interrupted):
        await h.runtime(first).execute(run_id)
    journal.crash_on = None
    clock.advance(31)  # the dead worker's lease runs out
    second = ScriptedProvider(responder=turns)
    return await h.runtime(second).execute(run_id), second


def _releases(method: str, argument: object) -> bool:
    return method == "release_lease"


async def test_died_after_the_final_record_before_releasing(toolbox: Toolbox) -> None:
    clock = FakeClock()
    journal = FaultyJournal(clock)
    h = _harness(toolbox, journal=journal)
    run_id = await h.submit(INPUT)
    journal.crash_on = _releases
    run, second = await _die_then_resume(h, journal, clock, run_id, plan(*TURNS))
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == "all done"
    assert second.calls == 0  # everything was journaled: nothing to call
    assert len(toolbox.calls("send_email")) == 1
    assert_journal_consistent(await h.records(run_id), run)


async def test_died_after_requesting_approval_before_releasing(toolbox: Toolbox) -> None:
    clock = FakeClock()
    journal = FaultyJournal(clock)
    h = Harness([toolbox.agent("deploy")], journal=journal)
    run_id = await h.submit()
    journal.crash_on = _releases
    turns = plan([("deploy", {"service": "api", "version": "7"})], "shipped")
    run, second = await _die_then_resume(h, journal, clock, run_id, turns)
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.pending_approval is not None
    assert [c["tool_use_id"] for c in run.pending_approval["calls"]] == ["toolu_01_0"]
    assert second.calls == 0
    events = await h.events(run_id)
    assert sum(e.type is EventType.APPROVAL_REQUESTED for e in events) == 1
    assert toolbox.invocations == []


async def test_died_after_journaling_the_decision(toolbox: Toolbox) -> None:
    clock = FakeClock()
    journal = FaultyJournal(clock)
    h = Harness([toolbox.agent("deploy")], journal=journal)
    run_id = await h.submit()
    turns = plan([("deploy", {"service": "api", "version": "7"})], "shipped")
    await h.runtime(ScriptedProvider(responder=turns)).execute(run_id)
    await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    # The decision record is appended; clearing pending_approval on the run item never happens.
    journal.crash_on = lambda method, _: method in ("update_run", "release_lease")
    run, second = await _die_then_resume(h, journal, clock, run_id, turns)
    assert run.status is RunStatus.SUCCEEDED
    assert len(toolbox.calls("deploy")) == 1
    events = await h.events(run_id)
    assert sum(e.type is EventType.APPROVAL_DECIDED for e in events) == 1
    assert dict(second.calls_per_step) == {2: 1}


async def test_died_while_journaling_a_side_effect(toolbox: Toolbox, baseline: Baseline) -> None:
    clock = FakeClock()
    journal = FaultyJournal(clock)
    h = _harness(toolbox, journal=journal)
    run_id = await h.submit(INPUT)

    def tools_record(method: str, argument: object) -> bool:
        is_tools = isinstance(argument, JournalRecord) and argument.kind is RecordKind.TOOLS
        return is_tools or method == "release_lease"

    journal.crash_on = tools_record
    run, second = await _die_then_resume(h, journal, clock, run_id, plan(*TURNS))
    await _assert_same_as_baseline(h, run, baseline, second)
    sends = toolbox.calls("send_email")
    assert len(sends) == 2  # the effect happened, its result was lost: it runs again...
    assert sends[0].ctx.idempotency_key == sends[1].ctx.idempotency_key  # ...with the same key
    assert dict(second.calls_per_step) == {3: 1, 4: 1}
