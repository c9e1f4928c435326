"""``SfnWorkflows`` against Step Functions on moto (in-process, executing state machines).

The state machine is one ``sqs:sendMessage.waitForTaskToken`` task, like an agent stage's
dispatch: the test receives the SQS message to get the task token, then answers it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from shared.config import Settings
from shared.dal import aws_client
from shared.dal.stepfunctions import SfnWorkflows
from shared.errors import JobExistsError, JobNotFoundError, TaskTokenClosedError, WorkflowError
from shared.jobs.base import ExecutionInfo, ExecutionStatus

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/switchyard-pipeline"
DEADLINE_S = 10.0


@dataclass
class Sfn:
    workflows: SfnWorkflows
    sqs: Any
    queue_url: str
    state_machine_arn: str

    def token(self) -> tuple[str, Any]:
        """The next task token the state machine sent, and the input it sent with it."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=1
            ).get("Messages", [])
            if messages:
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"]
                )
                body = json.loads(messages[0]["Body"])
                return str(body["token"]), body["input"]
        raise AssertionError("no task token arrived")

    async def ended(self, arn: str) -> ExecutionInfo:
        """The execution once it has left RUNNING (polled, with a deadline)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            info = await self.workflows.describe(arn)
            if info.status != ExecutionStatus.RUNNING:
                return info
            if time.monotonic() > deadline:
                raise AssertionError(f"{arn} still running after {DEADLINE_S} s")
            await asyncio.sleep(0.02)


@pytest.fixture
def sfn() -> Iterator[Sfn]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sqs = aws_client("sqs", region=REGION)
        queue_url = sqs.create_queue(QueueName="stage-dispatch")["QueueUrl"]
        definition = {
            "StartAt": "Route",
            "States": {
                # moto only ends a stopped execution when its current state returns, which a
                # task waiting for its token does not: ``hold`` parks it in a Wait instead.
                "Route": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.hold", "IsPresent": True, "Next": "Hold"}],
                    "Default": "Stage",
                },
                "Hold": {"Type": "Wait", "Seconds": 300, "Next": "Stage"},
                "Stage": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": queue_url,
                        "MessageBody": {"token.$": "$$.Task.Token", "input.$": "$"},
                    },
                    "HeartbeatSeconds": 300,
                    "End": True,
                },
            },
        }
        client = aws_client("stepfunctions", region=REGION)
        arn = client.create_state_machine(
            name="review", definition=json.dumps(definition), roleArn=ROLE
        )["stateMachineArn"]
        workflows = SfnWorkflows(client, max_workers=4)
        try:
            yield Sfn(workflows, sqs, queue_url, str(arn))
        finally:
            workflows.close()


async def test_start_is_idempotent_for_the_same_input(sfn: Sfn) -> None:
    value = {"doc": "s3://b/k", "pages": [1, 2], "score": 0.5}
    arn = await sfn.workflows.start(sfn.state_machine_arn, "job_1", value)
    assert arn == "arn:aws:states:us-east-1:123456789012:execution:review:job_1"
    assert await sfn.workflows.start(sfn.state_machine_arn, "job_1", dict(value)) == arn
    with pytest.raises(JobExistsError) as err:
        await sfn.workflows.start(sfn.state_machine_arn, "job_1", {"doc": "other"})
    assert err.value.details == {"execution_arn": arn}
    with pytest.raises(JobExistsError):  # 1.0 is not 1
        await sfn.workflows.start(
            sfn.state_machine_arn, "job_1", {**value, "score": 0.5, "pages": [1.0, 2]}
        )
    _, sent = sfn.token()
    assert sent == value
    info = await sfn.workflows.describe(arn)
    assert info.status == ExecutionStatus.RUNNING
    assert info.started_at is not None
    assert info.started_at.tzinfo == UTC


async def test_heartbeat_then_succeed(sfn: Sfn) -> None:
    arn = await sfn.workflows.start(sfn.state_machine_arn, "job_ok", {"n": 1})
    token, _ = sfn.token()
    await sfn.workflows.heartbeat(token)
    output = {"done": {"n": 1, "score": 0.1, "nested": [None, True, 2.5]}}
    await sfn.workflows.succeed(token, output)

    info = await sfn.ended(arn)
    assert (info.status, info.output, info.error) == (ExecutionStatus.SUCCEEDED, output, None)
    assert info.stopped_at is not None

    for again in (
        sfn.workflows.succeed(token, {"done": 2}),
        sfn.workflows.heartbeat(token),
    ):
        with pytest.raises(TaskTokenClosedError) as err:
            await again
        assert token not in str(err.value)
        assert token not in repr(err.value.details)
    # Ended executions keep their names: the same start still finds this one.
    assert await sfn.workflows.start(sfn.state_machine_arn, "job_ok", {"n": 1}) == arn
    with pytest.raises(JobExistsError):
        await sfn.workflows.start(sfn.state_machine_arn, "job_ok", {"n": 2})


async def test_fail(sfn: Sfn) -> None:
    arn = await sfn.workflows.start(sfn.state_machine_arn, "job_bad", None)
    token, _ = sfn.token()
    await sfn.workflows.fail(token, error="RunFailed", cause="the model refused")
    info = await sfn.ended(arn)
    assert (info.status, info.error) == (ExecutionStatus.FAILED, "RunFailed")
    # moto drops SendTaskFailure's cause (Step Functions keeps it).
    assert info.cause in (None, "the model refused")
    assert info.output is None
    with pytest.raises(TaskTokenClosedError):
        await sfn.workflows.succeed(token, {})


async def test_stop(sfn: Sfn) -> None:
    arn = await sfn.workflows.start(sfn.state_machine_arn, "job_stop", {"hold": True})
    await sfn.workflows.stop(arn, error="Cancelled", cause="by the user")
    info = await sfn.ended(arn)
    assert info.status == ExecutionStatus.ABORTED
    assert info.stopped_at is not None
    await sfn.workflows.stop(arn, error="Cancelled", cause="again")  # ended: not an error
    assert (await sfn.workflows.describe(arn)).status == ExecutionStatus.ABORTED

    done = await sfn.workflows.start(sfn.state_machine_arn, "job_done", {})
    token, _ = sfn.token()
    await sfn.workflows.succeed(token, 1)
    assert (await sfn.ended(done)).status == ExecutionStatus.SUCCEEDED
    await sfn.workflows.stop(done, error="Cancelled", cause="late")
    assert (await sfn.workflows.describe(done)).status == ExecutionStatus.SUCCEEDED


async def test_unknown_executions_and_tokens(sfn: Sfn) -> None:
    unknown = "arn:aws:states:us-east-1:123456789012:execution:review:nope"
    with pytest.raises(JobNotFoundError):
        await sfn.workflows.describe(unknown)
    with pytest.raises(JobNotFoundError):
        await sfn.workflows.stop(unknown, error="E", cause="c")
    forged = "AAAAKgAAAAIAAAAAAAAAAforged-token"
    with pytest.raises(TaskTokenClosedError) as err:
        await sfn.workflows.succeed(forged, {})
    assert forged not in str(err.value)
    with pytest.raises(TaskTokenClosedError):
        await sfn.workflows.heartbeat(forged)


async def test_other_failures_are_workflow_errors(sfn: Sfn) -> None:
    missing = sfn.state_machine_arn.replace(":review", ":missing")
    with pytest.raises(WorkflowError) as err:
        await sfn.workflows.start(missing, "job_1", {})
    assert not isinstance(err.value, JobNotFoundError | JobExistsError)
    assert isinstance(err.value.__cause__, ClientError)
    with pytest.raises(WorkflowError, match="not JSON"):
        await sfn.workflows.start(sfn.state_machine_arn, "job_1", {"x": float("nan")})


async def test_from_settings(sfn: Sfn) -> None:
    workflows = SfnWorkflows.from_settings(Settings(region=REGION), max_workers=2)
    try:
        arn = await workflows.start(sfn.state_machine_arn, "job_s", {"a": 1})
        assert (await workflows.describe(arn)).status == ExecutionStatus.RUNNING
    finally:
        workflows.close()


class LeakyClient:
    """A client whose errors quote the task token back (as a careless endpoint might)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def _raise(self, **kwargs: Any) -> None:
        message = f"bad token {kwargs.get('taskToken')}"
        raise ClientError({"Error": {"Code": self.code, "Message": message}}, "SendTaskSuccess")

    send_task_success = _raise
    send_task_failure = _raise
    send_task_heartbeat = _raise


@pytest.mark.parametrize("code", ["InvalidToken", "TaskTimedOut", "ThrottlingException"])
async def test_a_token_never_travels_in_an_error(code: str) -> None:
    token = "AAAA-secret-capability-token"
    workflows = SfnWorkflows(LeakyClient(code), max_workers=1)
    try:
        for call in (
            workflows.succeed(token, {}),
            workflows.fail(token, error="E", cause="c"),
            workflows.heartbeat(token),
        ):
            with pytest.raises(WorkflowError) as err:
                await call
            assert isinstance(err.value, TaskTokenClosedError) == (code != "ThrottlingException")
            assert token not in str(err.value)
            chained = err.value.__cause__
            assert chained is None or token not in str(chained)
    finally:
        workflows.close()
