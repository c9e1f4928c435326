"""Response bodies of the HTTP API.

They document the contract in the OpenAPI document and shape what the routes return. Request
bodies (``RunCreate``, ``ApprovalBody``, ``JobCreate``, ``JobApprovalBody``) live in
``shared.models.api``, next to the use cases that take them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.models.events import Event
from shared.models.job import JobDetail
from shared.models.run import Run, RunError, RunStatus, RunSummary, Shape, Usage


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable: branch on this, not on message")
    message: str = Field(description="For people; may change between versions")
    details: Any = Field(default=None, description="Structured context, depends on the code")


class ErrorResponse(BaseModel):
    """The body of every failure, whatever the status code."""

    error: ErrorBody


class RunView(BaseModel):
    """A run as the API shows it."""

    run_id: str
    tenant: str
    agent: str
    input: Any
    shape: Shape
    status: RunStatus
    thread_id: str | None = None
    idempotency_key: str | None = None
    webhook_url: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    budget: dict[str, float] = Field(default_factory=dict)
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0
    output: Any = None
    error: RunError | None = None
    pending_approval: dict[str, Any] | None = Field(
        default=None, description="The tool calls waiting for a decision (awaiting_approval)"
    )
    cancel_requested: bool = False
    created_at: datetime
    started_at: datetime | None = None
    updated_at: datetime
    finished_at: datetime | None = None

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls.model_validate({**run.model_dump(), "cost_usd": run.cost_usd})


class RunLinks(BaseModel):
    run: str = Field(alias="self")
    events: str


class RunAccepted(BaseModel):
    """202: the run is durable and will be (or is being) executed; poll it or its events."""

    run_id: str
    status: RunStatus
    agent: str
    shape: Shape
    thread_id: str | None = None
    created_at: datetime
    promoted: bool = Field(
        default=False,
        description="A sync run that outlived the request's time budget and moved to a worker",
    )
    links: RunLinks


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; absent on the last page"
    )


class EventPage(BaseModel):
    events: list[Event]
    next_after: int = Field(description="Pass as `after` on the next poll")


class ThreadView(BaseModel):
    thread_id: str
    runs: list[dict[str, Any]] = Field(description="The thread's runs, oldest first")
    active_run_id: str | None = Field(
        default=None, description="The run executing or next to execute; null when idle"
    )
    messages: list[dict[str, Any]] = Field(
        description="The conversation so far, in Messages API form"
    )


class AgentList(BaseModel):
    agents: list[dict[str, Any]]


class PipelineInfo(BaseModel):
    name: str
    description: str = ""
    stages: list[dict[str, Any]] = Field(
        description="The stages in order: {name, kind, ...} (kind: agent, function, map, "
        "parallel, choice or approval; nested stages under stages/branches/cases)"
    )
    deployed: bool = Field(
        description="Whether this stack has the pipeline's state machine (else POST /v1/jobs "
        "answers 503 pipeline_not_deployed)"
    )


class PipelineList(BaseModel):
    pipelines: list[PipelineInfo]


class JobView(JobDetail):
    """A pipeline job as the API shows it.

    ``status``: ``running``, ``awaiting_approval`` (running, and something in
    ``pending_approvals`` waits on a person), ``succeeded``, ``failed`` or ``cancelled``.
    ``stages`` are the task stages (agent, function, approval) in definition order, each with
    its attempts (one per map item and per retry), the runs it started and what it cost.
    ``error`` names the failing stage and carries its cause. Task tokens and the data passed
    between stages are never shown, except the data an approval gate would pass on
    (``pending_approvals[].data``), which is what the reviewer decides on.
    """

    @classmethod
    def of(cls, detail: JobDetail) -> JobView:
        return cls.model_validate(detail.model_dump())


class Health(BaseModel):
    status: str
    version: str
