"""Pipeline stages as the worker and the pipeline function execute them.

Agent stages (the worker):

1. ``begin_stage_run``: the first delivery of a dispatch message creates the attempt (with the
   task token and the stage's data), then the run, whose id derives from the token, so a
   redelivered message finds both.
2. The run executes like any other; the worker heartbeats the token while it does.
3. ``report_stage``: a run that finished answers the attempt's current token with the data
   after the stage (or fails it, with the run's error as the cause, recorded on the attempt
   first: moto's interpreter drops SendTaskFailure's cause). A run that paused for approval
   answers ``paused``: the state machine then waits on a new token with no heartbeat, and
   ``attach_resume_token`` stores that token on the attempt. Whoever finishes the run later
   answers it.

Function stages and approval gates (the pipeline function): ``run_function_stage`` and
``open_gate``.

Answering a token twice is harmless (the second answer is refused as closed), so every path
here may be retried after a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from shared.errors import (
    PipelineError,
    RunExistsError,
    RunNotFoundError,
    TaskTokenClosedError,
)
from shared.ids import ulid
from shared.logic.runs import SubmitRun, submit_run
from shared.logic.service import Services
from shared.models.job import (
    AttemptPatch,
    AttemptStatus,
    FunctionCall,
    JobError,
    StageAttempt,
    StageKind,
    done,
    paused,
)
from shared.models.run import JobLink, Run, RunStatus
from shared.observability import get_logger
from shared.pipelines.definition import (
    RUN_CANCELLED,
    RUN_FAILED,
    STAGE_FAILED,
    AgentStage,
    ApprovalStage,
    FunctionStage,
    StageContext,
)
from shared.pipelines.paths import merge, select
from shared.queue.base import RunMessage

logger = get_logger("switchyard-pipelines")
S = TypeVar("S", AgentStage, FunctionStage, ApprovalStage)

MAX_CAUSE_CHARS = 4000


class StageFailed(Exception):
    """A function stage raised: the Lambda fails with this type, Step Functions sees
    ``StageFailed`` (what Retry and Catch match)."""


# ---- agent stages (the worker) ---------------------------------------------------------------


async def begin_stage_run(svc: Services, message: RunMessage) -> Run | None:
    """Create the attempt and the run of an agent stage's dispatch (idempotent). None: the
    stage could not start (its failure was answered)."""
    dispatch = message.stage
    token = message.task_token
    if dispatch is None or token is None:
        raise PipelineError("not a stage dispatch")
    try:
        stage = _stage(svc, dispatch.pipeline, dispatch.stage, AgentStage)
    except PipelineError as exc:
        # This deployment does not know the stage (a definition changed under a running
        # job): fail it now rather than let the message wander to the DLQ.
        await _close(svc, token, str(exc))
        return None
    attempt = StageAttempt(
        job_id=dispatch.job_id,
        stage=dispatch.stage,
        attempt_id=message.run_id,
        kind=StageKind.AGENT,
        run_id=message.run_id,
        task_token=token,
        data=dispatch.data,
        input_path=stage.input_path,
        result_path=stage.result_path,
    )
    await svc.jobs.put_attempt(attempt)
    try:
        run_input = select(dispatch.data, stage.input_path)
    except PipelineError as exc:
        await _fail_attempt(svc, attempt, token, JobError(code=STAGE_FAILED, message=str(exc)))
        return None
    request = SubmitRun(
        agent=stage.agent,
        input=run_input,
        tenant=dispatch.tenant,
        metadata={"job_id": dispatch.job_id, "stage": dispatch.stage},
        job=JobLink(job_id=dispatch.job_id, stage=dispatch.stage),
    )
    try:
        return await submit_run(svc.journal, svc.registry, request, run_id=message.run_id)
    except RunExistsError:
        return await svc.journal.get_run(message.run_id)


async def report_stage(svc: Services, run: Run) -> None:
    """Answer the stage's current token for a run that finished or paused (no-op for runs
    outside pipelines and for runs still executing)."""
    if run.job is None:
        return
    attempt = await svc.jobs.get_attempt(run.job.job_id, run.job.stage, run.run_id)
    if attempt is None or attempt.task_token is None:
        logger.warning(
            "stage run has no attempt to answer",
            extra={"run_id": run.run_id, "job_id": run.job.job_id, "stage": run.job.stage},
        )
        return
    token = attempt.task_token
    if run.status is RunStatus.AWAITING_APPROVAL:
        if attempt.status is AttemptStatus.AWAITING_APPROVAL:
            return  # this pause was answered already; its wait token is (or will be) attached
        await _answer(svc, attempt, lambda: svc.workflows.succeed(token, paused(run.run_id)))
        await _patch(svc, attempt, status=AttemptStatus.AWAITING_APPROVAL, cost_usd=run.cost_usd)
        return
    if run.status is RunStatus.SUCCEEDED:
        try:
            after = merge(attempt.data, attempt.result_path, run.output)
        except PipelineError as exc:
            await _fail_attempt(svc, attempt, token, JobError(code=STAGE_FAILED, message=str(exc)))
            return
        await _patch(
            svc,
            attempt,
            status=AttemptStatus.SUCCEEDED,
            output=run.output,
            cost_usd=run.cost_usd,
            finished_at=run.finished_at or datetime.now(UTC),
        )
        await _answer(svc, attempt, lambda: svc.workflows.succeed(token, done(after)))
        return
    if run.status.is_terminal:
        code = RUN_CANCELLED if run.status is RunStatus.CANCELLED else RUN_FAILED
        reason = f"{run.error.code}: {run.error.message}" if run.error else run.status.value
        error = JobError(code=code, message=f"run {run.run_id} {run.status.value}: {reason}")
        await _fail_attempt(svc, attempt, token, error, cost_usd=run.cost_usd)


async def attach_resume_token(svc: Services, message: RunMessage) -> None:
    """The state machine waits for a paused stage run on a new token: keep it on the
    attempt, and answer it now if the run already finished meanwhile."""
    assert message.task_token is not None
    try:
        run = await svc.journal.get_run(message.run_id)
    except RunNotFoundError:
        await _close(svc, message.task_token, "the stage's run does not exist")
        return
    if run.job is None:
        await _close(svc, message.task_token, "the run is not a pipeline stage")
        return
    await svc.jobs.update_attempt(
        run.job.job_id, run.job.stage, run.run_id, AttemptPatch(task_token=message.task_token)
    )
    run = await svc.journal.get_run(message.run_id)
    if run.status.is_terminal:
        await report_stage(svc, run)


async def heartbeat_stage(svc: Services, task_token: str) -> bool:
    """Keep a running stage's token alive; False once it is closed (the job moved on)."""
    try:
        await svc.workflows.heartbeat(task_token)
    except TaskTokenClosedError:
        return False
    return True


