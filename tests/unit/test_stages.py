"""Pipeline stages as the worker and the pipeline function execute them
(``shared/logic/stages.py``), on the memory backend with the offline model.

``MemoryWorkflows`` stands in for Step Functions: it records what each task token was
answered with (``answers[token]``), the heartbeats, and refuses a token answered already or
closed with ``close_token``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from agents.documents import DocumentError
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.errors import PipelineError, ProviderError, RunNotFoundError
from shared.jobs.memory import MemoryJobStore, MemoryWorkflows
from shared.logic.runs import request_cancel
from shared.logic.service import Services, approve_run, execute_run
from shared.logic.stages import (
    StageFailed,
    attach_resume_token,
    begin_stage_run,
    gate_attempt_id,
    heartbeat_stage,
    open_gate,
    report_stage,
    run_function_stage,
)
from shared.models.api import ApprovalBody
from shared.models.job import (
    AgentDispatch,
    AttemptPatch,
    AttemptStatus,
    FunctionCall,
    StageAttempt,
    StageKind,
)
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Run, RunStatus
from shared.pipelines import (
    RUN_CANCELLED,
    RUN_FAILED,
    STAGE_FAILED,
    AgentStage,
    FunctionStage,
    Pipeline,
    StageContext,
)
from shared.queue.base import RunMessage, stage_run_id
from shared.wiring import build_services

TENANT = "acme"
JOB = "job_01TEST"
SECTION = {"heading": "Revenue", "text": "Revenue rose 12% in Q3, led by the EU."}
INCIDENT = {"service": "checkout", "reason": "p99 latency above 2 s"}


def boom(data: Any, ctx: StageContext) -> Any:
    raise ValueError(f"cannot handle {data['n']}")


# Stages the example pipelines do not have: an agent stage that reads part of the data, and a
# function stage that raises.
custom = Pipeline(
    name="custom",
    stages=(
        AgentStage(
            name="focused",
            agent="section-summarizer",
            input_path="$.section",
            result_path="$.summary",
        ),
        AgentStage(name="missing", agent="section-summarizer", input_path="$.nowhere"),
        FunctionStage(name="explode", fn=boom, result_path="$.out"),
    ),
)


class RefusingProvider:
    """A model that refuses every call (a non-retryable provider error fails the run)."""

    async def complete(self, request: ModelRequest) -> ModelResponse:
        raise ProviderError("the model refused: bad request", status=400)


@dataclass(frozen=True)
class Ctx:
    """A ``StageContext`` with no objects."""

    job_id: str
    tenant: str
    pipeline: str
    stage: str
    attempt_id: str

    @property
    def idempotency_key(self) -> str:
        return f"{self.job_id}:{self.stage}"

    def read_object(self, bucket: str, key: str) -> bytes:
        raise AssertionError("no objects here")

    def write_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        raise AssertionError("no objects here")


@pytest.fixture
def svc() -> Services:
    services = build_services(Settings(), backend="memory", registry=AgentRegistry.from_modules([]))
    services.pipelines.add(custom)
    return services


def workflows(svc: Services) -> MemoryWorkflows:
    assert isinstance(svc.workflows, MemoryWorkflows)
    return svc.workflows


def job_store(svc: Services) -> MemoryJobStore:
    assert isinstance(svc.jobs, MemoryJobStore)
    return svc.jobs


def dispatch(
    token: str,
    *,
    pipeline: str = "document-review",
    stage: str = "summarize-section",
    data: Any = None,
) -> RunMessage:
    """The SQS message an agent stage's task state sends (its run id derives from the token)."""
    body = AgentDispatch(
        job_id=JOB,
        tenant=TENANT,
        pipeline=pipeline,
        stage=stage,
        data=SECTION if data is None else data,
        heartbeat_s=60,
    )
    return RunMessage.model_validate({"task_token": token, "stage": body.model_dump()})


def remediate(token: str, data: Any = None) -> RunMessage:
    return dispatch(
        token,
        pipeline="incident-response",
        stage="remediate",
        data=INCIDENT if data is None else data,
    )


