"""In-memory job store (reference backend) and a recording Step Functions stand-in.

``MemoryJobStore`` keeps every job and attempt serialized (JSON) and parses it back on read,
like ``MemoryJournal``: callers never share mutable objects with it (a value changed after
``create_job`` or on a returned model leaves the stored one as it was), and a value that
would not survive the DynamoDB backend's JSON encoding fails here first.

``MemoryWorkflows`` is for unit tests: it starts nothing, but records every call and keeps
each execution's ``ExecutionInfo``, which a test moves on with ``set_execution``.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any, Literal

from shared.errors import (
    JobExistsError,
    JobNotFoundError,
    JobStateConflictError,
    JobStoreError,
    TaskTokenClosedError,
    WorkflowError,
)
from shared.jobs.base import ExecutionInfo, ExecutionStatus
from shared.models.job import (
    AttemptPatch,
    AttemptStatus,
    Job,
    JobError,
    JobStatus,
    StageAttempt,
    utcnow,
)

MEMORY_REGION = "us-east-1"
MEMORY_ACCOUNT = "000000000000"

AttemptKey = tuple[str, str]  # (stage, attempt_id)


class MemoryJobStore:
    """``JobStore`` in memory. Safe to share between tasks (and threads): every method holds
    one lock and never awaits while holding it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, str] = {}
        self._attempts: dict[str, dict[AttemptKey, str]] = {}
        self.writes = 0  # write requests, for tests and benchmarks

    async def create_job(self, job: Job) -> None:
        raw = _dump(job)
        with self._lock:
            if job.job_id in self._jobs:
                raise JobExistsError(f"job {job.job_id} already exists")
            self._jobs[job.job_id] = raw
            self.writes += 1

    async def get_job(self, job_id: str) -> Job:
        with self._lock:
            return self._job(job_id)

    async def finish_job(
        self,
        job_id: str,
        *,
        status: JobStatus,
        output: Any = None,
        error: JobError | None = None,
        at: datetime,
    ) -> Job:
        _check_final(status)
        with self._lock:
            job = self._job(job_id)
            if job.status.is_terminal:
                return job
            update: dict[str, Any] = {"status": status, "updated_at": at, "finished_at": at}
            if output is not None:
                update["output"] = output
            if error is not None:
                update["error"] = error
            raw = _dump(job.model_copy(update=update))
            self._jobs[job_id] = raw
            self.writes += 1
            return Job.model_validate_json(raw)

    async def put_attempt(self, attempt: StageAttempt) -> bool:
        raw = _dump(attempt)
        with self._lock:
            attempts = self._attempts.setdefault(attempt.job_id, {})
            key = (attempt.stage, attempt.attempt_id)
            if key in attempts:
                return False
            attempts[key] = raw
            self.writes += 1
            return True

    async def get_attempt(self, job_id: str, stage: str, attempt_id: str) -> StageAttempt | None:
        with self._lock:
            raw = self._attempts.get(job_id, {}).get((stage, attempt_id))
            return StageAttempt.model_validate_json(raw) if raw is not None else None

    async def update_attempt(
        self,
        job_id: str,
        stage: str,
        attempt_id: str,
        patch: AttemptPatch,
        *,
        expected_status: AttemptStatus | None = None,
    ) -> StageAttempt:
        update = patch_fields(patch)
        with self._lock:
            attempts = self._attempts.get(job_id, {})
            raw = attempts.get((stage, attempt_id))
            if raw is None:
                raise JobNotFoundError(f"job {job_id} has no attempt {attempt_id} of {stage}")
            attempt = StageAttempt.model_validate_json(raw)
            if expected_status is not None and attempt.status != expected_status:
                raise JobStateConflictError(
                    f"attempt {attempt_id} of {stage} is {attempt.status.value},"
                    f" not {expected_status.value}",
                    details={"status": attempt.status.value},
                )
            raw = _dump(attempt.model_copy(update=update))
            attempts[stage, attempt_id] = raw
            self.writes += 1
            return StageAttempt.model_validate_json(raw)

    async def attempts(self, job_id: str) -> list[StageAttempt]:
        with self._lock:
            stored = list(self._attempts.get(job_id, {}).values())
        attempts = [StageAttempt.model_validate_json(raw) for raw in stored]
        return sorted(attempts, key=attempt_order)

    def _job(self, job_id: str) -> Job:
        raw = self._jobs.get(job_id)
        if raw is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return Job.model_validate_json(raw)


def patch_fields(patch: AttemptPatch) -> dict[str, Any]:
    """The fields a patch sets: its non-None ones, as model values (not dumped)."""
    return {
        name: getattr(patch, name)
        for name in AttemptPatch.model_fields
        if getattr(patch, name) is not None
    }


def attempt_order(attempt: StageAttempt) -> tuple[datetime, str]:
    """Oldest first, then by attempt id (``JobStore.attempts``)."""
    return (attempt.started_at, attempt.attempt_id)


def _check_final(status: JobStatus) -> None:
    if not status.is_terminal:
        raise JobStoreError(
            f"a job can only finish as succeeded, failed or cancelled, not {status}"
        )


def _dump(model: Job | StageAttempt) -> str:
    try:
        return model.model_dump_json()
    except ValueError as exc:  # pydantic's serialization error (a value JSON cannot hold)
        raise JobStoreError(f"cannot store {type(model).__name__}: {exc}") from exc


# ---- Step Functions stand-in -----------------------------------------------------------------


Answer = tuple[Literal["success", "failure"], Any]


