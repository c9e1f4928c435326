"""Cooperative cancellation: the run stops at the next step boundary, never mid-call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from shared.errors import RuntimeStateError
from shared.logic.runs import request_cancel
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import Run, RunStatus
from shared.runtime import AgentRuntime
from tests.support.runtime_kit import (
    Harness,
    Toolbox,
    assert_journal_consistent,
    kinds,
    wait_for,
)
from tests.support.scripted_provider import ScriptedProvider, plan

LOOKUPS = plan(*([("lookup", {"query": f"q{i}"})] for i in range(5)))

Canceller = Callable[[Harness, AgentRuntime, str], Awaitable[None]]


async def _cancel_local(h: Harness, runtime: AgentRuntime, run_id: str) -> None:
    runtime.cancel_local(run_id)


async def _cancel_via_logic(h: Harness, runtime: AgentRuntime, run_id: str) -> None:
    flagged = await request_cancel(h.journal, run_id)
    assert flagged.cancel_requested is True
    assert flagged.status is RunStatus.RUNNING  # flagged, not stopped: the worker stops it


async def _assert_cancelled(h: Harness, run: Run) -> None:
    assert run.status is RunStatus.CANCELLED
    assert run.error is not None
    assert run.error.code == "cancelled"
    assert run.finished_at is not None
    records = await h.records(run.run_id)
    assert_journal_consistent(records, run)
    last = (await h.events(run.run_id))[-1]
    assert last.type is EventType.RUN_STATUS
    assert last.data["status"] == "cancelled"
    assert await h.journal.get_run(run.run_id) == run


@pytest.mark.parametrize("cancel", [_cancel_local, _cancel_via_logic], ids=["local", "logic"])
async def test_cancel_during_model_call_stops_at_the_next_boundary(
    toolbox: Toolbox, cancel: Canceller
) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=LOOKUPS)
    gate = provider.block_at(1)
    runtime = h.runtime(provider)
    run_id = await h.submit()
    task = asyncio.create_task(runtime.execute(run_id))
    await wait_for(gate.entered)

    await cancel(h, runtime, run_id)
    gate.release.set()
    run = await task

    await _assert_cancelled(h, run)
    # The call in flight completed and was journaled; nothing after it ran.
    assert provider.calls == 1
    assert provider.completed == 1
    records = await h.records(run_id)
    assert kinds(records)[-2:] == [RecordKind.MODEL, RecordKind.FINISHED]
    assert records[-2].response is not None
    assert records[-2].response["content"][0]["name"] == "lookup"
    assert toolbox.invocations == []
    assert run.steps == 1
    assert run.usage.output_tokens == 20


@pytest.mark.parametrize("cancel", [_cancel_local, _cancel_via_logic], ids=["local", "logic"])
async def test_cancel_during_a_tool_lets_it_finish_and_journals_it(
    toolbox: Toolbox, cancel: Canceller
) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=LOOKUPS)
    gate = toolbox.block_next("lookup")
    runtime = h.runtime(provider)
    run_id = await h.submit()
    task = asyncio.create_task(runtime.execute(run_id))
    await wait_for(gate.entered)

    await cancel(h, runtime, run_id)
    gate.release.set()
    run = await task

    await _assert_cancelled(h, run)
    assert provider.calls == 1
    assert len(toolbox.invocations) == 1
    finished = (await h.records(run_id))[-1]
    assert finished.kind is RecordKind.FINISHED
    assert [r.tool_use_id for r in finished.tool_results] == ["toolu_01_0"]


async def test_cancel_before_execution_makes_no_model_call(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    run_id = await h.submit()
    await request_cancel(h.journal, run_id)
    provider = ScriptedProvider(responder=LOOKUPS)
    run = await h.runtime(provider).execute(run_id)
    await _assert_cancelled(h, run)
    assert provider.calls == 0


async def test_cancel_a_run_awaiting_approval(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("deploy")])
    provider = ScriptedProvider(responder=plan([("deploy", {"service": "a", "version": "1"})]))
    run_id = await h.submit()
    paused = await h.runtime(provider).execute(run_id)
    assert paused.status is RunStatus.AWAITING_APPROVAL

    await request_cancel(h.journal, run_id)
    run = await h.runtime(provider).execute(run_id)
    await _assert_cancelled(h, run)
    assert run.pending_approval is None
    assert toolbox.invocations == []
    assert provider.calls == 1


@pytest.mark.parametrize("status", ["succeeded", "cancelled"])
async def test_cancelling_a_finished_run_raises(toolbox: Toolbox, status: str) -> None:
    h = Harness([toolbox.agent("lookup")])
    run_id = await h.submit()
    runtime = h.runtime(ScriptedProvider(responder=plan("done")))
    if status == "cancelled":
        runtime.cancel_local(run_id)
    run = await runtime.execute(run_id)
    assert run.status.value == status
    writes = h.journal.writes

    with pytest.raises(RuntimeStateError) as info:
        await request_cancel(h.journal, run_id)
    assert info.value.details == {"status": status}
    assert h.journal.writes == writes
    assert (await h.journal.get_run(run_id)).cancel_requested is False


async def test_local_cancel_only_affects_its_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    runtime = h.runtime(ScriptedProvider(responder=plan("done")))
    other = await h.submit()
    target = await h.submit()
    runtime.cancel_local(target)
    assert (await runtime.execute(other)).status is RunStatus.SUCCEEDED
    assert (await runtime.execute(target)).status is RunStatus.CANCELLED
