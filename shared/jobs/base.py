"""The job store and the workflow engine, as the logic sees them.

``JobStore``: one job item per job and one item per stage attempt (``shared/models/job.py``),
in memory or in the journal's DynamoDB table. ``Workflows``: the Step Functions calls the
platform makes (start and read an execution, answer a task token), on AWS or moto, or a
recording stand-in for unit tests.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from shared.models.job import AttemptPatch, AttemptStatus, Job, JobError, JobStatus, StageAttempt


class JobStore(Protocol):
    async def create_job(self, job: Job) -> None:
        """Store a new job; ``JobExistsError`` if its id is taken."""

    async def get_job(self, job_id: str) -> Job:
        """``JobNotFoundError`` if there is none."""

    async def finish_job(
        self,
        job_id: str,
        *,
        status: JobStatus,
        output: Any = None,
        error: JobError | None = None,
        at: datetime,
    ) -> Job:
        """Record the job's end once: a job already finished is returned unchanged."""

    async def put_attempt(self, attempt: StageAttempt) -> bool:
        """Store a new attempt; False (and nothing written) if it exists already."""

    async def get_attempt(self, job_id: str, stage: str, attempt_id: str) -> StageAttempt | None:
        """The attempt, or None."""

    async def update_attempt(
        self,
        job_id: str,
        stage: str,
        attempt_id: str,
        patch: AttemptPatch,
        *,
        expected_status: AttemptStatus | None = None,
    ) -> StageAttempt:
        """Apply the patch's non-None fields; ``JobNotFoundError`` if the attempt does not
        exist, ``JobStateConflictError`` if ``expected_status`` is given and not the current
        status. Returns the attempt as stored after the update."""

    async def attempts(self, job_id: str) -> list[StageAttempt]:
        """Every attempt of the job, oldest first (by ``started_at``, then ``attempt_id``)."""


class ExecutionStatus(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"


class ExecutionInfo(BaseModel):
    execution_arn: str
    status: ExecutionStatus
    output: Any = None
    error: str | None = None
    cause: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None


class Workflows(Protocol):
    async def start(self, state_machine_arn: str, name: str, input: Any) -> str:
        """Start an execution named ``name``; returns its ARN. Starting the same name with
        the same input again returns the same execution (Step Functions' idempotency)."""

    async def describe(self, execution_arn: str) -> ExecutionInfo:
        """The execution's status, output, error and cause."""

    async def stop(self, execution_arn: str, *, error: str, cause: str) -> None:
        """Abort a running execution (no error if it already ended)."""

    async def succeed(self, task_token: str, output: Any) -> None:
        """Answer a task token with an output; ``TaskTokenClosedError`` if it is closed."""

    async def fail(self, task_token: str, *, error: str, cause: str) -> None:
        """Fail a task token; ``TaskTokenClosedError`` if it is closed."""

    async def heartbeat(self, task_token: str) -> None:
        """Keep a task token alive; ``TaskTokenClosedError`` if it is closed."""
