"""The journal contract (``shared.journal.base.Journal``), checked against every backend.

Each test in the parametrized part runs once per backend (``memory``, ``dynamodb`` on moto);
the last section checks what only the DynamoDB layout promises (item sizes, S3 content keys,
TTL, the tenant index and its paging, one request per write).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.dal.dynamodb import item_size
from shared.dal.metering import RequestMeter
from shared.dal.schema import BY_TENANT, TENANT_PK, tenant_pk
from shared.errors import (
    JournalConflictError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    RunNotFoundError,
    RunStateConflictError,
    ValidationFailedError,
)
from shared.ids import new_run_id
from shared.journal.base import Journal, RunPatch
from shared.journal.dynamodb import DynamoJournal
from shared.journal.memory import encode_cursor
from shared.logic.runs import SubmitRun, submit_run
from shared.models.events import Event, EventType
from shared.models.journal import JournalRecord, RecordKind, ToolResult
from shared.models.run import Lease, Run, RunError, RunPage, RunStatus, RunSummary, Shape, Usage
from shared.providers.offline import OfflineProvider
from shared.runtime import AgentRuntime
from tests.conformance.conftest import REGION, T0, Aws, Backend, Clock

AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TTL = 30.0
DYNAMODB_ITEM_LIMIT = 400 * 1024
UNICODE = 'é ✓ 😀 \u2028 "quoted" \\ back'


# ---- builders ------------------------------------------------------------------------------


def new_run(**fields: Any) -> Run:
    values: dict[str, Any] = {
        "run_id": new_run_id(),
        "tenant": "acme",
        "agent": "researcher",
        "input": {"question": f"crashes? {UNICODE}", "numbers": [1, 2.5, -3e-7, None, True]},
        "thread_id": "thread-1",
        "idempotency_key": "idem-1",
        "metadata": {"team": "ops"},
        "budget": {"max_steps": 5.0},
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(fields)
    return Run(**values)


def event(seq: int) -> Event:
    return Event(seq=seq, type=EventType.STEP_COMPLETED, at=AT, data={"n": seq, "s": UNICODE})


def record(
    seq: int, n_events: int, kind: RecordKind = RecordKind.MODEL, **fields: Any
) -> JournalRecord:
    return JournalRecord(
        seq=seq, kind=kind, at=AT, events=[event(seq + i) for i in range(n_events)], **fields
    )


def first_record() -> JournalRecord:
    return record(1, 1, RecordKind.CREATED)


async def created(journal: Journal, **fields: Any) -> Run:
    run = new_run(**fields)
    await journal.create_run(run, first_record())
    return run


def random_text(n_bytes: int) -> str:
    """Incompressible text: base64 of random bytes (zlib gains ~25% at most, never 2x)."""
    return base64.b64encode(os.urandom(n_bytes * 3 // 4)).decode("ascii")


def without(run: Run, *fields: str) -> dict[str, Any]:
    return run.model_dump(mode="json", exclude=set(fields))


# ---- create / get --------------------------------------------------------------------------


async def test_create_then_get_round_trips(journal: Journal) -> None:
    run = await created(journal)
    assert await journal.get_run(run.run_id) == run
    assert await journal.records(run.run_id) == [first_record()]


async def test_create_duplicate_id_raises_and_keeps_the_original(journal: Journal) -> None:
    run = await created(journal)
    clash = new_run(run_id=run.run_id, input="another input", agent="other")
    with pytest.raises(RunExistsError):
        await journal.create_run(clash, record(1, 2, RecordKind.CREATED))
    assert await journal.get_run(run.run_id) == run
    assert await journal.records(run.run_id) == [first_record()]


async def test_get_missing_run_raises(journal: Journal) -> None:
    with pytest.raises(RunNotFoundError):
        await journal.get_run("run_missing")


async def test_every_read_and_update_of_a_missing_run_raises(journal: Journal) -> None:
    missing = "run_missing"
    lease = Lease(run_id=missing, owner="w", fence=1, expires_at_ms=int(T0 * 1000) + 30_000)
    with pytest.raises(RunNotFoundError):
        await journal.records(missing)
    with pytest.raises(RunNotFoundError):
        await journal.events(missing)
    with pytest.raises(RunNotFoundError):
        await journal.update_run(missing, RunPatch(steps=1), lease=None)
    with pytest.raises(RunNotFoundError):
        await journal.acquire_lease(missing, "w", TTL)
    with pytest.raises(RunNotFoundError):
        await journal.renew_lease(lease, TTL)
    with pytest.raises(RunNotFoundError):
        await journal.release_lease(lease)


# ---- append / records ----------------------------------------------------------------------


async def test_append_in_order_and_read_back_after_any_seq(journal: Journal) -> None:
    run = await created(journal)
    r2 = record(2, 2, step=1, model="m", response={"content": [{"type": "text", "text": "hi"}]})
    r4 = record(4, 1, RecordKind.TOOLS, step=1, tool_results=[_tool_result("x")])
    r5 = record(5, 3, RecordKind.FINISHED, status=RunStatus.SUCCEEDED, output={"a": [1, 2]})
    for r in (r2, r4, r5):
        await journal.append(run.run_id, r)
    everything = [first_record(), r2, r4, r5]
    assert await journal.records(run.run_id) == everything
    for after in range(-1, 10):
        got = await journal.records(run.run_id, after_seq=after)
        assert got == [r for r in everything if r.seq > after], after


async def test_append_at_an_existing_seq_conflicts(journal: Journal) -> None:
    run = await created(journal)
    r2 = record(2, 1)
    await journal.append(run.run_id, r2)
    with pytest.raises(JournalConflictError) as err:
        await journal.append(run.run_id, record(2, 3, RecordKind.TOOLS))
    assert err.value.details == {"seq": 2}
    with pytest.raises(JournalConflictError):
        await journal.append(run.run_id, record(1, 1, RecordKind.STARTED))
    assert await journal.records(run.run_id) == [first_record(), r2]


async def test_racing_appends_at_one_seq_exactly_one_wins(journal: Journal) -> None:
    run = await created(journal)
    for seq in range(2, 7):
        rivals = [record(seq, 1, step=i, data={"writer": i}) for i in range(4)]
        outcomes = await asyncio.gather(
            *(journal.append(run.run_id, r) for r in rivals), return_exceptions=True
        )
        winners = [r for r, o in zip(rivals, outcomes, strict=True) if o is None]
        losers = [o for o in outcomes if o is not None]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, JournalConflictError) for o in losers), losers
        assert (await journal.records(run.run_id, after_seq=seq - 1)) == winners


# ---- events --------------------------------------------------------------------------------


async def _journal_with_events(journal: Journal) -> tuple[str, list[Event]]:
    run = await created(journal)
    records = [
        first_record(),  # event 1
        record(2, 3),  # events 2, 3, 4
        record(5, 0, RecordKind.STARTED),  # no event, occupies seq 5
        record(6, 2),  # events 6, 7
        record(8, 4),  # events 8..11
        record(12, 1),  # event 12
    ]
    for r in records[1:]:
        await journal.append(run.run_id, r)
    return run.run_id, [e for r in records for e in r.events]


async def test_events_cursor_yields_each_event_once_in_order(journal: Journal) -> None:
    run_id, every = await _journal_with_events(journal)
    assert [e.seq for e in every] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert await journal.events(run_id) == every
    for after in range(-1, 15):
        expected = [e for e in every if e.seq > after]
        for limit in (1, 2, 3, 5, 100):
            seen: list[Event] = []
            cursor = after
            while True:
                page = await journal.events(run_id, after=cursor, limit=limit)
                if not page:
                    break
                remaining = len(expected) - len(seen)
                assert len(page) == min(limit, remaining), (after, limit, cursor)
                seen.extend(page)
                cursor = page[-1].seq
            assert seen == expected, (after, limit)


async def test_events_limit_zero_returns_nothing(journal: Journal) -> None:
    run_id, _ = await _journal_with_events(journal)
    assert await journal.events(run_id, after=0, limit=0) == []


# ---- update_run ----------------------------------------------------------------------------


async def test_update_run_without_lease_sets_only_the_patched_fields(journal: Journal) -> None:
    run = await created(journal)
    later = AT + timedelta(seconds=5)
    usage = Usage(input_tokens=10, output_tokens=20, cache_read_input_tokens=3, cost_usd=0.00123)
    patch = RunPatch(
        status=RunStatus.RUNNING,
        steps=3,
        usage=usage,
        output={"answer": UNICODE, "n": 1.5},
        started_at=later,
        updated_at=later,
    )
    updated = await journal.update_run(run.run_id, patch, lease=None)
    assert updated.status is RunStatus.RUNNING
    assert updated.steps == 3
    assert updated.usage == usage
    assert updated.output == {"answer": UNICODE, "n": 1.5}
    assert updated.started_at == later
    changed = ("status", "steps", "usage", "output", "started_at", "updated_at")
    assert without(updated, *changed) == without(run, *changed)
    assert await journal.get_run(run.run_id) == updated


async def test_update_run_clears_optional_fields(journal: Journal) -> None:
    run = await created(journal)
    await journal.update_run(
        run.run_id,
        RunPatch(
            output="partial",
            error=RunError(code="boom", message="it broke", details={"k": [1]}),
            pending_approval={"step": 1, "calls": [], "decision": None},
        ),
        lease=None,
    )
    stored = await journal.get_run(run.run_id)
    assert stored.error == RunError(code="boom", message="it broke", details={"k": [1]})
    assert stored.pending_approval == {"step": 1, "calls": [], "decision": None}
    cleared = await journal.update_run(
        run.run_id, RunPatch(output=None, error=None, pending_approval=None), lease=None
    )
    assert (cleared.output, cleared.error, cleared.pending_approval) == (None, None, None)
    assert await journal.get_run(run.run_id) == cleared


async def test_update_run_with_lease_needs_the_current_lease(journal: Journal) -> None:
    run = await created(journal)
    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    updated = await journal.update_run(run.run_id, RunPatch(steps=1), lease=lease)
    assert updated.steps == 1
    for stale in (
        lease.model_copy(update={"fence": lease.fence + 1}),
        lease.model_copy(update={"fence": lease.fence - 1}),
        lease.model_copy(update={"owner": "w2"}),
    ):
        with pytest.raises(LeaseLostError):
            await journal.update_run(run.run_id, RunPatch(steps=99), lease=stale)
    assert (await journal.get_run(run.run_id)).steps == 1
    # Without a lease (a cancel request from the API) the update applies while leased.
    assert await journal.cancel_requested(run.run_id) is False
    cancelled = await journal.update_run(run.run_id, RunPatch(cancel_requested=True), lease=None)
    assert cancelled.cancel_requested is True
    assert await journal.cancel_requested(run.run_id) is True
    with pytest.raises(RunNotFoundError):
        await journal.cancel_requested("run_missing")


async def test_update_run_with_expected_status(journal: Journal) -> None:
    run = await created(journal)
    with pytest.raises(RunStateConflictError) as err:
        await journal.update_run(
            run.run_id,
            RunPatch(status=RunStatus.SUCCEEDED),
            lease=None,
            expected_status=RunStatus.AWAITING_APPROVAL,
        )
    assert err.value.details == {"status": "queued"}
    assert await journal.get_run(run.run_id) == run
    moved = await journal.update_run(
        run.run_id,
        RunPatch(status=RunStatus.AWAITING_APPROVAL),
        lease=None,
        expected_status=RunStatus.QUEUED,
    )
    assert moved.status is RunStatus.AWAITING_APPROVAL


async def test_update_run_checks_the_lease_before_the_status(journal: Journal) -> None:
    run = await created(journal)
    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    stale = lease.model_copy(update={"fence": lease.fence + 5})
    with pytest.raises(LeaseLostError):
        await journal.update_run(
            run.run_id, RunPatch(steps=2), lease=stale, expected_status=RunStatus.FAILED
        )
    with pytest.raises(RunStateConflictError):
        await journal.update_run(
            run.run_id, RunPatch(steps=2), lease=lease, expected_status=RunStatus.FAILED
        )
    ok = await journal.update_run(
        run.run_id, RunPatch(steps=2), lease=lease, expected_status=RunStatus.QUEUED
    )
    assert ok.steps == 2


# ---- leases --------------------------------------------------------------------------------


async def test_acquire_increments_the_fence_and_applies_the_patch(
    journal: Journal, clock: Clock
) -> None:
    run = await created(journal)
    first = await journal.acquire_lease(
        run.run_id, "w1", TTL, patch=RunPatch(status=RunStatus.RUNNING, started_at=AT)
    )
    assert (first.run_id, first.owner, first.fence) == (run.run_id, "w1", 1)
    assert first.expires_at_ms == int(clock() * 1000) + 30_000
    stored = await journal.get_run(run.run_id)
    assert (stored.status, stored.started_at) == (RunStatus.RUNNING, AT)
    again = await journal.acquire_lease(run.run_id, "w1", TTL)  # the holder may re-take it
    assert again.fence == 2
    with pytest.raises(LeaseLostError):
        await journal.update_run(run.run_id, RunPatch(steps=1), lease=first)


async def test_acquire_while_another_owner_holds_a_live_lease(
    journal: Journal, clock: Clock
) -> None:
    run = await created(journal)
    held = await journal.acquire_lease(run.run_id, "w1", TTL)
    clock.advance(TTL - 0.001)
    with pytest.raises(LeaseHeldError) as err:
        await journal.acquire_lease(run.run_id, "w2", TTL, patch=RunPatch(status=RunStatus.FAILED))
    assert err.value.details == {"expires_at_ms": held.expires_at_ms}
    assert (await journal.get_run(run.run_id)).status is RunStatus.QUEUED  # patch not applied
    renewed, _ = await journal.renew_lease(held, TTL)  # the holder is unaffected
    assert renewed.fence == held.fence


async def test_acquire_after_expiry_fences_off_the_old_holder(
    journal: Journal, clock: Clock
) -> None:
    run = await created(journal)
    old = await journal.acquire_lease(run.run_id, "w1", TTL)
    clock.advance(TTL)  # expired exactly now
    new = await journal.acquire_lease(
        run.run_id, "w2", TTL, patch=RunPatch(status=RunStatus.RUNNING)
    )
    assert new.owner == "w2"
    assert new.fence > old.fence
    assert new.expires_at_ms == int(clock() * 1000) + 30_000
    with pytest.raises(LeaseLostError):
        await journal.renew_lease(old, TTL)
    with pytest.raises(LeaseLostError):
        await journal.release_lease(old, RunPatch(status=RunStatus.QUEUED))
    with pytest.raises(LeaseLostError):
        await journal.update_run(run.run_id, RunPatch(steps=7), lease=old)
    stored = await journal.get_run(run.run_id)
    assert (stored.status, stored.steps) == (RunStatus.RUNNING, 0)
    await journal.update_run(run.run_id, RunPatch(steps=1), lease=new)
    with pytest.raises(LeaseHeldError):
        await journal.acquire_lease(run.run_id, "w1", TTL)


async def test_renew_extends_the_lease_and_returns_the_stored_run(
    journal: Journal, clock: Clock
) -> None:
    run = await created(journal)
    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    clock.advance(20)
    await journal.update_run(run.run_id, RunPatch(cancel_requested=True), lease=None)
    renewed, stored = await journal.renew_lease(lease, TTL)
    assert (renewed.owner, renewed.fence, renewed.run_id) == (lease.owner, lease.fence, run.run_id)
    assert renewed.expires_at_ms == int(clock() * 1000) + 30_000
    assert stored.cancel_requested is True
    assert stored == await journal.get_run(run.run_id)
    clock.advance(20)  # past the first expiry, within the renewed one
    with pytest.raises(LeaseHeldError):
        await journal.acquire_lease(run.run_id, "w2", TTL)
    again, _ = await journal.renew_lease(renewed, TTL)
    assert again.expires_at_ms == int(clock() * 1000) + 30_000


async def test_release_applies_the_patch_and_frees_the_run(journal: Journal, clock: Clock) -> None:
    run = await created(journal)
    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    finished = AT + timedelta(minutes=1)
    released = await journal.release_lease(
        lease,
        RunPatch(
            status=RunStatus.SUCCEEDED,
            output={"report": UNICODE},
            steps=4,
            finished_at=finished,
            updated_at=finished,
        ),
    )
    assert released.status is RunStatus.SUCCEEDED
    assert released.output == {"report": UNICODE}
    assert released.finished_at == finished
    assert await journal.get_run(run.run_id) == released
    with pytest.raises(LeaseLostError):
        await journal.renew_lease(lease, TTL)
    with pytest.raises(LeaseLostError):
        await journal.release_lease(lease)
    with pytest.raises(LeaseLostError):
        await journal.update_run(run.run_id, RunPatch(steps=5), lease=lease)
    taken = await journal.acquire_lease(run.run_id, "w2", TTL)  # free at once, no expiry wait
    assert taken.fence == lease.fence + 1


async def test_release_without_patch_returns_the_run_unchanged(journal: Journal) -> None:
    run = await created(journal)
    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    assert await journal.release_lease(lease) == run
    assert await journal.get_run(run.run_id) == run


# ---- big payloads --------------------------------------------------------------------------


def _tool_result(content: str) -> ToolResult:
    return ToolResult(step=1, tool_use_id="toolu_1", name="read", content=content)


async def test_records_with_huge_tool_results_round_trip(backend: Backend) -> None:
    journal = backend.journal
    run = await created(journal)
    incompressible = random_text(600_000) + UNICODE
    compressible = ("lorem ipsum dolor sit amet " * 20_000) + UNICODE
    assert len(incompressible.encode()) > 400_000
    assert len(compressible.encode()) > 400_000
    big_random = record(2, 1, RecordKind.TOOLS, tool_results=[_tool_result(incompressible)])
    big_repetitive = record(3, 1, RecordKind.TOOLS, tool_results=[_tool_result(compressible)])
    await journal.append(run.run_id, big_random)
    await journal.append(run.run_id, big_repetitive)

    got = await journal.records(run.run_id, after_seq=1)
    assert got == [big_random, big_repetitive]
    assert got[0].tool_results[0].content == incompressible
    assert got[1].tool_results[0].content == compressible
    assert [e.seq for e in await journal.events(run.run_id, after=1)] == [2, 3]

    if backend.aws is not None:
        aws = backend.aws
        random_item = aws.record_item(run.run_id, 2)
        repetitive_item = aws.record_item(run.run_id, 3)
        assert random_item is not None
        assert repetitive_item is not None
        # The random body did not fit even compressed: it went to S3 under its content hash.
        key = random_item["body"]["blob"]
        _assert_content_addressed(aws, key)
        assert "data" not in random_item["body"]
        # The repetitive one fits once compressed, so it stays inline.
        assert repetitive_item["body"]["enc"] == "zlib"
        assert "blob" not in repetitive_item["body"]
        assert aws.blob_keys() == [key]
        for item in (random_item, repetitive_item):
            assert item_size(item) < DYNAMODB_ITEM_LIMIT


async def test_runs_with_huge_input_and_output_round_trip(backend: Backend) -> None:
    journal = backend.journal
    big_input = {"document": random_text(420_000) + UNICODE, "pages": 311}
    run = await created(journal, input=big_input)
    assert await journal.get_run(run.run_id) == run

    lease = await journal.acquire_lease(run.run_id, "w1", TTL)
    big_output = random_text(410_000) + UNICODE
    updated = await journal.update_run(
        run.run_id,
        RunPatch(
            output=big_output,
            pending_approval={"calls": [{"input": random_text(200_000)}]},
            error=RunError(code="partial", message=random_text(100_000)),
        ),
        lease=lease,
    )
    assert updated.input == big_input
    assert updated.output == big_output
    _, renewed = await journal.renew_lease(lease, TTL)
    assert renewed == updated
    final_output = {"report": random_text(430_000), "note": UNICODE}
    released = await journal.release_lease(
        lease, RunPatch(status=RunStatus.SUCCEEDED, output=final_output, pending_approval=None)
    )
    assert released.output == final_output
    stored = await journal.get_run(run.run_id)
    assert stored == released
    assert stored.input == big_input

    if backend.aws is not None:
        aws = backend.aws
        item = aws.run_item(run.run_id)
        assert item is not None
        assert item_size(item) < DYNAMODB_ITEM_LIMIT
        for name in ("input", "output", "error"):
            _assert_content_addressed(aws, item[name]["blob"])


def _assert_content_addressed(aws: Aws, key: str) -> None:
    assert key in aws.blob_keys()
    data = aws.blob(key)
    assert key == f"blobs/{hashlib.sha256(data).hexdigest()}"


# ---- list_runs -----------------------------------------------------------------------------


def summary(run: Run) -> RunSummary:
    return RunSummary.model_validate(run.model_dump())


async def _listed_runs(journal: Journal) -> list[Run]:
    """Runs of two tenants with a mix of agents, statuses and threads, as stored. Creation
    times are shuffled against creation order, and two runs share a creation time."""
    specs: list[dict[str, Any]] = [
        {"minute": 3, "agent": "researcher", "thread_id": "t-1"},
        {"minute": 0, "agent": "writer", "thread_id": None, "shape": Shape.SYNC},
        {"minute": 7, "agent": "researcher", "thread_id": "t-2"},
        {"minute": 5, "agent": "writer", "thread_id": "t-1"},
        {"minute": 1, "agent": "researcher", "thread_id": None},
        {"minute": 5, "agent": "researcher", "thread_id": "t-2"},
        {"minute": 2, "agent": "writer", "thread_id": "t-1"},
        {"minute": 9, "agent": "researcher", "thread_id": "t-1"},
    ]
    runs: list[Run] = []
    for i, spec in enumerate(specs):
        at = AT + timedelta(minutes=spec.pop("minute"))
        run = await created(journal, created_at=at, updated_at=at, **spec)
        # Statuses move on after creation: the list must show them as they are now.
        if i % 3 == 1:
            run = await journal.update_run(
                run.run_id,
                RunPatch(status=RunStatus.SUCCEEDED, finished_at=at + timedelta(seconds=30)),
                lease=None,
            )
        elif i % 3 == 2:
            run = await journal.update_run(
                run.run_id, RunPatch(status=RunStatus.RUNNING), lease=None
            )
        runs.append(run)
    # Another tenant, with the same agents and thread ids, interleaved in time.
    for minute in (4, 6, 8):
        at = AT + timedelta(minutes=minute)
        await created(journal, tenant="globex", created_at=at, thread_id="t-1")
    return runs


def _newest_first(runs: list[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r.created_at, r.run_id), reverse=True)


async def _all_pages(journal: Journal, tenant: str, limit: int, **filters: Any) -> list[RunPage]:
    pages = [await journal.list_runs(tenant, limit=limit, **filters)]
    while pages[-1].next_cursor is not None:
        assert len(pages) <= 20, "the cursor does not advance"
        cursor = pages[-1].next_cursor
        pages.append(await journal.list_runs(tenant, limit=limit, cursor=cursor, **filters))
    return pages


async def test_list_runs_newest_first_as_they_are_now(journal: Journal) -> None:
    runs = await _listed_runs(journal)
    page = await journal.list_runs("acme", limit=100)
    assert page.runs == [summary(r) for r in _newest_first(runs)]
    assert page.next_cursor is None
    created_times = [r.created_at for r in page.runs]
    assert created_times == sorted(created_times, reverse=True)
    assert {r.status for r in page.runs} == {
        RunStatus.QUEUED,
        RunStatus.SUCCEEDED,
        RunStatus.RUNNING,
    }
    assert await journal.list_runs("initech") == RunPage(runs=[])


async def test_list_runs_filters(journal: Journal) -> None:
    runs = _newest_first(await _listed_runs(journal))
    cases: list[dict[str, Any]] = [
        {"status": RunStatus.SUCCEEDED},
        {"status": RunStatus.QUEUED},
        {"status": RunStatus.CANCELLED},
        {"agent": "writer"},
        {"thread_id": "t-1"},
        {"thread_id": "t-2", "status": RunStatus.RUNNING},
        {"agent": "researcher", "thread_id": "t-1", "status": RunStatus.QUEUED},
        {"agent": "nobody"},
    ]
    for filters in cases:
        expected = [
            summary(r)
            for r in runs
            if all(getattr(r, name) == value for name, value in filters.items())
        ]
        page = await journal.list_runs("acme", limit=100, **filters)
        assert page.runs == expected, filters
        assert page.next_cursor is None, filters
    # A filter sees the run as it is now, not as it was created.
    moved = next(r for r in runs if r.status is RunStatus.QUEUED)
    finished_at = AT + timedelta(hours=1)
    await journal.update_run(
        moved.run_id,
        RunPatch(status=RunStatus.FAILED, finished_at=finished_at),
        lease=None,
    )
    failed = await journal.list_runs("acme", status=RunStatus.FAILED)
    assert [(r.run_id, r.finished_at) for r in failed.runs] == [(moved.run_id, finished_at)]
    queued = await journal.list_runs("acme", status=RunStatus.QUEUED, limit=100)
    assert moved.run_id not in [r.run_id for r in queued.runs]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 8, 9])
async def test_list_runs_pages_visit_each_run_once(journal: Journal, limit: int) -> None:
    runs = _newest_first(await _listed_runs(journal))
    cases: list[dict[str, Any]] = [{}, {"agent": "researcher"}, {"thread_id": "t-1"}]
    for filters in cases:
        expected = [
            summary(r)
            for r in runs
            if all(getattr(r, name) == value for name, value in filters.items())
        ]
        pages = await _all_pages(journal, "acme", limit, **filters)
        assert [r for p in pages for r in p.runs] == expected, filters
        # Full pages until the last; no empty page after an exact fit.
        assert [len(p.runs) for p in pages[:-1]] == [limit] * (len(pages) - 1), filters
        assert 0 < len(pages[-1].runs) <= limit, filters
        assert len(pages) == -(-len(expected) // limit), filters


async def test_list_runs_cursor_keeps_its_position_as_runs_arrive(journal: Journal) -> None:
    runs = _newest_first(await _listed_runs(journal))
    first = await journal.list_runs("acme", limit=3)
    newer = await created(journal, created_at=AT + timedelta(hours=1))
    rest = await _all_pages(journal, "acme", 3)
    assert rest[0].runs[0] == summary(newer)  # a fresh listing starts at the newest run
    assert first.next_cursor is not None
    second = await journal.list_runs("acme", limit=3, cursor=first.next_cursor)
    assert second.runs == [summary(r) for r in runs[3:6]]  # a cursor continues where it was


async def test_list_runs_is_scoped_to_the_tenant(journal: Journal) -> None:
    runs = await _listed_runs(journal)
    acme_ids = {r.run_id for r in runs}
    globex = [r.run_id for p in await _all_pages(journal, "globex", 1) for r in p.runs]
    assert len(globex) == 3
    assert not acme_ids & set(globex)
    assert [
        r.run_id for p in await _all_pages(journal, "acme", 2, thread_id="t-1") for r in p.runs
    ] == [r.run_id for r in _newest_first(runs) if r.thread_id == "t-1"]
    # Another tenant's cursor only positions the listing: it never reveals that tenant's runs.
    acme_cursor = (await journal.list_runs("acme", limit=2)).next_cursor
    assert acme_cursor is not None
    through = await journal.list_runs("globex", limit=100, cursor=acme_cursor)
    assert {r.run_id for r in through.runs} <= set(globex)


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "%%%",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"17").decode(),
    ],
)
async def test_list_runs_rejects_a_malformed_cursor(journal: Journal, cursor: str) -> None:
    await _listed_runs(journal)
    with pytest.raises(ValidationFailedError):
        await journal.list_runs("acme", cursor=cursor)


# ---- the runtime on each backend -----------------------------------------------------------


async def test_runtime_runs_an_agent_to_completion(
    journal: Journal, registry: AgentRegistry
) -> None:
    runtime = AgentRuntime(journal, OfflineProvider(), registry, owner="worker-1")
    run = await submit_run(journal, registry, SubmitRun(agent="researcher", input="crashes?"))
    done = await runtime.execute(run.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.steps == 4
    assert done.usage.cost_usd > 0
    assert done.output
    assert await journal.get_run(run.run_id) == done

    records = await journal.records(run.run_id)
    assert [r.seq for r in records] == sorted({r.seq for r in records})
    for current, following in itertools.pairwise(records):
        assert following.seq == current.next_seq
    assert records[-1].status is RunStatus.SUCCEEDED
    events = await journal.events(run.run_id, limit=1000)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data["status"] == "succeeded"
    # Finished and released: executing again is a no-op, and the lease is free.
    assert await runtime.execute(run.run_id) == done
    lease = await journal.acquire_lease(run.run_id, "worker-2", TTL)
    assert lease.fence == 2


# ---- DynamoDB layout -----------------------------------------------------------------------


@pytest.fixture
def dynamo(aws: Aws, clock: Clock) -> Iterator[DynamoJournal]:
    journal = DynamoJournal(aws.table, aws.blobs, clock=clock, retention_days=7, max_workers=4)
    yield journal
    journal.close()


async def test_dynamodb_every_write_sets_the_ttl(
    aws: Aws, dynamo: DynamoJournal, clock: Clock
) -> None:
    ttl = aws.dynamodb.describe_time_to_live(TableName=aws.table_name)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    week = 7 * 86_400

    def run_expiry() -> int:
        item = aws.run_item(run.run_id)
        assert item is not None
        return int(item["expires_at"])

    run = await created(dynamo)
    assert run_expiry() == int(clock()) + week
    record_1 = aws.record_item(run.run_id, 1)
    assert record_1 is not None
    assert record_1["expires_at"] == int(clock()) + week
    clock.advance(100)
    await dynamo.append(run.run_id, record(2, 1))
    record_2 = aws.record_item(run.run_id, 2)
    assert record_2 is not None
    assert record_2["expires_at"] == int(clock()) + week
    clock.advance(100)
    await dynamo.update_run(run.run_id, RunPatch(steps=1), lease=None)
    assert run_expiry() == int(clock()) + week
    clock.advance(100)
    lease = await dynamo.acquire_lease(run.run_id, "w", TTL)
    assert run_expiry() == int(clock()) + week
    clock.advance(10)
    lease, _ = await dynamo.renew_lease(lease, TTL)
    assert run_expiry() == int(clock()) + week
    clock.advance(10)
    await dynamo.release_lease(lease)
    assert run_expiry() == int(clock()) + week


async def test_dynamodb_lists_a_tenants_runs_newest_first(aws: Aws, dynamo: DynamoJournal) -> None:
    runs = [
        await created(dynamo, tenant="acme", created_at=AT + timedelta(minutes=i))
        for i in (2, 0, 1)
    ]
    await created(dynamo, tenant="other")
    items = aws.table.query(TENANT_PK, tenant_pk("acme"), index=BY_TENANT, forward=False)
    newest_first = sorted(runs, key=lambda r: r.created_at, reverse=True)
    assert [i["run_id"] for i in items] == [r.run_id for r in newest_first]
    assert all(i["status"] == "queued" and i["agent"] == "researcher" for i in items)
    # Only the small projected attributes travel to the index.
    assert all("input" not in i and "lease_owner" not in i for i in items)


async def test_dynamodb_each_journal_write_is_one_request(aws: Aws, dynamo: DynamoJournal) -> None:
    meter = RequestMeter()
    meter.attach(aws.table.client)
    meter.attach(aws.blobs.client)

    run = new_run()
    await dynamo.create_run(run, first_record())
    assert meter.snapshot().keys() == {"dynamodb.TransactWriteItems"}
    assert meter.items_written() == 2

    for seq in range(2, 12):
        meter.reset()
        await dynamo.append(run.run_id, record(seq, 1, step=seq, data={"text": "x" * 2000}))
        assert meter.count() == 1
        assert meter.count("dynamodb", "PutItem") == 1
        assert meter.body_bytes("dynamodb") > 0

    meter.reset()
    lease = await dynamo.acquire_lease(run.run_id, "w", TTL, RunPatch(status=RunStatus.RUNNING))
    assert meter.snapshot().keys() == {"dynamodb.UpdateItem"}
    assert meter.count() == 1
    actions: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("update", lambda: dynamo.update_run(run.run_id, RunPatch(steps=2), lease=lease)),
        ("renew", lambda: dynamo.renew_lease(lease, TTL)),
        ("release", lambda: dynamo.release_lease(lease, RunPatch(status=RunStatus.SUCCEEDED))),
    ]
    for name, action in actions:
        meter.reset()
        await action()
        assert meter.snapshot().keys() == {"dynamodb.UpdateItem"}, name
        assert meter.count() == 1, name

    meter.reset()
    await dynamo.append(
        run.run_id, record(12, 1, tool_results=[_tool_result(random_text(500_000))])
    )
    assert meter.count("dynamodb") == 1
    assert meter.writes("dynamodb") == 1
    assert meter.count("s3", "PutObject") == 1
    assert meter.body_bytes("s3") > 350_000
    assert meter.body_bytes("dynamodb") < 2_000  # the item holds only the pointer


async def test_dynamodb_from_settings(aws: Aws, clock: Clock) -> None:
    settings = Settings(
        table_name=aws.table_name,
        bucket_name=aws.bucket_name,
        region=REGION,
        overflow_threshold_bytes=2_000,
        retention_days=2,
    )
    journal = DynamoJournal.from_settings(settings, max_workers=2, clock=clock)
    try:
        run = await created(journal, input={"text": random_text(5_000)})
        assert await journal.get_run(run.run_id) == run
        item = aws.run_item(run.run_id)
        assert item is not None
        assert "blob" in item["input"]  # 5 KB is over this deployment's threshold
        assert item["expires_at"] == int(clock()) + 2 * 86_400
    finally:
        journal.close()


async def test_dynamodb_list_runs_reads_the_index_a_page_at_a_time(aws: Aws, clock: Clock) -> None:
    # Small Query pages, so that filtered listings span several of them.
    journal = DynamoJournal(aws.table, aws.blobs, clock=clock, max_workers=2, list_page_items=2)
    try:
        runs = _newest_first(await _listed_runs(journal))
        meter = RequestMeter()
        meter.attach(aws.table.client)
        page = await journal.list_runs("acme", limit=3)
        assert page.runs == [summary(r) for r in runs[:3]]
        # Unfiltered: one Query for limit + 1 index items (the extra one says "more").
        assert meter.snapshot().keys() == {"dynamodb.Query"}
        assert meter.count() == 1
        for limit in (1, 2, 5):
            pages = await _all_pages(journal, "acme", limit, thread_id="t-2")
            assert [r for p in pages for r in p.runs] == [
                summary(r) for r in runs if r.thread_id == "t-2"
            ]
    finally:
        journal.close()


async def test_dynamodb_list_runs_rejects_a_cursor_it_did_not_make(
    dynamo: DynamoJournal,
) -> None:
    await created(dynamo)
    for position in [("2025-01-02T03:04:05+00:00", "run_1"), ("x", "y"), (AT.isoformat(), "")]:
        with pytest.raises(ValidationFailedError):
            await dynamo.list_runs("acme", cursor=encode_cursor(position))
