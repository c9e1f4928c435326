"""Run use cases: submit, read, cancel, decide an approval."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.agents.registry import AgentRegistry
from shared.errors import RuntimeStateError
from shared.ids import new_run_id
from shared.journal.base import Journal, RunPatch
from shared.models.events import Event, EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import JobLink, Run, RunStatus, Shape


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=1)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_input_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_repeated_tool_calls: int | None = Field(default=None, ge=2)


class SubmitRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str
    input: Any
    tenant: str = "default"
    thread_id: str | None = None
    shape: Shape = Shape.ASYNC
    metadata: dict[str, str] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    idempotency_key: str | None = None
    webhook_url: str | None = None
    job: JobLink | None = None


class ApprovalDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = None
    edited_input: dict[str, Any] | None = None


async def submit_run(
    journal: Journal, registry: AgentRegistry, request: SubmitRun, *, run_id: str | None = None
) -> Run:
    """Create the run and its first record (the ``queued`` event). Nothing executes yet."""
    agent = registry.get(request.agent)
    now = datetime.now(UTC)
    run = Run(
        run_id=run_id or new_run_id(),
        tenant=request.tenant,
        agent=agent.name,
        input=request.input,
        shape=request.shape,
        thread_id=request.thread_id,
        idempotency_key=request.idempotency_key,
        webhook_url=request.webhook_url,
        metadata=request.metadata,
        budget=request.budget.model_dump(exclude_none=True),
        job=request.job,
        created_at=now,
        updated_at=now,
    )
    first = JournalRecord(
        seq=1,
        kind=RecordKind.CREATED,
        at=now,
        events=[
            Event(
                seq=1,
                type=EventType.RUN_STATUS,
                at=now,
                data={"status": RunStatus.QUEUED.value, "agent": agent.name},
            )
        ],
    )
    await journal.create_run(run, first)
    return run


async def request_cancel(journal: Journal, run_id: str) -> Run:
    """Flag the run; whoever executes it stops at its next step boundary."""
    run = await journal.get_run(run_id)
    if run.status.is_terminal:
        raise RuntimeStateError(
            f"run {run_id} already {run.status.value}", details={"status": run.status.value}
        )
    return await journal.update_run(
        run_id, RunPatch(cancel_requested=True, updated_at=datetime.now(UTC)), lease=None
    )


async def decide_approval(journal: Journal, run_id: str, decision: ApprovalDecision) -> Run:
    """Record a human decision on a paused run and make it runnable again (status queued)."""
    run = await journal.get_run(run_id)
    pending = run.pending_approval
    if run.status is not RunStatus.AWAITING_APPROVAL or not pending:
        raise RuntimeStateError(
            f"run {run_id} is {run.status.value}, not awaiting approval",
            details={"status": run.status.value},
        )
    if decision.edited_input is not None and len(pending["calls"]) != 1:
        raise RuntimeStateError(
            "edited_input needs exactly one pending call",
            details={"pending_calls": len(pending["calls"])},
        )
    now = datetime.now(UTC)
    requested_at = pending.get("requested_at")
    waited = (now - datetime.fromisoformat(requested_at)).total_seconds() if requested_at else 0.0
    return await journal.update_run(
        run_id,
        RunPatch(
            status=RunStatus.QUEUED,
            pending_approval={**pending, "decision": decision.model_dump(exclude_none=True)},
            paused_s=run.paused_s + max(0.0, waited),
            updated_at=now,
        ),
        lease=None,
        expected_status=RunStatus.AWAITING_APPROVAL,
    )