# ---- function stages and gates (the pipeline function) ---------------------------------------


def function_attempt_id() -> str:
    return f"fn_{ulid()}"


def gate_attempt_id(task_token: str) -> str:
    return "gate_" + hashlib.sha256(task_token.encode()).hexdigest()[:24]


async def run_function_stage(
    svc: Services, call: FunctionCall, context: Callable[[str], StageContext]
) -> Any:
    """Call the stage's function on its input; returns the data after the stage. A raise
    is recorded on the attempt, then re-raised as ``StageFailed`` with the cause."""
    stage = _stage(svc, call.pipeline, call.stage, FunctionStage)
    attempt = StageAttempt(
        job_id=call.job_id,
        stage=call.stage,
        attempt_id=function_attempt_id(),
        kind=StageKind.FUNCTION,
        data=call.data,
        input_path=stage.input_path,
        result_path=stage.result_path,
    )
    await svc.jobs.put_attempt(attempt)
    try:
        result = stage.fn(select(call.data, stage.input_path), context(attempt.attempt_id))
        after = merge(call.data, stage.result_path, result)
    except Exception as exc:
        cause = _cause(exc)
        await _patch(
            svc,
            attempt,
            status=AttemptStatus.FAILED,
            error=JobError(code=STAGE_FAILED, message=cause, stage=call.stage),
            finished_at=datetime.now(UTC),
        )
        raise StageFailed(cause) from exc
    await _patch(
        svc,
        attempt,
        status=AttemptStatus.SUCCEEDED,
        output=result,
        finished_at=datetime.now(UTC),
    )
    return after


async def open_gate(svc: Services, call: FunctionCall) -> None:
    """Record an approval gate's token and question; the job waits with no compute."""
    stage = _stage(svc, call.pipeline, call.stage, ApprovalStage)
    assert call.task_token is not None
    await svc.jobs.put_attempt(
        StageAttempt(
            job_id=call.job_id,
            stage=call.stage,
            attempt_id=gate_attempt_id(call.task_token),
            kind=StageKind.APPROVAL,
            status=AttemptStatus.AWAITING_APPROVAL,
            prompt=stage.prompt,
            task_token=call.task_token,
            data=call.data,
            result_path=stage.result_path or "$",
        )
    )


# ---- helpers --------------------------------------------------------------------------------


def _stage(svc: Services, pipeline: str, name: str, kind: type[S]) -> S:
    stage = svc.pipelines.get(pipeline).stage(name)
    if not isinstance(stage, kind):
        raise PipelineError(f"stage {name!r} of pipeline {pipeline!r} is not a {kind.__name__}")
    return stage


def _cause(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].name}, line {last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:MAX_CAUSE_CHARS]


async def _patch(svc: Services, attempt: StageAttempt, **fields: Any) -> None:
    await svc.jobs.update_attempt(
        attempt.job_id, attempt.stage, attempt.attempt_id, AttemptPatch(**fields)
    )


async def _fail_attempt(
    svc: Services, attempt: StageAttempt, token: str, error: JobError, *, cost_usd: float = 0.0
) -> None:
    error = error.model_copy(update={"stage": attempt.stage})
    await _patch(
        svc,
        attempt,
        status=AttemptStatus.FAILED,
        error=error,
        cost_usd=cost_usd,
        finished_at=datetime.now(UTC),
    )
    await _answer(
        svc,
        attempt,
        lambda: svc.workflows.fail(token, error=error.code, cause=error.message[:MAX_CAUSE_CHARS]),
    )


async def _answer(svc: Services, attempt: StageAttempt, call: Callable[[], Any]) -> None:
    try:
        await call()
    except TaskTokenClosedError:
        logger.info(
            "stage token already closed (answered, timed out, or the job ended)",
            extra={"job_id": attempt.job_id, "stage": attempt.stage},
        )


async def _close(svc: Services, token: str, why: str) -> None:
    with contextlib.suppress(TaskTokenClosedError):
        await svc.workflows.fail(token, error=STAGE_FAILED, cause=why)


__all__ = [
    "StageFailed",
    "attach_resume_token",
    "begin_stage_run",
    "heartbeat_stage",
    "open_gate",
    "report_stage",
    "run_function_stage",
]
