"""Jobs: executions of a pipeline on Step Functions, and the record of each stage attempt.

Step Functions owns the control flow; the job store keeps what Step Functions does not show
(or, on the local interpreter, drops): which runs a stage started, what each attempt cost,
why it failed (the cause as the worker saw it), and a gate's pending approval. Attempts are
separate items written by whoever executes the stage, so map iterations never contend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.ids import ulid


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    return f"job_{ulid()}"


class JobStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # running, and a gate or a stage's run waits
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class StageKind(StrEnum):
    AGENT = "agent"
    FUNCTION = "function"
    APPROVAL = "approval"


class AttemptStatus(StrEnum):
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)


class JobError(BaseModel):
    """Why a stage or a job failed: ``code`` is the Step Functions error name (``RunFailed``,
    ``StageFailed``, ``ApprovalRejected``, ``States.Timeout``...), ``message`` its cause."""

    code: str
    message: str = ""
    stage: str | None = None


class Job(BaseModel):
    job_id: str
    tenant: str
    pipeline: str
    input: Any = None
    status: JobStatus = JobStatus.RUNNING
    execution_arn: str = ""
    idempotency_key: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    output: Any = None
    error: JobError | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class StageAttempt(BaseModel):
    """One attempt at one stage of a job: an agent run, a function call, or an open gate.

    ``attempt_id`` is the run id for agent stages, so a redelivered dispatch finds its
    attempt. The private fields (the task token, the stage's data and paths) are what the
    stage answers Step Functions with; API views never show them."""

    job_id: str
    stage: str
    attempt_id: str
    kind: StageKind
    status: AttemptStatus = AttemptStatus.RUNNING
    run_id: str | None = None
    output: Any = None
    error: JobError | None = None
    cost_usd: float = 0.0
    prompt: str | None = None  # an approval gate's question
    decision: dict[str, Any] | None = None  # an approval gate's answer
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    # Private: never in an API view, a log line or an event.
    task_token: str | None = None
    data: Any = None
    input_path: str = "$"
    result_path: str = "$"


class AttemptPatch(BaseModel):
    """Fields to change on an attempt; None leaves a field as it is."""

    model_config = ConfigDict(extra="forbid")

    status: AttemptStatus | None = None
    run_id: str | None = None
    output: Any = None
    error: JobError | None = None
    cost_usd: float | None = None
    decision: dict[str, Any] | None = None
    finished_at: datetime | None = None
    task_token: str | None = None


# ---- what Step Functions hands a stage -------------------------------------------------------


class StageCall(BaseModel):
    """The job context and data every task state passes (ASL Parameters, see asl.py)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    tenant: str
    pipeline: str
    stage: str
    data: Any = None


class AgentDispatch(StageCall):
    """The ``stage`` of an agent stage's SQS message: start a run on the stage's input."""

    heartbeat_s: int = Field(default=60, ge=1)


class FunctionCall(StageCall):
    """The Lambda payload of a function stage (``action: function``) or of an approval gate
    opening (``action: gate``, with the task token the job waits on)."""

    action: str = "function"
    task_token: str | None = None

    @model_validator(mode="after")
    def _gate_has_token(self) -> FunctionCall:
        if self.action not in ("function", "gate"):
            raise ValueError("action must be function or gate")
        if self.action == "gate" and not self.task_token:
            raise ValueError("a gate needs its task token")
        return self


def done(data: Any) -> dict[str, Any]:
    """An agent stage's answer when its run finished: the data after the stage."""
    return {"done": data}


def paused(run_id: str) -> dict[str, Any]:
    """An agent stage's answer when its run paused for approval (the job waits, no
    heartbeats, on a new token the worker attaches)."""
    return {"paused": {"run_id": run_id}}


# ---- what the API shows ----------------------------------------------------------------------


class AttemptView(BaseModel):
    attempt_id: str
    status: AttemptStatus
    run_id: str | None = None
    output: Any = None
    error: JobError | None = None
    cost_usd: float = 0.0
    started_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def of(cls, attempt: StageAttempt) -> AttemptView:
        return cls.model_validate(attempt.model_dump(include=set(cls.model_fields)))


class StageView(BaseModel):
    """A task stage of the job (agent, function, approval) in definition order. A stage in a
    map has one attempt per item (and per retry)."""

    name: str
    kind: StageKind
    status: str = Field(description="pending, running, awaiting_approval, succeeded or failed")
    runs: list[str] = Field(default_factory=list)
    output: Any = None
    error: JobError | None = None
    cost_usd: float = 0.0
    attempts: list[AttemptView] = Field(default_factory=list)


class PendingApproval(BaseModel):
    """Something the job waits on a person for: an approval gate, or a stage's agent run
    paused on a tool call that requires approval."""

    stage: str
    kind: str = Field(description="gate or run")
    prompt: str | None = None
    run_id: str | None = None
    data: Any = Field(default=None, description="A gate: the data it would pass on")
    calls: list[dict[str, Any]] = Field(
        default_factory=list, description="A run: the tool calls waiting for a decision"
    )
    requested_at: datetime | None = None


class JobDetail(BaseModel):
    job_id: str
    tenant: str
    pipeline: str
    status: JobStatus
    input: Any = None
    output: Any = None
    error: JobError | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    cost_usd: float = 0.0
    stages: list[StageView] = Field(default_factory=list)
    pending_approvals: list[PendingApproval] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
