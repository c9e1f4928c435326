"""Job use cases: start a pipeline, read a job, decide its approvals, cancel it.

A job is one Step Functions execution named after the job id, with input
``{"job_id", "tenant", "pipeline", "input"}``. Its status comes from the execution (read on
``get_job`` until it ends, then kept on the job item); its stages, runs, costs and causes from
the attempts the stages record (``shared/logic/stages.py``).
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from shared.errors import (
    ConfigError,
    ConflictError,
    JobExistsError,
    JobNotFoundError,
    JobStateConflictError,
    NotFoundError,
    RuntimeStateError,
    TaskTokenClosedError,
    WorkflowError,
)
from shared.jobs.base import ExecutionInfo, ExecutionStatus
from shared.logic.service import Services, approve_run, cancel_run
from shared.models.api import ApprovalBody, JobApprovalBody, JobCreate
from shared.models.job import (
    AttemptPatch,
    AttemptStatus,
    AttemptView,
    Job,
    JobDetail,
    JobError,
    JobStatus,
    PendingApproval,
    StageAttempt,
    StageKind,
    StageView,
    new_job_id,
)
from shared.models.run import RunStatus
from shared.observability import get_logger
from shared.pipelines.definition import (
    APPROVAL_REJECTED,
    AgentStage,
    ApprovalStage,
    FunctionStage,
    Pipeline,
    walk,
)
from shared.pipelines.paths import merge

CANCELLED_ERROR = "Cancelled"

logger = get_logger("switchyard-jobs")


def job_id_for(tenant: str, idempotency_key: str) -> str:
    """The job an idempotency key names: the same key starts (at most) one job."""
    digest = hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).digest()[:16]
    return "job_" + base64.b32encode(digest).decode().rstrip("=")


def execution_arn(state_machine_arn: str, job_id: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{job_id}"


def list_pipelines(svc: Services) -> list[dict[str, Any]]:
    return [
        {**p.describe(), "deployed": p.name in svc.settings.pipeline_arns} for p in svc.pipelines
    ]


async def start_job(
    svc: Services, tenant: str, body: JobCreate, *, idempotency_key: str | None = None
) -> tuple[Job, bool]:
    """Start a job; returns it and whether this call created it (False: an idempotent
    retry returned the job the key started before)."""
    pipeline = svc.pipelines.get(body.pipeline)
    machine = svc.settings.pipeline_arns.get(pipeline.name)
    if not machine:
        raise ConfigError(
            f"pipeline {pipeline.name!r} is not deployed in this stack",
            details={"deployed": sorted(svc.settings.pipeline_arns)},
        )
    job_id = job_id_for(tenant, idempotency_key) if idempotency_key else new_job_id()
    now = datetime.now(UTC)
    job = Job(
        job_id=job_id,
        tenant=tenant,
        pipeline=pipeline.name,
        input=body.input,
        execution_arn=execution_arn(machine, job_id),
        idempotency_key=idempotency_key,
        metadata=body.metadata,
        created_at=now,
        updated_at=now,
    )
    created = True
    try:
        await svc.jobs.create_job(job)
    except JobExistsError:
        existing = await svc.jobs.get_job(job_id)
        same = (existing.tenant, existing.pipeline, existing.input, existing.metadata) == (
            tenant,
            pipeline.name,
            body.input,
            body.metadata,
        )
        if not same:
            raise ConflictError(
                "Idempotency-Key was already used with a different request body",
                details={"job_id": job_id},
            ) from None
        job, created = existing, False
        if job.status.is_terminal:
            # Never (re)start the execution of a job recorded as ended: one whose start
            # failed would otherwise run while its job says failed.
            return job, False
    execution_input = {
        "job_id": job.job_id,
        "tenant": job.tenant,
        "pipeline": job.pipeline,
        "input": job.input,
    }
    try:
        # Idempotent: the same name and input return the execution started before.
        await svc.workflows.start(machine, job.job_id, execution_input)
    except (WorkflowError, JobExistsError) as exc:
        # The tenant sees the job's error: a plain message (the AWS text names the account
        # and the state machine); the detail goes to the log.
        logger.warning(
            "cannot start the job's execution",
            extra={"job_id": job.job_id, "error_type": type(exc).__name__, "error": str(exc)},
        )
        if created:
            await svc.jobs.finish_job(
                job.job_id,
                status=JobStatus.FAILED,
                error=JobError(code="StartFailed", message="the job's execution did not start"),
                at=datetime.now(UTC),
            )
        if isinstance(exc, JobExistsError):
            # The name is taken by an execution with another input (a key reused after the
            # job item expired, within Step Functions' 90 days of names).
            raise ConflictError(
                "Idempotency-Key was already used with a different request body",
                details={"job_id": job.job_id},
            ) from exc
        raise
    return job, created


async def _job(svc: Services, tenant: str, job_id: str) -> Job:
    try:
        job = await svc.jobs.get_job(job_id)
    except JobNotFoundError:
        raise NotFoundError(f"job {job_id} not found") from None
    if job.tenant != tenant:
        raise NotFoundError(f"job {job_id} not found")
    return job


async def get_job(svc: Services, tenant: str, job_id: str) -> JobDetail:
    return await _view(svc, await _job(svc, tenant, job_id))


async def _view(svc: Services, job: Job) -> JobDetail:
    """The job as the API shows it (its end recorded first, if the execution ended)."""
    attempts = await svc.jobs.attempts(job.job_id)
    if not job.status.is_terminal:
        job = await _reconcile(svc, job, attempts)
    return await _detail(svc, job, attempts)


async def _reconcile(svc: Services, job: Job, attempts: list[StageAttempt]) -> Job:
    """Keep the execution's end on the job item (with the failing stage's recorded cause
    where Step Functions has none)."""
    try:
        info = await svc.workflows.describe(job.execution_arn)
    except JobNotFoundError:
        return job  # not started yet (a start racing this read), or never will be
    if info.status is ExecutionStatus.RUNNING:
        return job
    status, error = _ending(info, attempts)
    return await svc.jobs.finish_job(
        job.job_id, status=status, output=info.output, error=error, at=info.stopped_at or _now()
    )


def _ending(info: ExecutionInfo, attempts: list[StageAttempt]) -> tuple[JobStatus, JobError | None]:
    if info.status is ExecutionStatus.SUCCEEDED:
        return JobStatus.SUCCEEDED, None
    if info.status is ExecutionStatus.ABORTED:
        return JobStatus.CANCELLED, JobError(code=CANCELLED_ERROR, message=info.cause or "")
    code = info.error or (
        "States.Timeout" if info.status is ExecutionStatus.TIMED_OUT else "States.Runtime"
    )
    failed = [a for a in attempts if a.status is AttemptStatus.FAILED and a.error is not None]
    matching = [a for a in failed if a.error is not None and a.error.code == code] or failed
    culprit = matching[-1] if matching else None
    message = info.cause or (culprit.error.message if culprit and culprit.error else "")
    if not culprit:
        # A timeout leaves no failed attempt: the stage still waiting is the one that expired.
        waiting = [a for a in attempts if not a.status.is_terminal]
        culprit = waiting[-1] if waiting else None
    return JobStatus.FAILED, JobError(
        code=code, message=message, stage=culprit.stage if culprit else None
    )


async def _detail(svc: Services, job: Job, attempts: list[StageAttempt]) -> JobDetail:
    by_stage: dict[str, list[StageAttempt]] = defaultdict(list)
    for attempt in attempts:
        by_stage[attempt.stage].append(attempt)
    pipeline: Pipeline | None = (
        svc.pipelines.get(job.pipeline) if job.pipeline in svc.pipelines else None
    )
    stages: list[StageView] = []
    names = (
        [
            s.name
            for s in walk(pipeline.stages)
            if isinstance(s, AgentStage | FunctionStage | ApprovalStage)
        ]
        if pipeline
        else list(by_stage)
    )
    for name in names:
        stages.append(_stage_view(name, by_stage.get(name, []), job, pipeline))
    pending: list[PendingApproval] = []
    if not job.status.is_terminal:
        pending = await _pending(svc, attempts)
    status = job.status
    if status is JobStatus.RUNNING and pending:
        status = JobStatus.AWAITING_APPROVAL
    return JobDetail(
        job_id=job.job_id,
        tenant=job.tenant,
        pipeline=job.pipeline,
        status=status,
        input=job.input,
        output=job.output,
        error=job.error,
        metadata=job.metadata,
        cost_usd=round(sum(a.cost_usd for a in attempts), 10),
        stages=stages,
        pending_approvals=pending,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
    )


def _kind(name: str, attempts: list[StageAttempt], pipeline: Pipeline | None) -> StageKind:
    if attempts:
        return attempts[0].kind
    stage = pipeline.stage(name) if pipeline else None
    if isinstance(stage, AgentStage):
        return StageKind.AGENT
    if isinstance(stage, ApprovalStage):
        return StageKind.APPROVAL
    return StageKind.FUNCTION


def _stage_view(
    name: str, attempts: list[StageAttempt], job: Job, pipeline: Pipeline | None
) -> StageView:
    statuses = {a.status for a in attempts}
    ended = job.status.is_terminal
    if not attempts:
        status = "pending"
    elif AttemptStatus.RUNNING in statuses and not ended:
        status = "running"
    elif AttemptStatus.AWAITING_APPROVAL in statuses and not ended:
        status = "awaiting_approval"
    elif job.error is not None and job.error.stage == name:
        status = "failed"
    elif AttemptStatus.SUCCEEDED in statuses:
        status = "succeeded"
    else:
        status = "failed"
    succeeded = [a for a in attempts if a.status is AttemptStatus.SUCCEEDED]
    output: Any = None
    if len(succeeded) == 1:
        output = succeeded[0].output
    elif succeeded:
        output = [a.output for a in succeeded]
    failed = [a for a in attempts if a.status is AttemptStatus.FAILED]
    return StageView(
        name=name,
        kind=_kind(name, attempts, pipeline),
        status=status,
        runs=[a.run_id for a in attempts if a.run_id],
        output=output,
        error=failed[-1].error if failed and status == "failed" else None,
        cost_usd=round(sum(a.cost_usd for a in attempts), 10),
        attempts=[AttemptView.of(a) for a in attempts],
    )


async def _pending(svc: Services, attempts: list[StageAttempt]) -> list[PendingApproval]:
    pending: list[PendingApproval] = []
    for attempt in attempts:
        if attempt.status is not AttemptStatus.AWAITING_APPROVAL:
            continue
        if attempt.kind is StageKind.APPROVAL:
            pending.append(
                PendingApproval(
                    stage=attempt.stage,
                    kind="gate",
                    prompt=attempt.prompt,
                    data=attempt.data,
                    requested_at=attempt.started_at,
                )
            )
        elif attempt.run_id:
            run = await svc.journal.get_run(attempt.run_id)
            if run.status is not RunStatus.AWAITING_APPROVAL or not run.pending_approval:
                continue
            requested = run.pending_approval.get("requested_at")
            pending.append(
                PendingApproval(
                    stage=attempt.stage,
                    kind="run",
                    run_id=run.run_id,
                    calls=list(run.pending_approval.get("calls", [])),
                    requested_at=datetime.fromisoformat(requested) if requested else None,
                )
            )
    return pending


async def decide_job_approval(
    svc: Services, tenant: str, job_id: str, body: JobApprovalBody
) -> JobDetail:
    """Decide what the job waits on: a gate (its token answered) or a stage's paused run."""
    job = await _job(svc, tenant, job_id)
    detail = await _view(svc, job)
    if detail.status.is_terminal:
        raise RuntimeStateError(
            f"job {job_id} already {detail.status.value}", details={"status": detail.status.value}
        )
    waiting = [p for p in detail.pending_approvals if body.stage in (None, p.stage)]
    if not waiting:
        raise RuntimeStateError(
            f"job {job_id} has no pending approval"
            + (f" at stage {body.stage!r}" if body.stage else ""),
            details={"status": detail.status.value},
        )
    if len(waiting) > 1:
        raise RuntimeStateError(
            "more than one approval is pending: name the one to decide with 'stage'",
            details={
                "pending": [p.model_dump(include={"stage", "kind", "run_id"}) for p in waiting]
            },
        )
    item = waiting[0]
    if item.kind == "run" and item.run_id:
        await approve_run(
            svc,
            tenant,
            item.run_id,
            ApprovalBody(decision=body.decision, comment=body.comment),
        )
    else:
        await _decide_gate(svc, job, item.stage, body)
    return await get_job(svc, tenant, job_id)


