"""Draining (SIGTERM): every run is handed back at its next step boundary, nothing lost."""

from __future__ import annotations

import asyncio

from shared.models.journal import RecordKind
from shared.models.run import RunStatus
from tests.support.runtime_kit import Harness, Toolbox, kinds, wait_for
from tests.support.scripted_provider import ScriptedProvider, plan

TURNS = plan([("lookup", {"query": "a"})], [("lookup", {"query": "b"})], "done")


async def test_drain_hands_the_run_back_at_the_next_boundary(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=TURNS)
    gate = provider.block_at(1)
    runtime = h.runtime(provider)
    run_id = await h.submit()
    task = asyncio.create_task(runtime.execute(run_id))
    await wait_for(gate.entered)

    runtime.drain()
    gate.release.set()
    run = await task

    # The call in flight completed and was journaled; its tools did not start.
    assert run.status is RunStatus.QUEUED
    assert run.steps == 1
    assert provider.calls == 1
    assert toolbox.invocations == []
    assert kinds(await h.records(run_id))[-1] is RecordKind.MODEL
    # The lease is free: another worker resumes at once and finishes without repeating it.
    done = await h.runtime(ScriptedProvider(responder=TURNS)).execute(run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.steps == 3
    assert [i.input["query"] for i in toolbox.invocations] == ["a", "b"]
