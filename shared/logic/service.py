"""The use cases behind the HTTP API, the worker and the triggers.

Entry points build one ``Services`` (the composition root, ``shared/wiring.py``) and call
these functions; nothing here sees an API Gateway event or an SQS record. Every read and
write is scoped to the caller's tenant: another tenant's run is ``NotFoundError``, exactly
like a run that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.agents.registry import AgentRegistry
from shared.config import Settings
from shared.errors import (
    ConflictError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    RunExistsError,
    RunNotFoundError,
    RuntimeStateError,
    UsageStoreError,
)
from shared.ids import new_run_id
from shared.jobs.base import JobStore, Workflows
from shared.journal.base import Journal
from shared.logic.runs import (
    ApprovalDecision,
    Budget,
    SubmitRun,
    decide_approval,
    request_cancel,
    submit_run,
)
from shared.logic.threads import ThreadHistory, thread_turn
from shared.models.api import ApprovalBody, OnConflict, RunCreate
from shared.models.events import Event
from shared.models.run import Run, RunPage, RunStatus, Shape
from shared.pipelines.registry import PipelineRegistry
from shared.providers.base import Provider
from shared.queue.base import RunMessage, RunQueue
from shared.runtime import AgentRuntime, RuntimeOptions
from shared.runtime.observer import RunObserver
from shared.runtime.state import replay
from shared.tenancy.base import ControlStore, IdempotencyRecord

if TYPE_CHECKING:  # built on first use: the async submit path never needs them
    from shared.ratelimit import RateLimitStore
    from shared.usage.recorder import UsageRecorder

logger = logging.getLogger("switchyard.service")

MAX_WAIT_S = 20.0
POLL_START_S = 0.1
POLL_MAX_S = 1.0

CompletionHook = Callable[[Run], Any]


@dataclass
class Services:
    settings: Settings
    registry: AgentRegistry
    journal: Journal
    control: ControlStore
    queue: RunQueue
    # Built on first use: the async submit path never needs a model, so never imports one.
    make_provider: Callable[[], Provider]
    jobs: JobStore = field(default_factory=lambda: _memory_jobs())
    workflows: Workflows = field(default_factory=lambda: _memory_workflows())
    pipelines: PipelineRegistry = field(default_factory=PipelineRegistry)
    usage: UsageRecorder = field(default_factory=lambda: _memory_usage())
    rate_limits: RateLimitStore = field(default_factory=lambda: _memory_rate_limits())
    secrets: Mapping[str, str] = field(default_factory=dict)
    on_complete: CompletionHook | None = None
    owner: str | None = None
    observer: RunObserver | None = None
    _runtime: AgentRuntime | None = None

    def runtime(self) -> AgentRuntime:
        if self._runtime is None:
            from shared.gateway.factory import build_gateway
            from shared.providers.pricing import PriceTable

            provider = self.make_provider()
            settings = self.settings
            budgets = settings.daily_budget_usd if settings.tenant_daily_budget_usd else None
            self._runtime = AgentRuntime(
                self.journal,
                provider,
                self.registry,
                options=RuntimeOptions(lease_ttl_s=settings.lease_ttl_s),
                prices=PriceTable.from_settings(settings.prices),
                owner=self.owner,
                secrets=self.secrets,
                history=ThreadHistory(self.journal, self.control).load,
                observer=self.observer,
                gateway=build_gateway(settings, provider, self.rate_limits, self.observer),
                usage=self.usage,
                daily_budget=budgets,
            )
        return self._runtime


def _memory_jobs() -> JobStore:
    from shared.jobs.memory import MemoryJobStore

    return MemoryJobStore()


def _memory_rate_limits() -> RateLimitStore:
    from shared.ratelimit.memory import MemoryRateLimitStore

    return MemoryRateLimitStore()


def _memory_usage() -> UsageRecorder:
    from shared.usage.factory import build_usage_recorder

    return build_usage_recorder(Settings(), "memory")


def _memory_workflows() -> Workflows:
    from shared.jobs.memory import MemoryWorkflows

    return MemoryWorkflows()


@dataclass(frozen=True)
class Submitted:
    run: Run
    created: bool  # False: an idempotent retry returned the run it created before
    promoted: bool = False  # a sync run handed to the async track


def body_hash(body: RunCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def resolve_shape(requested: Shape, preferred: Shape) -> Shape:
    if requested is not Shape.AUTO:
        return requested
    return Shape.SYNC if preferred is Shape.SYNC else Shape.ASYNC


async def get_run(svc: Services, tenant: str, run_id: str) -> Run:
    """The run as the API shows it; live steps and usage while it is running."""
    try:
        run = await svc.journal.get_run(run_id)
    except RunNotFoundError:
        raise NotFoundError(f"run {run_id} not found") from None
    if run.tenant != tenant:
        raise NotFoundError(f"run {run_id} not found")
    if run.status is RunStatus.RUNNING:
        state = replay(await svc.journal.records(run_id))
        run = run.model_copy(update={"steps": state.step, "usage": state.usage})
    return run


async def create_run(
    svc: Services, tenant: str, body: RunCreate, *, idempotency_key: str | None = None
) -> Submitted:
    agent = svc.registry.get(body.agent)
    run_id = new_run_id()
    if idempotency_key:
        digest = body_hash(body)
        existing = await svc.control.claim_idempotency(
            IdempotencyRecord(
                tenant=tenant,
                key=idempotency_key,
                body_hash=digest,
                run_id=run_id,
                created_at=datetime.now(UTC),
            )
        )
        if existing is not None:
            if existing.body_hash != digest:
                raise ConflictError(
                    "Idempotency-Key was already used with a different request body",
                    details={"run_id": existing.run_id},
                )
            try:
                return Submitted(run=await get_run(svc, tenant, existing.run_id), created=False)
            except NotFoundError:
                run_id = existing.run_id  # the first attempt died before creating it
    shape = resolve_shape(body.mode, agent.shape)
    request = SubmitRun(
        agent=agent.name,
        input=body.input,
        tenant=tenant,
        thread_id=body.thread_id,
        shape=shape,
        metadata=body.metadata,
        budget=body.budget or Budget(),
        idempotency_key=idempotency_key,
        webhook_url=body.webhook_url,
    )
    if body.thread_id:
        thread = await svc.control.add_thread_run(
            tenant,
            body.thread_id,
            run_id,
            only_if_idle=body.on_conflict is OnConflict.REJECT,
            at=datetime.now(UTC),
        )
        active = thread.active
        if body.on_conflict is OnConflict.INTERRUPT and active and active != run_id:
            # It may have finished meanwhile (or never got created): nothing to interrupt.
            with contextlib.suppress(RuntimeStateError, RunNotFoundError):
                await request_cancel(svc.journal, active)
    try:
        run = await submit_run(svc.journal, svc.registry, request, run_id=run_id)
    except RunExistsError:
        return Submitted(run=await get_run(svc, tenant, run_id), created=False)
    if shape is Shape.SYNC:
        return await _run_inline(svc, run)
    await svc.queue.send(RunMessage(run_id=run.run_id))
    return Submitted(run=run, created=True)


async def _run_inline(svc: Services, run: Run) -> Submitted:
    """The sync shape: execute within the request; past the budget, hand over to async."""
    soft = time.monotonic() + svc.settings.sync_soft_budget_s
    try:
        async with asyncio.timeout(svc.settings.sync_hard_budget_s):
            result = await execute_run(svc, run.run_id, deadline=soft)
    except TimeoutError:
        # A single call outlived the budget: the runtime released the run unfinished.
        result = await svc.journal.get_run(run.run_id)
    except (ProviderError, RateLimitError, UsageStoreError) as exc:
        # A failure a retry can get past (every model overloaded, the shared buckets or the
        # counters unreachable): the runtime released the run unfinished; the async track
        # retries it, as it would any redelivered run.
        logger.warning(
            "sync run handed to the async track after a retryable failure",
            extra={"run_id": run.run_id, "error_code": exc.code},
        )
        result = await svc.journal.get_run(run.run_id)
    # A Lambda may be frozen once it answers: its counters and rate-limit reconciliations
    # (with what is left of its allowance) are written before it does.
    await svc.usage.flush(force=True)
    await svc.runtime().gateway.flush()
    if result.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        await svc.queue.send(RunMessage(run_id=run.run_id))
        return Submitted(run=result, created=True, promoted=True)
    return Submitted(run=result, created=True)


async def execute_run(svc: Services, run_id: str, *, deadline: float | None = None) -> Run:
    """Execute a run if its turn has come (threads run one run at a time).

    Returns the run as stored: finished, paused, or still ``queued`` when it must wait for
    an earlier run of its thread (the caller retries later) or was handed over at ``deadline``.
    """
    run = await svc.journal.get_run(run_id)
    waits_for_thread = run.thread_id is not None and not run.status.is_terminal
    if waits_for_thread and not await thread_turn(svc.journal, svc.control, run):
        return run
    result = await svc.runtime().execute(run_id, deadline=deadline)
    if result.job is not None and (
        result.status.is_terminal or result.status is RunStatus.AWAITING_APPROVAL
    ):
        # Imported here: the stages module builds on this one.
        from shared.logic.stages import report_stage

        await report_stage(svc, result)
    if result.status.is_terminal:
        if result.thread_id:
            await svc.control.finish_thread_run(
                result.tenant, result.thread_id, result.run_id, datetime.now(UTC)
            )
        if svc.on_complete is not None:
            outcome = svc.on_complete(result)
            if asyncio.iscoroutine(outcome):
                await outcome
    return result


async def list_runs(
    svc: Services,
    tenant: str,
    *,
    status: RunStatus | None = None,
    agent: str | None = None,
    thread_id: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> RunPage:
    return await svc.journal.list_runs(
        tenant, status=status, agent=agent, thread_id=thread_id, limit=limit, cursor=cursor
    )


async def wait_events(
    svc: Services,
    tenant: str,
    run_id: str,
    *,
    after: int = 0,
    wait_s: float = 0.0,
    limit: int = 100,
) -> list[Event]:
    """Events after the cursor; with ``wait_s``, long-poll until one arrives (≤ 20 s)."""
    await get_run(svc, tenant, run_id)  # tenant scoping
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    delay = POLL_START_S
    while True:
        events = await svc.journal.events(run_id, after=after, limit=limit)
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            return events
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, POLL_MAX_S)


async def cancel_run(svc: Services, tenant: str, run_id: str) -> Run:
    await get_run(svc, tenant, run_id)
    run = await request_cancel(svc.journal, run_id)
    if run.status is RunStatus.AWAITING_APPROVAL:
        # Nobody holds a paused run: a worker takes it and ends it at its first boundary.
        await svc.queue.send(RunMessage(run_id=run_id))
    return run


async def approve_run(svc: Services, tenant: str, run_id: str, body: ApprovalBody) -> Run:
    await get_run(svc, tenant, run_id)
    run = await decide_approval(
        svc.journal, run_id, ApprovalDecision.model_validate(body.model_dump())
    )
    await svc.queue.send(RunMessage(run_id=run_id))
    return run


async def get_thread(svc: Services, tenant: str, thread_id: str) -> dict[str, Any]:
    thread = await svc.control.get_thread(tenant, thread_id)
    if thread is None:
        raise NotFoundError(f"thread {thread_id} not found")
    page = await svc.journal.list_runs(tenant, thread_id=thread_id, limit=100)
    history = await ThreadHistory(svc.journal, svc.control).conversation(tenant, thread_id)
    return {
        "thread_id": thread_id,
        "runs": [r.model_dump(mode="json") for r in reversed(page.runs)],
        "active_run_id": thread.active,
        "messages": history,
    }
