"""Use cases behind the API and worker: threads, idempotency edges, sync hand-over."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.config import Settings
from shared.errors import ConflictError, NotFoundError, ProviderError
from shared.logic import service
from shared.logic.threads import ThreadHistory, thread_turn
from shared.models.api import OnConflict, RunCreate
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import RunStatus
from shared.providers.offline import OfflineProvider
from shared.queue.memory import MemoryQueue
from shared.tenancy.base import IdempotencyRecord
from shared.wiring import build_services


def _svc(**settings: float) -> service.Services:
    return build_services(Settings(**settings), backend="memory")


async def _drain(svc: service.Services) -> list[str]:
    """Act as a worker until the queue is empty; returns statuses in execution order."""
    seen: list[str] = []
    assert isinstance(svc.queue, MemoryQueue)
    while True:
        messages = await svc.queue.receive(wait_s=0)
        if not messages:
            return seen
        for m in messages:
            run = await service.execute_run(svc, m.body.run_id)
            seen.append(run.status.value)
            if run.status is RunStatus.QUEUED:
                await svc.queue.change_visibility(m.receipt, 0)
            else:
                await svc.queue.delete(m.receipt)


async def test_runs_on_a_thread_execute_in_order_and_see_earlier_turns() -> None:
    svc = _svc()
    first = await service.create_run(
        svc, "acme", RunCreate(agent="researcher", input="first", thread_id="t")
    )
    second = await service.create_run(
        svc,
        "acme",
        RunCreate(
            agent="ticket-triage",
            input="second",
            thread_id="t",
            on_conflict=OnConflict.ENQUEUE,
            mode="async",
        ),
    )
    # The second waits while the first is unfinished, whatever order the queue delivers.
    assert not await thread_turn(svc.journal, svc.control, second.run)
    await _drain(svc)
    done = await svc.journal.get_run(second.run.run_id)
    assert done.status is RunStatus.SUCCEEDED
    history = await ThreadHistory(svc.journal, svc.control).load(done)
    assert history[0] == {"role": "user", "content": "first"}
    assert history[-1]["role"] == "assistant"
    assert (await svc.journal.get_run(first.run.run_id)).status is RunStatus.SUCCEEDED


async def test_reject_policy_refuses_a_busy_thread() -> None:
    svc = _svc()
    await service.create_run(svc, "acme", RunCreate(agent="researcher", input="a", thread_id="t"))
    with pytest.raises(ConflictError) as err:
        await service.create_run(
            svc, "acme", RunCreate(agent="researcher", input="b", thread_id="t")
        )
    assert err.value.details["active_run_id"]


async def test_interrupt_cancels_the_active_run_at_its_next_boundary() -> None:
    svc = _svc()
    first = await service.create_run(
        svc, "acme", RunCreate(agent="researcher", input="a", thread_id="t")
    )
    await service.create_run(
        svc,
        "acme",
        RunCreate(agent="researcher", input="b", thread_id="t", on_conflict=OnConflict.INTERRUPT),
    )
    await _drain(svc)
    cancelled = await svc.journal.get_run(first.run.run_id)
    assert cancelled.status is RunStatus.CANCELLED


async def test_a_thread_whose_active_run_finished_without_advancing_heals() -> None:
    svc = _svc()
    first = await service.create_run(
        svc, "acme", RunCreate(agent="researcher", input="a", thread_id="t")
    )
    await svc.runtime().execute(first.run.run_id)  # finished, but the thread was not told
    second = await service.create_run(
        svc,
        "acme",
        RunCreate(agent="researcher", input="b", thread_id="t", on_conflict=OnConflict.ENQUEUE),
    )
    assert await thread_turn(svc.journal, svc.control, second.run)
    thread = await svc.control.get_thread("acme", "t")
    assert thread is not None
    assert thread.active == second.run.run_id


async def test_history_drops_unanswered_tool_calls_and_merges_turns() -> None:
    svc = _svc()
    first = await service.create_run(
        svc,
        "acme",
        RunCreate(agent="researcher", input="a", thread_id="t", budget={"max_steps": 1}),
    )
    await _drain(svc)
    failed = await svc.journal.get_run(first.run.run_id)
    assert failed.status is RunStatus.FAILED  # its one step asked for a tool that never ran
    nxt = await service.create_run(
        svc,
        "acme",
        RunCreate(agent="researcher", input="b", thread_id="t", on_conflict=OnConflict.ENQUEUE),
    )
    history = await ThreadHistory(svc.journal, svc.control).load(nxt.run)
    assert history == [{"role": "user", "content": "a"}]  # the dangling tool_use is gone


async def test_idempotency_claim_whose_run_was_never_created_is_completed_on_retry() -> None:
    svc = _svc()
    body = RunCreate(agent="researcher", input="x", mode="async")
    await svc.control.claim_idempotency(
        IdempotencyRecord(
            tenant="acme",
            key="k",
            body_hash=service.body_hash(body),
            run_id="run_ORPHANED",
            created_at=datetime.now(UTC),
        )
    )
    retried = await service.create_run(svc, "acme", body, idempotency_key="k")
    assert retried.run.run_id == "run_ORPHANED"
    assert retried.created
    again = await service.create_run(svc, "acme", body, idempotency_key="k")
    assert again.run.run_id == "run_ORPHANED"
    assert not again.created


async def test_sync_run_past_its_budget_is_handed_to_the_queue() -> None:
    # 300 ms per model call, a 500 ms budget: the first step fits even on a loaded machine.
    svc = build_services(Settings(sync_soft_budget_s=0.5), backend="memory", offline_latency_s=0.3)
    submitted = await service.create_run(
        svc, "acme", RunCreate(agent="researcher", input="q", mode="sync")
    )
    assert submitted.promoted
    assert submitted.run.status is RunStatus.QUEUED
    records = await svc.journal.records(submitted.run.run_id)
    handed_over_at = max(r.step for r in records)
    assert handed_over_at >= 1  # it made progress inline before the hand-over
    # The run item shows that progress while it waits for a worker.
    assert submitted.run.steps == handed_over_at
    assert submitted.run.usage.output_tokens > 0
    statuses = await _drain(svc)
    assert statuses == ["succeeded"]
    done = await svc.journal.get_run(submitted.run.run_id)
    assert done.steps == 4  # the worker continued from the journal, nothing redone


async def test_another_tenants_run_is_not_found() -> None:
    svc = _svc()
    run = await service.create_run(svc, "acme", RunCreate(agent="researcher", input="x"))
    with pytest.raises(NotFoundError):
        await service.get_run(svc, "globex", run.run.run_id)
    with pytest.raises(NotFoundError):
        await service.cancel_run(svc, "globex", run.run.run_id)


class _FlakyProvider:
    """The offline model whose first ``failures`` calls fail with a retryable error."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.inner = OfflineProvider()

    async def complete(self, request: ModelRequest) -> ModelResponse:
        if self.failures:
            self.failures -= 1
            raise ProviderError("503 unavailable", status=503, retryable=True)
        return await self.inner.complete(request)


async def test_sync_run_whose_model_fails_retryably_is_handed_to_the_queue() -> None:
    svc = _svc(provider_attempts=1)  # the gateway gives up on a model at its first 503
    # Every model of the agent's chain fails once.
    provider = _FlakyProvider(failures=len(svc.registry.get("researcher").models))
    svc.make_provider = lambda: provider
    submitted = await service.create_run(
        svc, "acme", RunCreate(agent="researcher", input="q", mode="sync")
    )
    # Not a 500 with the run stranded as queued and no message: the async track has it.
    assert submitted.promoted
    assert submitted.run.status is RunStatus.QUEUED
    assert await _drain(svc) == ["succeeded"]
