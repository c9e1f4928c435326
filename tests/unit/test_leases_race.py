"""Leases and fencing: one executor per run; a stale one fails its next write and stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from shared.errors import JournalConflictError, LeaseHeldError, LeaseLostError
from shared.journal import MemoryJournal
from shared.models.events import Event, EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import Lease, Run, RunStatus
from shared.runtime import RuntimeOptions
from tests.support.runtime_kit import (
    FakeClock,
    Harness,
    Toolbox,
    assert_journal_consistent,
    wait_for,
)
from tests.support.scripted_provider import ScriptedProvider, plan

TURNS = plan(
    [("lookup", {"query": "a"})],
    [("send_email", {"to": "x", "body": "y"})],
    [("lookup", {"query": "b"})],
    "done",
)
TTL = 30.0


class WatchedJournal(MemoryJournal):
    """Lets the test hold lease renewals and see when one fails."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock)
        self.renewals_open = asyncio.Event()
        self.renew_failed = asyncio.Event()

    async def renew_lease(self, lease: Lease, ttl_s: float) -> tuple[Lease, Run]:
        await self.renewals_open.wait()
        try:
            return await super().renew_lease(lease, ttl_s)
        except LeaseLostError:
            self.renew_failed.set()
            raise


def _harness(toolbox: Toolbox, journal: MemoryJournal | None = None) -> Harness:
    return Harness([toolbox.agent("lookup", "send_email")], journal=journal or MemoryJournal())


async def _assert_single_history(h: Harness, run_id: str) -> Run:
    run = await h.journal.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    records = await h.records(run_id)
    assert_journal_consistent(records, run)
    model_steps = [r.step for r in records if r.kind is RecordKind.MODEL]
    assert model_steps == [1, 2, 3, 4]
    tool_results = [r.tool_use_id for rec in records for r in rec.tool_results]
    assert sorted(tool_results) == ["toolu_01_0", "toolu_02_0", "toolu_03_0"]
    return run


async def test_two_runtimes_at_once_one_wins(toolbox: Toolbox) -> None:
    h = _harness(toolbox)
    run_id = await h.submit()
    first, second = ScriptedProvider(responder=TURNS), ScriptedProvider(responder=TURNS)
    gate = first.block_at(1)
    winner = asyncio.create_task(h.runtime(first).execute(run_id))
    await wait_for(gate.entered)
    records_before = await h.records(run_id)
    writes_before = h.journal.writes

    with pytest.raises(LeaseHeldError):
        await h.runtime(second).execute(run_id)

    assert second.calls == 0
    assert h.journal.writes == writes_before
    assert await h.records(run_id) == records_before
    gate.release.set()
    assert (await winner).status is RunStatus.SUCCEEDED
    await _assert_single_history(h, run_id)


async def test_started_together_exactly_one_executes(toolbox: Toolbox) -> None:
    h = _harness(toolbox)
    run_id = await h.submit()
    providers = [ScriptedProvider(responder=TURNS) for _ in range(2)]
    gate = providers[0].block_at(1)  # the first holds the lease, mid-step, when the second starts
    first = asyncio.create_task(h.runtime(providers[0]).execute(run_id))
    await wait_for(gate.entered)
    second = await asyncio.gather(h.runtime(providers[1]).execute(run_id), return_exceptions=True)
    gate.release.set()
    outcomes = [await first, *second]
    assert sorted(type(o).__name__ for o in outcomes) == ["LeaseHeldError", "Run"]
    assert sorted(p.calls for p in providers) == [0, 4]
    await _assert_single_history(h, run_id)


@pytest.mark.parametrize("winner_done_first", [True, False], ids=["after-winner", "mid-winner"])
async def test_stale_runtime_is_fenced_off_by_its_next_write(
    toolbox: Toolbox, winner_done_first: bool
) -> None:
    clock = FakeClock()
    h = _harness(toolbox, MemoryJournal(clock))
    run_id = await h.submit()
    options = RuntimeOptions(lease_ttl_s=TTL)
    stale_provider = ScriptedProvider(responder=TURNS)
    stale_gate = stale_provider.block_at(2)  # step 1 journaled, step 2 in flight
    stale = asyncio.create_task(h.runtime(stale_provider, options=options).execute(run_id))
    await wait_for(stale_gate.entered)

    clock.advance(TTL + 1)  # the stale worker stopped heartbeating (GC pause, partition...)
    fresh_provider = ScriptedProvider(responder=TURNS)
    fresh_gate = fresh_provider.block_at(2 if winner_done_first else 1)
    if winner_done_first:
        fresh_gate.release.set()
    fresh = asyncio.create_task(h.runtime(fresh_provider, options=options).execute(run_id))
    if winner_done_first:
        await fresh
    else:
        await wait_for(fresh_gate.entered)
    run_before = await h.journal.get_run(run_id)
    records_before = await h.records(run_id)

    stale_gate.release.set()
    with pytest.raises((JournalConflictError, LeaseLostError)):
        await stale
    # The stale worker wrote nothing, not even a status change.
    assert await h.records(run_id) == records_before
    assert await h.journal.get_run(run_id) == run_before

    fresh_gate.release.set()
    run = await fresh
    assert run.status is RunStatus.SUCCEEDED
    await _assert_single_history(h, run_id)
    # The winner replayed step 1 and never asked for it again.
    assert 1 not in fresh_provider.calls_per_step
    assert len(toolbox.calls("send_email")) == 1  # the stale worker never got that far