async def started(svc: Services, message: RunMessage) -> Run:
    run = await begin_stage_run(svc, message)
    assert run is not None
    return run


async def attempt_of(svc: Services, run: Run) -> StageAttempt:
    assert run.job is not None
    attempt = await svc.jobs.get_attempt(run.job.job_id, run.job.stage, run.run_id)
    assert attempt is not None
    return attempt


def function_call(stage: str, data: Any, *, pipeline: str = "incident-response") -> FunctionCall:
    return FunctionCall(job_id=JOB, tenant=TENANT, pipeline=pipeline, stage=stage, data=data)


def context_for(call: FunctionCall) -> Any:
    def context(attempt_id: str) -> Ctx:
        return Ctx(call.job_id, call.tenant, call.pipeline, call.stage, attempt_id)

    return context


# ---- begin_stage_run -------------------------------------------------------------------------


async def test_begin_creates_the_attempt_then_the_run_linked_to_the_job(svc: Services) -> None:
    data = {"section": SECTION, "title": "Q3"}
    message = dispatch("tok-1", pipeline="custom", stage="focused", data=data)
    assert message.run_id == stage_run_id("tok-1")

    run = await started(svc, message)

    assert run.run_id == message.run_id
    assert run.status is RunStatus.QUEUED
    assert run.agent == "section-summarizer"
    assert run.tenant == TENANT
    assert run.input == SECTION  # the stage's input_path, not the whole data
    assert run.job is not None
    assert (run.job.job_id, run.job.stage) == (JOB, "focused")
    assert run.metadata == {"job_id": JOB, "stage": "focused"}
    assert await svc.journal.get_run(run.run_id) == run

    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.attempt_id == attempt.run_id == run.run_id
    assert attempt.stage == "focused"
    assert attempt.kind is StageKind.AGENT
    assert attempt.status is AttemptStatus.RUNNING
    assert attempt.task_token == "tok-1"
    assert attempt.data == data
    assert (attempt.input_path, attempt.result_path) == ("$.section", "$.summary")
    assert workflows(svc).answers == {}


async def test_a_redelivered_dispatch_finds_the_same_run_and_attempt(svc: Services) -> None:
    message = dispatch("tok-1")
    first = await started(svc, message)
    writes = job_store(svc).writes

    again = await started(svc, message)

    assert again == first
    assert len(await svc.jobs.attempts(JOB)) == 1
    assert job_store(svc).writes == writes  # the attempt was not written again
    assert [r.run_id for r in (await svc.journal.list_runs(TENANT)).runs] == [first.run_id]


async def test_an_input_path_with_nothing_there_fails_the_token(svc: Services) -> None:
    message = dispatch("tok-1", pipeline="custom", stage="missing", data={"other": 1})

    assert await begin_stage_run(svc, message) is None

    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == STAGE_FAILED
    assert "nothing at $.nowhere" in answer["cause"]
    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.finished_at is not None
    assert attempt.error is not None
    assert attempt.error.code == STAGE_FAILED
    assert attempt.error.message == answer["cause"]
    assert attempt.error.stage == "missing"
    with pytest.raises(RunNotFoundError):
        await svc.journal.get_run(message.run_id)  # no run was created


async def test_begin_refuses_what_is_not_an_agent_stage_dispatch(svc: Services) -> None:
    with pytest.raises(PipelineError, match="not a stage dispatch"):
        await begin_stage_run(svc, RunMessage(run_id="run_x"))
    # A stage this deployment does not run as an agent stage: its token fails at once.
    body = dispatch("tok-1", pipeline="incident-response", stage="file-note")
    assert await begin_stage_run(svc, body) is None
    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == "StageFailed"
    assert "is not a AgentStage" in answer["cause"]


# ---- report_stage ----------------------------------------------------------------------------


