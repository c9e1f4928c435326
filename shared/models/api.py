"""Request bodies of the HTTP API, shared by the handler and the use cases behind it."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.logic.runs import Budget
from shared.models.run import Shape

THREAD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class OnConflict(StrEnum):
    REJECT = "reject"
    ENQUEUE = "enqueue"
    INTERRUPT = "interrupt"


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=64)
    input: Any = Field(description="The user's message: a string, or JSON the agent expects")
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN)
    mode: Shape = Shape.AUTO
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)
    webhook_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    budget: Budget | None = None
    on_conflict: OnConflict = OnConflict.REJECT


class ApprovalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=2000)
    edited_input: dict[str, Any] | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pipeline: str = Field(min_length=1, max_length=64)
    input: dict[str, Any] = Field(
        default_factory=dict, description="The pipeline's input: a JSON object"
    )
    metadata: dict[str, str] = Field(default_factory=dict, max_length=32)


class JobApprovalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=2000)
    stage: str | None = Field(
        default=None, description="The gate to decide, when more than one is waiting"
    )
