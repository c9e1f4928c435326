"""``MemoryWorkflows``: the recording Step Functions stand-in unit tests use."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import JobExistsError, JobNotFoundError, TaskTokenClosedError, WorkflowError
from shared.jobs.base import ExecutionStatus, Workflows
from shared.jobs.memory import MemoryWorkflows

SM = "arn:aws:states:eu-west-1:123456789012:stateMachine:review"
ARN = "arn:aws:states:us-east-1:000000000000:execution:review:job_1"


async def test_start_is_idempotent_for_the_same_input() -> None:
    wf = MemoryWorkflows()
    assert await wf.start(SM, "job_1", {"doc": 1, "score": 0.5}) == ARN
    assert await wf.start(SM, "job_1", {"score": 0.5, "doc": 1}) == ARN
    for other in ({"doc": 2}, {"doc": 1.0, "score": 0.5}, {"doc": True, "score": 0.5}):
        with pytest.raises(JobExistsError):
            await wf.start(SM, "job_1", other)
    assert await wf.start(SM, "job_2", {"doc": 2}) == ARN.replace("job_1", "job_2")
    assert wf.starts == [
        (SM, "job_1", {"doc": 1, "score": 0.5}),
        (SM, "job_1", {"doc": 1, "score": 0.5}),
        (SM, "job_2", {"doc": 2}),
    ]
    assert wf.inputs[ARN] == {"doc": 1, "score": 0.5}


async def test_describe_a_started_execution_then_set_it() -> None:
    wf = MemoryWorkflows()
    arn = await wf.start(SM, "job_1", None)
    info = await wf.describe(arn)
    assert (info.execution_arn, info.status, info.output) == (arn, ExecutionStatus.RUNNING, None)
    assert info.started_at is not None
    assert info.stopped_at is None

    wf.set_execution(arn, ExecutionStatus.SUCCEEDED, output={"done": [1.5]})
    info = await wf.describe(arn)
    assert (info.status, info.output, info.error) == (
        ExecutionStatus.SUCCEEDED,
        {"done": [1.5]},
        None,
    )
    assert info.stopped_at is not None
    info.output["done"].append(2)  # a copy: the stored one stays
    assert (await wf.describe(arn)).output == {"done": [1.5]}

    wf.set_execution(arn, ExecutionStatus.FAILED, error="StageFailed", cause="boom")
    info = await wf.describe(arn)
    assert (info.status, info.error, info.cause) == (ExecutionStatus.FAILED, "StageFailed", "boom")


async def test_describe_and_stop_unknown_executions_raise() -> None:
    wf = MemoryWorkflows()
    with pytest.raises(JobNotFoundError):
        await wf.describe(ARN)
    with pytest.raises(JobNotFoundError):
        await wf.stop(ARN, error="Cancelled", cause="by the user")


async def test_stop_aborts_a_running_execution_only() -> None:
    wf = MemoryWorkflows()
    running = await wf.start(SM, "job_1", {})
    await wf.stop(running, error="Cancelled", cause="by the user")
    info = await wf.describe(running)
    assert (info.status, info.error, info.cause) == (
        ExecutionStatus.ABORTED,
        "Cancelled",
        "by the user",
    )
    assert info.stopped_at is not None

    done = await wf.start(SM, "job_2", {})
    wf.set_execution(done, ExecutionStatus.SUCCEEDED, output=1)
    await wf.stop(done, error="Cancelled", cause="late")  # ended already: not an error
    assert (await wf.describe(done)).status == ExecutionStatus.SUCCEEDED
    await wf.stop(running, error="Again", cause="twice")
    assert (await wf.describe(running)).error == "Cancelled"
    assert wf.stops == [
        (running, "Cancelled", "by the user"),
        (done, "Cancelled", "late"),
        (running, "Again", "twice"),
    ]


async def test_tokens_are_answered_once() -> None:
    wf = MemoryWorkflows()
    output: dict[str, Any] = {"done": {"score": 0.25}}
    await wf.heartbeat("tok-1")
    await wf.heartbeat("tok-1")
    await wf.succeed("tok-1", output)
    output["done"]["score"] = 1.0  # recorded as it was sent
    await wf.fail("tok-2", error="RunFailed", cause="budget")
    assert wf.answers == {
        "tok-1": ("success", {"done": {"score": 0.25}}),
        "tok-2": ("failure", {"error": "RunFailed", "cause": "budget"}),
    }
    assert wf.heartbeats == ["tok-1", "tok-1"]

    for token in ("tok-1", "tok-2"):
        with pytest.raises(TaskTokenClosedError) as err:
            await wf.succeed(token, 1)
        assert token not in str(err.value)
        with pytest.raises(TaskTokenClosedError):
            await wf.fail(token, error="E", cause="c")
        with pytest.raises(TaskTokenClosedError):
            await wf.heartbeat(token)
    assert wf.answers["tok-1"] == ("success", {"done": {"score": 0.25}})
    assert wf.heartbeats == ["tok-1", "tok-1"]


async def test_closed_tokens_refuse_every_answer() -> None:
    wf = MemoryWorkflows()
    secret = "AQCEAAAAKgAAAAMAAAAAAAAAAe-secret-token"
    wf.close_token(secret)
    for call in (
        wf.heartbeat(secret),
        wf.succeed(secret, {}),
        wf.fail(secret, error="E", cause="c"),
    ):
        with pytest.raises(TaskTokenClosedError) as err:
            await call
        assert secret not in str(err.value)
        assert secret not in repr(err.value.details)
    assert (wf.answers, wf.heartbeats) == ({}, [])


async def test_values_must_be_json() -> None:
    wf = MemoryWorkflows()
    with pytest.raises(WorkflowError):
        await wf.start(SM, "job_1", {"bad": object()})
    with pytest.raises(WorkflowError):
        await wf.succeed("tok", float("nan"))
    assert (wf.starts, wf.answers) == ([], {})


def test_it_is_a_workflows() -> None:
    wf: Workflows = MemoryWorkflows()
    assert isinstance(wf, MemoryWorkflows)