async def test_a_succeeded_run_answers_done_with_the_output_replacing_the_data(
    svc: Services,
) -> None:
    run = await started(svc, dispatch("tok-1"))  # summarize-section: result_path "$"

    finished = await execute_run(svc, run.run_id)  # reports the stage itself

    assert finished.status is RunStatus.SUCCEEDED
    assert isinstance(finished.output, str)
    assert workflows(svc).answers["tok-1"] == ("success", {"done": finished.output})
    attempt = await attempt_of(svc, finished)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == finished.output
    assert attempt.cost_usd == finished.cost_usd > 0
    assert attempt.finished_at == finished.finished_at
    assert attempt.error is None


async def test_a_result_path_merges_the_output_into_the_data(svc: Services) -> None:
    data = {"section": SECTION, "title": "Q3"}
    run = await started(svc, dispatch("tok-1", pipeline="custom", stage="focused", data=data))

    finished = await execute_run(svc, run.run_id)

    assert finished.status is RunStatus.SUCCEEDED
    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "success"
    assert answer == {"done": {**data, "summary": finished.output}}
    assert (await attempt_of(svc, finished)).data == data  # the stored data is unchanged


async def test_a_result_path_puts_the_output_under_its_key_once(
    svc: Services,
) -> None:
    # The `remediate` stage of incident-response: result_path "$.remediation". Its run pauses
    # on restart_service, so build the finished run directly to test the merge alone.
    run = await started(svc, remediate("tok-1"))
    done_run = run.model_copy(
        update={"status": RunStatus.SUCCEEDED, "output": "restarted checkout"}
    )

    await report_stage(svc, done_run)
    await report_stage(svc, done_run)  # a redelivery: the token is closed, nothing raises

    assert workflows(svc).answers["tok-1"] == (
        "success",
        {"done": {**INCIDENT, "remediation": "restarted checkout"}},
    )
    attempt = await attempt_of(svc, run)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == "restarted checkout"


async def test_a_result_that_cannot_be_placed_fails_the_stage(svc: Services) -> None:
    run = await started(svc, remediate("tok-1", data=["not", "an", "object"]))
    done_run = run.model_copy(update={"status": RunStatus.SUCCEEDED, "output": "ok"})

    await report_stage(svc, done_run)

    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == STAGE_FAILED
    assert "$.remediation" in answer["cause"]
    attempt = await attempt_of(svc, run)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error is not None
    assert attempt.error.stage == "remediate"


async def test_a_failed_run_fails_the_token_with_its_error_as_the_cause(svc: Services) -> None:
    svc.make_provider = RefusingProvider
    run = await started(svc, dispatch("tok-1"))

    failed = await execute_run(svc, run.run_id)

    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "provider_error"
    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == RUN_FAILED
    assert answer["cause"] == (f"run {run.run_id} failed: provider_error: {failed.error.message}")
    assert "the model refused" in answer["cause"]
    attempt = await attempt_of(svc, failed)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.finished_at is not None
    assert attempt.error is not None
    assert attempt.error.code == RUN_FAILED
    assert attempt.error.message == answer["cause"]
    assert attempt.error.stage == "summarize-section"


async def test_a_cancelled_run_fails_the_token_with_run_cancelled(svc: Services) -> None:
    run = await started(svc, dispatch("tok-1"))
    await request_cancel(svc.journal, run.run_id)

    cancelled = await execute_run(svc, run.run_id)

    assert cancelled.status is RunStatus.CANCELLED
    kind, answer = workflows(svc).answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == RUN_CANCELLED
    assert answer["cause"].startswith(f"run {run.run_id} cancelled: cancelled: ")
    attempt = await attempt_of(svc, cancelled)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error is not None
    assert attempt.error.code == RUN_CANCELLED
    assert attempt.error.stage == "summarize-section"


async def test_a_paused_run_answers_paused_once(svc: Services) -> None:
    run = await started(svc, remediate("tok-1"))

    paused = await execute_run(svc, run.run_id)

    assert paused.status is RunStatus.AWAITING_APPROVAL
    assert paused.pending_approval is not None
    assert paused.pending_approval["calls"][0]["name"] == "restart_service"
    assert workflows(svc).answers == {"tok-1": ("success", {"paused": {"run_id": run.run_id}})}
    attempt = await attempt_of(svc, paused)
    assert attempt.status is AttemptStatus.AWAITING_APPROVAL
    assert attempt.cost_usd == paused.cost_usd > 0
    assert attempt.finished_at is None

    # Reported again while still paused (a redelivered message): nothing new is sent, even
    # once the wait token is attached (it waits for the run to finish, not to pause).
    writes = job_store(svc).writes
    await report_stage(svc, paused)
    await svc.jobs.update_attempt(JOB, "remediate", run.run_id, AttemptPatch(task_token="tok-2"))
    await report_stage(svc, paused)
    assert set(workflows(svc).answers) == {"tok-1"}
    assert job_store(svc).writes == writes + 1  # only the token attached here


