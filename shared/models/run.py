"""The run: one execution of an agent on an input."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Shape(StrEnum):
    SYNC = "sync"
    ASYNC = "async"
    AUTO = "auto"


class Usage(BaseModel):
    """Token usage as the Messages API reports it, plus what it cost."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 10),
        )


class RunError(BaseModel):
    """Why a run ended as failed or cancelled. ``code`` is stable; ``message`` is for people."""

    code: str
    message: str
    details: dict[str, Any] | None = None


class Lease(BaseModel):
    """Exclusive right to execute a run until ``expires_at`` (epoch ms).

    ``fence`` grows by one at every acquisition, so a writer holding an older fence is stale.
    """

    model_config = ConfigDict(frozen=True)

    run_id: str
    owner: str
    fence: int
    expires_at_ms: int


class JobLink(BaseModel):
    """The pipeline job stage a run executes (its attempt is ``attempt_id = run_id``)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    stage: str


class Run(BaseModel):
    """The run's metadata item. Steps live in the journal, not here."""

    run_id: str
    tenant: str = "default"
    agent: str
    input: Any
    shape: Shape = Shape.ASYNC
    status: RunStatus = RunStatus.QUEUED
    thread_id: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    budget: dict[str, float] = Field(default_factory=dict)
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    output: Any = None
    error: RunError | None = None
    pending_approval: dict[str, Any] | None = None
    job: JobLink | None = None
    cancel_requested: bool = False
    # Seconds spent awaiting approval; excluded from the agent's timeout_s.
    paused_s: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd


class RunSummary(BaseModel):
    """What a run list shows (the fields the tenant index carries)."""

    run_id: str
    agent: str
    status: RunStatus
    shape: Shape
    thread_id: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = None