async def test_lost_lease_seen_by_heartbeat_stops_the_stale_runtime(toolbox: Toolbox) -> None:
    clock = FakeClock()
    journal = WatchedJournal(clock)
    h = _harness(toolbox, journal)
    run_id = await h.submit()
    options = RuntimeOptions(lease_ttl_s=0.03)  # heartbeat every 10 ms (held until opened)
    stale_provider = ScriptedProvider(responder=TURNS)
    stale_gate = stale_provider.block_at(1)
    stale = asyncio.create_task(h.runtime(stale_provider, options=options).execute(run_id))
    await wait_for(stale_gate.entered)

    clock.advance(1.0)
    fresh_provider = ScriptedProvider(responder=TURNS)
    fresh_gate = fresh_provider.block_at(1)
    fresh = asyncio.create_task(h.runtime(fresh_provider, options=options).execute(run_id))
    await wait_for(fresh_gate.entered)  # the fresh runtime holds the lease now

    journal.renewals_open.set()
    await wait_for(journal.renew_failed)  # the stale heartbeat learns it lost the run
    records_before = await h.records(run_id)
    stale_gate.release.set()
    with pytest.raises(LeaseLostError):
        await stale
    assert await h.records(run_id) == records_before
    assert stale_provider.completed == 1  # its call finished, but was never journaled

    fresh_gate.release.set()
    assert (await fresh).status is RunStatus.SUCCEEDED
    await _assert_single_history(h, run_id)


async def test_heartbeat_extends_the_lease(toolbox: Toolbox) -> None:
    clock = FakeClock()
    h = _harness(toolbox, MemoryJournal(clock))
    run_id = await h.submit()
    beats: list[Lease] = []
    beat = asyncio.Event()

    async def on_heartbeat(lease: Lease) -> None:
        beats.append(lease)
        beat.set()

    provider = ScriptedProvider(responder=TURNS)
    gate = provider.block_at(1)
    runtime = h.runtime(provider, options=RuntimeOptions(lease_ttl_s=0.03))
    runtime.on_heartbeat = on_heartbeat
    task = asyncio.create_task(runtime.execute(run_id))
    await wait_for(gate.entered)
    clock.advance(10.0)
    beats.clear()  # any renewal computed before the jump has already reported
    beat.clear()
    await wait_for(beat)
    assert beats[0].expires_at_ms == int(clock.now * 1000) + 30
    assert beats[0].owner == runtime.owner
    # Renewed, so nobody else can take the run even though the original TTL is long gone.
    with pytest.raises(LeaseHeldError):
        await h.runtime(ScriptedProvider(responder=TURNS)).execute(run_id)
    gate.release.set()
    assert (await task).status is RunStatus.SUCCEEDED


async def test_fences_grow_with_every_acquisition(toolbox: Toolbox) -> None:
    h = _harness(toolbox)
    run_id = await h.submit()
    first = ScriptedProvider(responder=TURNS)
    first.fail_at(3, RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        await h.runtime(first).execute(run_id)
    await h.runtime(ScriptedProvider(responder=TURNS)).execute(run_id)
    fences = [r.fence for r in await h.records(run_id) if r.kind is not RecordKind.CREATED]
    assert fences == sorted(fences)
    assert set(fences) == {1, 2}


class SlippedInJournal(MemoryJournal):
    """Lets a stale predecessor's append land between the new owner's read and first write."""

    def __init__(self, stale: JournalRecord) -> None:
        super().__init__()
        self.stale: JournalRecord | None = stale

    async def append(self, run_id: str, record: JournalRecord) -> None:
        if self.stale is not None and record.kind is RecordKind.STARTED:
            stale, self.stale = self.stale, None
            await super().append(run_id, stale.model_copy(update={"seq": record.seq}))
        await super().append(run_id, record)


async def test_new_owner_adopts_a_record_a_stale_predecessor_slipped_in(toolbox: Toolbox) -> None:
    at = datetime.now(UTC)
    stale = JournalRecord(
        seq=0,
        kind=RecordKind.STARTED,
        at=at,
        fence=0,
        events=[Event(seq=0, type=EventType.RUN_STATUS, at=at, data={"status": "running"})],
    )
    journal = SlippedInJournal(stale)
    h = _harness(toolbox, journal)
    run_id = await h.submit()
    provider = ScriptedProvider(responder=TURNS)
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    kinds = [r.kind for r in await h.records(run_id)]
    assert kinds[:3] == [RecordKind.CREATED, RecordKind.STARTED, RecordKind.STARTED]
    assert provider.calls == 4  # nothing was lost or repeated for the conflict