async def test_a_closed_token_does_not_raise(svc: Services) -> None:
    run = await started(svc, dispatch("tok-1"))
    workflows(svc).close_token("tok-1")  # the job timed out, or was stopped

    finished = await execute_run(svc, run.run_id)

    assert finished.status is RunStatus.SUCCEEDED
    assert workflows(svc).answers == {}
    assert (await attempt_of(svc, finished)).status is AttemptStatus.SUCCEEDED


async def test_report_ignores_runs_outside_pipelines_and_runs_without_attempts(
    svc: Services,
) -> None:
    run = await started(svc, dispatch("tok-1"))
    await report_stage(svc, run.model_copy(update={"job": None, "status": RunStatus.SUCCEEDED}))
    orphan = run.model_copy(
        update={"run_id": "run_orphan", "status": RunStatus.SUCCEEDED, "output": "x"}
    )
    await report_stage(svc, orphan)
    await report_stage(svc, run)  # still queued: nothing to say yet
    assert workflows(svc).answers == {}


# ---- attach_resume_token ---------------------------------------------------------------------


async def test_attach_stores_the_new_token_on_a_paused_runs_attempt(svc: Services) -> None:
    run = await started(svc, remediate("tok-1"))
    await execute_run(svc, run.run_id)

    await attach_resume_token(svc, RunMessage(run_id=run.run_id, task_token="tok-2", resume=True))

    attempt = await attempt_of(svc, run)
    assert attempt.task_token == "tok-2"
    assert attempt.status is AttemptStatus.AWAITING_APPROVAL
    assert set(workflows(svc).answers) == {"tok-1"}  # nothing to answer yet


async def test_attach_to_a_run_that_already_finished_answers_at_once(svc: Services) -> None:
    run = await started(svc, dispatch("tok-1"))
    finished = await execute_run(svc, run.run_id)

    await attach_resume_token(svc, RunMessage(run_id=run.run_id, task_token="tok-2", resume=True))

    assert workflows(svc).answers["tok-2"] == ("success", {"done": finished.output})
    assert (await attempt_of(svc, run)).task_token == "tok-2"


async def test_attach_for_an_unknown_run_fails_the_token(svc: Services) -> None:
    await attach_resume_token(svc, RunMessage(run_id="run_gone", task_token="tok-2", resume=True))

    kind, answer = workflows(svc).answers["tok-2"]
    assert kind == "failure"
    assert answer == {"error": STAGE_FAILED, "cause": "the stage's run does not exist"}


# ---- heartbeat_stage -------------------------------------------------------------------------


async def test_heartbeat_is_false_once_the_token_is_closed(svc: Services) -> None:
    assert await heartbeat_stage(svc, "tok-1") is True
    workflows(svc).close_token("tok-1")
    assert await heartbeat_stage(svc, "tok-1") is False
    assert workflows(svc).heartbeats == ["tok-1"]


# ---- function stages and gates -------------------------------------------------------------


async def test_a_function_stage_returns_the_merged_data_and_records_its_output(
    svc: Services,
) -> None:
    data = {**INCIDENT, "remediation": "restarted checkout"}
    call = function_call("file-note", data)

    after = await run_function_stage(svc, call, context_for(call))

    note = {"job_id": JOB, "service": "checkout", "summary": "restarted checkout"}
    assert after == {**data, "note": note}
    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.attempt_id.startswith("fn_")
    assert attempt.kind is StageKind.FUNCTION
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == note
    assert attempt.data == data
    assert attempt.result_path == "$.note"
    assert attempt.finished_at is not None
    assert attempt.run_id is None
    assert attempt.task_token is None