async def _decide_gate(svc: Services, job: Job, stage_name: str, body: JobApprovalBody) -> None:
    attempts = await svc.jobs.attempts(job.job_id)
    gate = next(
        a
        for a in attempts
        if a.stage == stage_name
        and a.kind is StageKind.APPROVAL
        and a.status is AttemptStatus.AWAITING_APPROVAL
    )
    assert gate.task_token is not None
    stage = svc.pipelines.get(job.pipeline).stage(stage_name)
    decision = {
        "decision": body.decision,
        "comment": body.comment,
        "decided_at": _now().isoformat(),
    }
    approved = body.decision == "approve"
    patch = AttemptPatch(
        status=AttemptStatus.SUCCEEDED if approved else AttemptStatus.FAILED,
        decision=decision,
        finished_at=_now(),
        error=None
        if approved
        else JobError(code=APPROVAL_REJECTED, message=body.comment or "rejected", stage=stage_name),
    )
    try:
        # Conditional: of two reviewers deciding at once, one wins; the other gets 409.
        await svc.jobs.update_attempt(
            job.job_id,
            stage_name,
            gate.attempt_id,
            patch,
            expected_status=AttemptStatus.AWAITING_APPROVAL,
        )
    except JobStateConflictError:
        raise RuntimeStateError(f"the approval at {stage_name!r} was already decided") from None
    try:
        if approved:
            result_path = stage.result_path if isinstance(stage, ApprovalStage) else ""
            data = merge(gate.data, result_path, decision) if result_path else gate.data
            await svc.workflows.succeed(gate.task_token, data)
        else:
            await svc.workflows.fail(
                gate.task_token, error=APPROVAL_REJECTED, cause=body.comment or "rejected"
            )
    except TaskTokenClosedError:
        raise RuntimeStateError(
            f"the approval at {stage_name!r} expired (its timeout passed or the job ended)"
        ) from None
    except WorkflowError:
        # Step Functions did not take the answer: the gate waits again, decide it again.
        await svc.jobs.update_attempt(
            job.job_id,
            stage_name,
            gate.attempt_id,
            AttemptPatch(status=AttemptStatus.AWAITING_APPROVAL),
        )
        raise


async def cancel_job(svc: Services, tenant: str, job_id: str) -> JobDetail:
    """Stop the execution; stage runs still executing see their tokens closed at the next
    heartbeat and are cancelled by their workers."""
    job = await _job(svc, tenant, job_id)
    detail = await _view(svc, job)
    if detail.status.is_terminal:
        raise RuntimeStateError(
            f"job {job_id} already {detail.status.value}", details={"status": detail.status.value}
        )
    await svc.workflows.stop(
        job.execution_arn, error=CANCELLED_ERROR, cause="cancelled through the API"
    )
    await svc.jobs.finish_job(
        job_id,
        status=JobStatus.CANCELLED,
        error=JobError(code=CANCELLED_ERROR, message="cancelled through the API"),
        at=_now(),
    )
    for attempt in await svc.jobs.attempts(job_id):
        if attempt.run_id and not attempt.status.is_terminal:
            run = await svc.journal.get_run(attempt.run_id)
            if not run.status.is_terminal:
                await cancel_run(svc, tenant, attempt.run_id)
    return await get_job(svc, tenant, job_id)


def _now() -> datetime:
    return datetime.now(UTC)
