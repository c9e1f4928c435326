"""The consumer with pipeline stage messages, in-process on the memory backend with the
offline model: dispatches create and execute their run and answer the task token, resume
messages attach a paused run's new token, and the token is heartbeaten while the run
executes (a closed token cancels it).

``MemoryWorkflows`` stands in for Step Functions (``answers[token]``, ``heartbeats``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from agents.ops import ops_assistant, restart_service, service_status
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.errors import RunNotFoundError
from shared.jobs.memory import MemoryWorkflows
from shared.logic.runs import ApprovalDecision, decide_approval
from shared.logic.service import Services, approve_run, execute_run
from shared.logic.stages import attach_resume_token, begin_stage_run
from shared.models.api import ApprovalBody
from shared.models.job import AgentDispatch, AttemptStatus, StageAttempt
from shared.models.run import Run, RunStatus
from shared.pipelines import RUN_CANCELLED, STAGE_FAILED, AgentStage, Pipeline
from shared.queue import MemoryQueue, RunMessage
from shared.wiring import build_services
from workers.consumer import Consumer, ConsumerOptions, Outcome

TENANT = "acme"
JOB = "job_01STAGES"
SECTION = {"heading": "Revenue", "text": "Revenue rose 12% in Q3, led by the EU."}
INCIDENT = {"service": "checkout", "reason": "p99 latency above 2 s"}


class TimedWorkflows(MemoryWorkflows):
    """Records when each heartbeat arrived; closes a token after ``close_after`` of its
    heartbeats (the job moved on while the run executes)."""

    def __init__(self) -> None:
        super().__init__()
        self.beat_times: list[float] = []
        self.close_after: dict[str, int] = {}

    async def heartbeat(self, task_token: str) -> None:
        await super().heartbeat(task_token)
        self.beat_times.append(time.monotonic())
        limit = self.close_after.get(task_token)
        if limit is not None and self.heartbeats.count(task_token) >= limit:
            self.close_token(task_token)


class StageHarness:
    def __init__(self, *, offline_latency_s: float = 0.0, lease_ttl_s: float = 0.6) -> None:
        self.settings = Settings(
            lease_ttl_s=lease_ttl_s,
            offline_latency_s=offline_latency_s,
            worker_receive_wait_s=0.1,
            worker_drain_timeout_s=5.0,
        )
        self.svc: Services = build_services(
            self.settings, backend="memory", registry=AgentRegistry.from_modules([])
        )
        self.queue = MemoryQueue(visibility_s=30, max_receive_count=5)
        self.svc.queue = self.queue
        self.workflows = TimedWorkflows()
        self.svc.workflows = self.workflows
        self.running: list[tuple[Consumer, asyncio.Task[None]]] = []

    def start(self) -> Consumer:
        options = ConsumerOptions.from_services(self.svc)
        consumer = Consumer(dataclasses.replace(self.svc, _runtime=None), options)
        self.running.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    async def stop(self) -> None:
        for consumer, task in self.running:
            consumer.stop()
            await asyncio.wait_for(task, timeout=15)
        self.running.clear()

    async def dispatch(
        self,
        token: str,
        *,
        pipeline: str = "document-review",
        stage: str = "summarize-section",
        data: Any = None,
        heartbeat_s: int = 60,
    ) -> RunMessage:
        body = AgentDispatch(
            job_id=JOB,
            tenant=TENANT,
            pipeline=pipeline,
            stage=stage,
            data=SECTION if data is None else data,
            heartbeat_s=heartbeat_s,
        )
        message = RunMessage.model_validate({"task_token": token, "stage": body.model_dump()})
        await self.queue.send(message)
        return message

    async def run(self, run_id: str) -> Run:
        return await self.svc.journal.get_run(run_id)

    async def attempt(self, stage: str, run_id: str) -> StageAttempt:
        attempt = await self.svc.jobs.get_attempt(JOB, stage, run_id)
        assert attempt is not None
        return attempt


@pytest.fixture
async def harness() -> AsyncIterator[StageHarness]:
    h = StageHarness()
    yield h
    await h.stop()


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


def settled(
    h: StageHarness, consumer: Consumer, outcome: Outcome, n: int = 1
) -> Callable[[], bool]:
    """The consumer has counted ``n`` of ``outcome`` and the queue holds nothing."""

    def check() -> bool:
        return consumer.outcomes[outcome] >= n and h.queue.depth() == 0

    return check


# ---- dispatch --------------------------------------------------------------------------------


async def test_a_dispatch_creates_executes_and_answers_its_stage(harness: StageHarness) -> None:
    h = harness
    message = await h.dispatch("tok-1")
    consumer = h.start()

    await eventually(settled(h, consumer, Outcome.FINISHED))

    run = await h.run(message.run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.input == SECTION
    assert run.job is not None
    assert (run.job.job_id, run.job.stage) == (JOB, "summarize-section")
    assert h.workflows.answers["tok-1"] == ("success", {"done": run.output})
    attempt = await h.attempt("summarize-section", run.run_id)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == run.output
    assert attempt.cost_usd == run.cost_usd > 0
    assert h.queue.depth() == 0
    assert {k: v for k, v in consumer.outcomes.items() if v} == {Outcome.FINISHED: 1}


async def test_a_duplicate_dispatch_of_a_finished_run_answers_again(
    harness: StageHarness,
) -> None:
    h = harness
    message = await h.dispatch("tok-1")
    consumer = h.start()
    await eventually(settled(h, consumer, Outcome.FINISHED))
    run = await h.run(message.run_id)
    answer = h.workflows.answers["tok-1"]

    # A crash came between journaling the run and answering its token: the answer never
    # reached Step Functions, and the message is delivered again.
    del h.workflows.answers["tok-1"]
    await h.queue.send(message)
    await eventually(settled(h, consumer, Outcome.DUPLICATE))

    assert h.workflows.answers["tok-1"] == answer == ("success", {"done": run.output})
    assert await h.run(message.run_id) == run  # not executed again
    assert len(await h.svc.jobs.attempts(JOB)) == 1
    assert consumer.outcomes[Outcome.FINISHED] == 1
    assert consumer.outcomes[Outcome.DUPLICATE] == 1


async def test_a_dispatch_whose_stage_cannot_start_is_answered_and_deleted(
    harness: StageHarness,
) -> None:
    h = harness
    h.svc.pipelines.add(
        Pipeline(
            name="custom",
            stages=(AgentStage(name="focused", agent="section-summarizer", input_path="$.x"),),
        )
    )
    message = await h.dispatch("tok-1", pipeline="custom", stage="focused", data={"y": 1})
    consumer = h.start()

    await eventually(settled(h, consumer, Outcome.MISSING))

    kind, answer = h.workflows.answers["tok-1"]
    assert kind == "failure"
    assert answer["error"] == STAGE_FAILED
    assert "nothing at $.x" in answer["cause"]
    with pytest.raises(RunNotFoundError):
        await h.run(message.run_id)
    attempt = await h.attempt("focused", message.run_id)
    assert attempt.status is AttemptStatus.FAILED


# ---- resume ----------------------------------------------------------------------------------


async def test_a_resume_message_attaches_its_token(harness: StageHarness) -> None:
    h = harness
    message = await h.dispatch("tok-1")
    consumer = h.start()
    await eventually(settled(h, consumer, Outcome.FINISHED))
    run = await h.run(message.run_id)

    await h.queue.send(RunMessage(run_id=run.run_id, task_token="tok-2", resume=True))
    await eventually(settled(h, consumer, Outcome.ATTACHED))

    assert (await h.attempt("summarize-section", run.run_id)).task_token == "tok-2"
    # The run had finished already: the new token is answered at once.
    assert h.workflows.answers["tok-2"] == ("success", {"done": run.output})


async def test_a_paused_stage_resumes_through_the_queue(harness: StageHarness) -> None:
    h = harness
    message = await h.dispatch(
        "tok-1", pipeline="incident-response", stage="remediate", data=INCIDENT
    )
    consumer = h.start()

    await eventually(settled(h, consumer, Outcome.PAUSED))
    assert h.workflows.answers == {"tok-1": ("success", {"paused": {"run_id": message.run_id}})}
    assert (await h.run(message.run_id)).status is RunStatus.AWAITING_APPROVAL

    await h.queue.send(RunMessage(run_id=message.run_id, task_token="tok-2", resume=True))
    await eventually(settled(h, consumer, Outcome.ATTACHED))
    attempt = await h.attempt("remediate", message.run_id)
    assert (attempt.task_token, attempt.status) == ("tok-2", AttemptStatus.AWAITING_APPROVAL)
    assert "tok-2" not in h.workflows.answers

    # A reviewer approves: approve_run queues the run, the consumer finishes it.
    await approve_run(h.svc, TENANT, message.run_id, ApprovalBody(decision="approve"))
    await eventually(settled(h, consumer, Outcome.FINISHED))

    run = await h.run(message.run_id)
    assert run.status is RunStatus.SUCCEEDED
    kind, answer = h.workflows.answers["tok-2"]
    assert kind == "success"
    assert answer == {"done": {**INCIDENT, "remediation": run.output}}
    assert (await h.attempt("remediate", run.run_id)).status is AttemptStatus.SUCCEEDED


# ---- heartbeats ------------------------------------------------------------------------------


async def test_the_token_is_heartbeaten_at_most_every_quarter_of_heartbeat_s() -> None:
    # A 0.15 s lease: the runtime heartbeats every 0.05 s; the stage's token at most every
    # heartbeat_s / 4 = 0.25 s. The offline model takes 1 s for its one call.
    h = StageHarness(offline_latency_s=1.0, lease_ttl_s=0.15)
    try:
        message = await h.dispatch("tok-1", heartbeat_s=1)
        consumer = h.start()
        await eventually(settled(h, consumer, Outcome.FINISHED))
    finally:
        await h.stop()

    run = await h.run(message.run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert h.workflows.answers["tok-1"] == ("success", {"done": run.output})
    beats = h.workflows.heartbeats
    assert set(beats) == {"tok-1"}
    assert len(beats) >= 2  # the run outlived several throttle periods
    assert run.started_at is not None
    assert run.finished_at is not None
    duration = (run.finished_at - run.started_at).total_seconds()
    assert duration >= 1.0
    assert len(beats) <= duration / (1 / 4) + 1
    gaps = [b - a for a, b in zip(h.workflows.beat_times, h.workflows.beat_times[1:], strict=False)]
    assert all(gap >= 0.25 - 0.01 for gap in gaps), gaps


async def test_a_closed_token_cancels_the_run() -> None:
    # ops-assistant takes several steps (a status check, then the restart it pauses on): the
    # token closes after its first heartbeat, the next one finds it closed and cancels the
    # run, which stops at its next step boundary.
    h = StageHarness(offline_latency_s=0.8, lease_ttl_s=0.15)
    h.workflows.close_after["tok-1"] = 1
    try:
        message = await h.dispatch(
            "tok-1", pipeline="incident-response", stage="remediate", data=INCIDENT, heartbeat_s=1
        )
        consumer = h.start()
        await eventually(settled(h, consumer, Outcome.FINISHED))
    finally:
        await h.stop()

    run = await h.run(message.run_id)
    assert run.status is RunStatus.CANCELLED
    assert run.pending_approval is None  # it never got to the restart
    assert run.error is not None
    assert run.error.code == "cancelled"
    assert h.workflows.heartbeats == ["tok-1"]
    # The stage's failure is recorded; answering the closed token was refused.
    assert "tok-1" not in h.workflows.answers
    attempt = await h.attempt("remediate", run.run_id)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error is not None
    assert attempt.error.code == RUN_CANCELLED


async def test_a_redelivered_dispatch_of_an_approved_stage_run_does_not_cancel_it() -> None:
    h = StageHarness(offline_latency_s=0.6, lease_ttl_s=0.15)
    # Restart first (it pauses), then a status check: steps remain after the approval.
    agent = dataclasses.replace(
        ops_assistant, name="restart-first", tools=(restart_service, service_status)
    )
    h.svc.registry.add(agent)
    h.svc.pipelines.add(
        Pipeline(
            name="fix-first",
            stages=(AgentStage(name="fix", agent="restart-first", result_path="$.remediation"),),
        )
    )
    message = await h.dispatch(
        "tok-1", pipeline="fix-first", stage="fix", data=INCIDENT, heartbeat_s=1
    )
    # A worker received the dispatch, the run paused and `paused` was answered, then the
    # worker died before deleting the message (or SQS delivered it twice).
    run = await begin_stage_run(h.svc, message)
    assert run is not None
    paused = await execute_run(h.svc, run.run_id)
    assert paused.status is RunStatus.AWAITING_APPROVAL
    await attach_resume_token(h.svc, RunMessage(run_id=run.run_id, task_token="tok-2", resume=True))
    await decide_approval(h.svc.journal, run.run_id, ApprovalDecision(decision="approve"))
    try:
        consumer = h.start()  # receives the old dispatch (the only message)
        await eventually(settled(h, consumer, Outcome.FINISHED))
    finally:
        await h.stop()

    finished = await h.run(run.run_id)
    assert finished.status is RunStatus.SUCCEEDED, finished.error
    assert h.workflows.answers["tok-2"] == (
        "success",
        {"done": {**INCIDENT, "remediation": finished.output}},
    )


async def test_a_resume_message_is_attached_even_while_its_run_is_in_flight_here(
    harness: StageHarness,
) -> None:
    """Step Functions sends the resume token as soon as the pause is answered, which can be
    before this worker has acknowledged the paused run's own message: the resume message
    must not be taken for a duplicate of the executing copy."""
    from workers.consumer import Delivery

    h = harness
    message = await h.dispatch(
        "tok-1", pipeline="incident-response", stage="remediate", data=INCIDENT
    )
    run = await begin_stage_run(h.svc, message)
    assert run is not None
    consumer = Consumer(h.svc, ConsumerOptions(receive_wait_s=0.05))
    (received,) = await h.queue.receive(max_messages=1, wait_s=0.1)
    consumer._in_flight[run.run_id] = Delivery(received)  # its execution is not acked yet
    await h.queue.send(RunMessage(run_id=run.run_id, task_token="tok-2", resume=True))
    (resume,) = await h.queue.receive(max_messages=1, wait_s=0.1)

    assert await consumer.handle(resume) is Outcome.ATTACHED
    assert (await h.attempt("remediate", run.run_id)).task_token == "tok-2"