async def test_a_raising_function_fails_with_stage_failed_and_its_cause(svc: Services) -> None:
    call = function_call("explode", {"n": 7}, pipeline="custom")

    with pytest.raises(StageFailed) as raised:
        await run_function_stage(svc, call, context_for(call))

    cause = str(raised.value)
    assert cause.startswith("ValueError: cannot handle 7 (at boom, line ")
    assert isinstance(raised.value.__cause__, ValueError)
    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error is not None
    assert attempt.error.code == STAGE_FAILED
    assert attempt.error.message == cause
    assert attempt.error.stage == "explode"
    assert attempt.finished_at is not None
    assert attempt.output is None


async def test_a_function_stage_error_of_the_example_pipeline_keeps_its_type(
    svc: Services,
) -> None:
    call = function_call("extract", {"bucket": "docs"}, pipeline="document-review")

    with pytest.raises(StageFailed, match=r"^DocumentError: the job input needs") as raised:
        await run_function_stage(svc, call, context_for(call))

    assert isinstance(raised.value.__cause__, DocumentError)


async def test_a_path_error_of_a_function_stage_is_a_stage_failure_too(svc: Services) -> None:
    call = function_call("file-note", ["not", "an", "object"])

    with pytest.raises(StageFailed, match=r"^PipelineError: cannot place a result at"):
        await run_function_stage(svc, call, context_for(call))

    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.status is AttemptStatus.FAILED


async def test_open_gate_records_an_awaiting_approval_attempt(svc: Services) -> None:
    data = {"title": "Q3", "summaries": ["Revenue rose."]}
    call = FunctionCall(
        job_id=JOB,
        tenant=TENANT,
        pipeline="document-review",
        stage="review",
        action="gate",
        task_token="tok-gate",
        data=data,
    )

    await open_gate(svc, call)
    await open_gate(svc, call)  # a retried invocation records nothing new

    [attempt] = await svc.jobs.attempts(JOB)
    assert attempt.attempt_id == gate_attempt_id("tok-gate")
    assert "tok-gate" not in attempt.attempt_id
    assert attempt.kind is StageKind.APPROVAL
    assert attempt.status is AttemptStatus.AWAITING_APPROVAL
    assert attempt.prompt == "Publish these section summaries?"
    assert attempt.task_token == "tok-gate"
    assert attempt.data == data
    assert attempt.result_path == "$.review"
    assert workflows(svc).answers == {}


# ---- a paused stage, end to end ------------------------------------------------------------


async def test_a_paused_stage_run_is_answered_on_its_resume_token_after_approval(
    svc: Services,
) -> None:
    message = remediate("tok-1")
    run = await started(svc, message)

    paused = await execute_run(svc, run.run_id)
    assert paused.status is RunStatus.AWAITING_APPROVAL
    assert workflows(svc).answers["tok-1"] == ("success", {"paused": {"run_id": run.run_id}})

    # The state machine waits on a new token; the worker attaches it.
    resume = RunMessage(run_id=run.run_id, task_token="tok-2", resume=True)
    await attach_resume_token(svc, resume)
    assert "tok-2" not in workflows(svc).answers

    queued = await approve_run(svc, TENANT, run.run_id, ApprovalBody(decision="approve"))
    assert queued.status is RunStatus.QUEUED
    finished = await execute_run(svc, run.run_id)

    assert finished.status is RunStatus.SUCCEEDED
    assert isinstance(finished.output, str)
    kind, answer = workflows(svc).answers["tok-2"]
    assert kind == "success"
    assert answer == {"done": {**INCIDENT, "remediation": finished.output}}
    assert "restarted" in answer["done"]["remediation"]
    attempt = await attempt_of(svc, finished)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == finished.output
    assert attempt.cost_usd == finished.cost_usd > paused.cost_usd
    # tok-1 was answered once, with paused: the approval did not touch it.
    assert workflows(svc).answers["tok-1"] == ("success", {"paused": {"run_id": run.run_id}})