class MemoryWorkflows:
    """``Workflows`` for unit tests: records calls, runs nothing.

    - ``start`` stores a RUNNING execution named
      ``arn:aws:states:us-east-1:000000000000:execution:<state machine name>:<name>``; the
      same name with the same input returns that ARN again, with another input raises
      ``JobExistsError``. Each accepted call is appended to ``starts``.
    - ``describe`` returns the stored ``ExecutionInfo`` (``set_execution`` changes it);
      ``stop`` marks a RUNNING execution ABORTED and appends to ``stops``.
    - ``succeed`` / ``fail`` record the answer in ``answers`` (``("success", output)`` or
      ``("failure", {"error": ..., "cause": ...})``) by token; ``heartbeat`` appends the token
      to ``heartbeats``. A token answered already, or closed with ``close_token``, raises
      ``TaskTokenClosedError``. Tokens are opaque: any other string is an open token.

    Values (inputs, outputs) are JSON round-tripped, as Step Functions would: the records are
    copies the caller cannot change afterwards.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.executions: dict[str, ExecutionInfo] = {}
        self.inputs: dict[str, Any] = {}
        self.starts: list[tuple[str, str, Any]] = []  # (state machine ARN, name, input)
        self.stops: list[tuple[str, str, str]] = []  # (execution ARN, error, cause)
        self.answers: dict[str, Answer] = {}
        self.heartbeats: list[str] = []
        self.closed: set[str] = set()

    # ---- test controls ----------------------------------------------------------------------

    def set_execution(
        self,
        execution_arn: str,
        status: ExecutionStatus,
        output: Any = None,
        error: str | None = None,
        cause: str | None = None,
    ) -> ExecutionInfo:
        """Set what ``describe`` returns for ``execution_arn`` (known or not)."""
        with self._lock:
            previous = self.executions.get(execution_arn)
            info = ExecutionInfo(
                execution_arn=execution_arn,
                status=status,
                output=_json_copy(output),
                error=error,
                cause=cause,
                started_at=previous.started_at if previous is not None else utcnow(),
                stopped_at=None if status == ExecutionStatus.RUNNING else utcnow(),
            )
            self.executions[execution_arn] = info
            return info.model_copy(deep=True)

    def close_token(self, task_token: str) -> None:
        """Make ``task_token`` closed (timed out, or its execution ended)."""
        with self._lock:
            self.closed.add(task_token)

    @staticmethod
    def execution_arn(state_machine_arn: str, name: str) -> str:
        state_machine = state_machine_arn.rsplit(":", 1)[-1]
        return f"arn:aws:states:{MEMORY_REGION}:{MEMORY_ACCOUNT}:execution:{state_machine}:{name}"

    # ---- the Workflows protocol -------------------------------------------------------------

    async def start(self, state_machine_arn: str, name: str, input: Any) -> str:
        value = _json_copy(input)
        arn = self.execution_arn(state_machine_arn, name)
        with self._lock:
            if arn in self.executions and _canonical(self.inputs.get(arn)) != _canonical(value):
                raise JobExistsError(f"execution {name} exists with another input")
            if arn not in self.executions:
                self.inputs[arn] = value
                self.executions[arn] = ExecutionInfo(
                    execution_arn=arn, status=ExecutionStatus.RUNNING, started_at=utcnow()
                )
            self.starts.append((state_machine_arn, name, _json_copy(value)))
            return arn

    async def describe(self, execution_arn: str) -> ExecutionInfo:
        with self._lock:
            return self._execution(execution_arn).model_copy(deep=True)

    async def stop(self, execution_arn: str, *, error: str, cause: str) -> None:
        with self._lock:
            info = self._execution(execution_arn)
            self.stops.append((execution_arn, error, cause))
            if info.status == ExecutionStatus.RUNNING:
                self.executions[execution_arn] = info.model_copy(
                    update={
                        "status": ExecutionStatus.ABORTED,
                        "error": error,
                        "cause": cause,
                        "stopped_at": utcnow(),
                    }
                )

    async def succeed(self, task_token: str, output: Any) -> None:
        value = _json_copy(output)
        with self._lock:
            self._check_open(task_token)
            self.answers[task_token] = ("success", value)

    async def fail(self, task_token: str, *, error: str, cause: str) -> None:
        with self._lock:
            self._check_open(task_token)
            self.answers[task_token] = ("failure", {"error": error, "cause": cause})

    async def heartbeat(self, task_token: str) -> None:
        with self._lock:
            self._check_open(task_token)
            self.heartbeats.append(task_token)

    # ---- helpers ----------------------------------------------------------------------------

    def _execution(self, execution_arn: str) -> ExecutionInfo:
        info = self.executions.get(execution_arn)
        if info is None:
            raise JobNotFoundError(f"no execution {execution_arn}")
        return info

    def _check_open(self, task_token: str) -> None:
        # Never the token itself in the message: it is a capability.
        if task_token in self.answers:
            raise TaskTokenClosedError("the task token was already answered")
        if task_token in self.closed:
            raise TaskTokenClosedError("the task token is closed")


def _canonical(value: Any) -> str:
    """One JSON text per JSON value (key order aside), telling ``1`` from ``1.0`` and ``true``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _json_copy(value: Any) -> Any:
    """``value`` as it comes back from JSON (a deep copy); ``WorkflowError`` if JSON cannot
    hold it."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise WorkflowError(f"value is not JSON: {exc}") from exc


__all__ = ["MemoryJobStore", "MemoryWorkflows", "attempt_order", "patch_fields"]
