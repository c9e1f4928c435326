"""The run queue contract (``shared.queue.base.RunQueue``), checked against every backend.

Each test runs once per backend: ``memory`` (``MemoryQueue``) and ``sqs`` (``SqsRunQueue`` on
moto in-process, the stack's queues deployed from the synthesized template with a redrive after
``MAX_RECEIVES`` receives, ``shared.dal.local.deploy_template``; dead letters are read where the
runs queue redrives them, the stack's transit queue). Visibility is real time on both, in
whole seconds (SQS's unit), so the waits here are long polls bounded by a few seconds, never
sleeps.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from infra import constants as c
from shared.config import Settings
from shared.dal import aws_client
from shared.dal.local import create_queues, deploy_template
from shared.dal.sqs import SqsRunQueue
from shared.errors import QueueError
from shared.queue import MemoryQueue, QueueMessage, RunMessage, RunQueue

MAX_RECEIVES = 2
VISIBILITY_S = 1
# Long enough for a message hidden for VISIBILITY_S to reappear on either backend.
REAPPEAR_WAIT_S = 4.0


@pytest.fixture
def sqs_queue() -> Iterator[SqsRunQueue]:
    with mock_aws():
        # The same variant as tests/workers (one synth for both); receives set VISIBILITY_S.
        stack_settings = {"lease_ttl_s": 2, "queues": {"max_receive_count": MAX_RECEIVES}}
        deployed = deploy_template(stack_settings)
        runs, transit = (
            deployed.outputs[c.OUTPUT_RUNS_QUEUE_URL],
            deployed.outputs[c.OUTPUT_FAILED_QUEUE_URL],
        )
        queue = SqsRunQueue(runs, transit, region=deployed.region, max_workers=4)
        try:
            yield queue
        finally:
            queue.close()


@pytest.fixture(params=["memory", "sqs"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[RunQueue]:
    if request.param == "memory":
        yield MemoryQueue(visibility_s=VISIBILITY_S, max_receive_count=MAX_RECEIVES)
        return
    yield request.getfixturevalue("sqs_queue")


async def receive_one(q: RunQueue, *, wait_s: float = REAPPEAR_WAIT_S) -> QueueMessage:
    """The next message, long-polling for at most ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        remaining = deadline - time.monotonic()
        got = await q.receive(
            max_messages=1, wait_s=max(0.0, min(remaining, 1.0)), visibility_s=VISIBILITY_S
        )
        if got:
            assert len(got) == 1
            return got[0]
        if remaining <= 0:
            raise AssertionError(f"no message within {wait_s} s")


async def nothing(q: RunQueue, *, wait_s: float = 0.0) -> bool:
    return await q.receive(max_messages=10, wait_s=wait_s, visibility_s=VISIBILITY_S) == []


async def dead_letter(q: RunQueue, *, wait_s: float = REAPPEAR_WAIT_S) -> QueueMessage:
    deadline = time.monotonic() + wait_s
    while True:
        dead = await q.dead_letters(max_messages=10)
        if dead:
            assert len(dead) == 1
            return dead[0]
        if time.monotonic() >= deadline:
            raise AssertionError(f"no dead letter within {wait_s} s")
        await asyncio.sleep(0.05)


async def test_send_receive_delete(queue: RunQueue) -> None:
    before_ms = int(time.time() * 1000)
    message_id = await queue.send(RunMessage(run_id="run-1"))
    got = await receive_one(queue)
    assert got.body == RunMessage(run_id="run-1")
    assert got.message_id == message_id
    assert got.receive_count == 1
    # SentTimestamp is in milliseconds, set by the queue when it accepted the message.
    assert before_ms - 1000 <= got.sent_at_ms <= int(time.time() * 1000) + 1000
    await queue.delete(got.receipt)
    # Deleted: it does not come back once its visibility timeout has passed.
    assert await nothing(queue, wait_s=VISIBILITY_S + 1.5)


async def test_body_round_trips_the_task_token(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="run-2", task_token="token/with+odd=chars"))
    got = await receive_one(queue)
    assert got.body.task_token == "token/with+odd=chars"


async def test_received_message_is_hidden_then_reappears(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="run-3"))
    first = await receive_one(queue)
    assert await nothing(queue)
    started = time.monotonic()
    again = await receive_one(queue)
    assert again.message_id == first.message_id
    assert again.receive_count == 2
    assert again.receipt != first.receipt
    assert time.monotonic() - started <= REAPPEAR_WAIT_S


async def test_change_visibility_extends_and_zero_releases(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="run-4"))
    got = await receive_one(queue)
    await queue.change_visibility(got.receipt, VISIBILITY_S + 3)
    # Past the original timeout it is still hidden: the extension held.
    assert await nothing(queue, wait_s=VISIBILITY_S + 1)
    await queue.change_visibility(got.receipt, 0)
    released = await receive_one(queue, wait_s=1.0)
    assert released.message_id == got.message_id
    assert released.receive_count == 2


async def test_receive_counts_grow(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="run-5"))
    counts = []
    for _ in range(MAX_RECEIVES):
        got = await receive_one(queue)
        counts.append(got.receive_count)
        await queue.change_visibility(got.receipt, 0)
    assert counts == list(range(1, MAX_RECEIVES + 1))


async def test_receive_batches_at_most_ten(queue: RunQueue) -> None:
    ids = {await queue.send(RunMessage(run_id=f"run-{i}")) for i in range(12)}
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while seen != ids and time.monotonic() < deadline:
        batch = await queue.receive(max_messages=10, wait_s=1.0, visibility_s=30)
        assert len(batch) <= 10
        for message in batch:
            seen.add(message.message_id)
            await queue.delete(message.receipt)
    assert seen == ids


async def test_long_poll_wakes_on_send(queue: RunQueue) -> None:
    started = time.monotonic()
    waiting = asyncio.create_task(queue.receive(max_messages=1, wait_s=10.0, visibility_s=30))
    await asyncio.sleep(0.2)
    await queue.send(RunMessage(run_id="run-6"))
    got = await asyncio.wait_for(waiting, timeout=12)
    assert [m.body.run_id for m in got] == ["run-6"]
    assert time.monotonic() - started < 5


async def test_after_max_receives_the_message_is_dead(queue: RunQueue) -> None:
    message_id = await queue.send(RunMessage(run_id="poison"))
    for _ in range(MAX_RECEIVES):
        got = await receive_one(queue)
        await queue.change_visibility(got.receipt, 0)  # a worker failed it
    # The receive that would exceed the count moves it to the DLQ instead of returning it.
    assert await nothing(queue, wait_s=1.0)
    dead = await dead_letter(queue)
    assert dead.body == RunMessage(run_id="poison")
    assert dead.message_id == message_id
    assert dead.receive_count >= MAX_RECEIVES
    await queue.delete_dead_letter(dead.receipt)
    assert await queue.dead_letters() == []
    assert await nothing(queue)


async def test_redrive_sends_the_dead_letter_back(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="retry-me", task_token="tok"))
    for _ in range(MAX_RECEIVES):
        got = await receive_one(queue)
        await queue.change_visibility(got.receipt, 0)
    assert await nothing(queue, wait_s=1.0)
    dead = await dead_letter(queue)
    new_id = await queue.redrive(dead)
    await queue.delete_dead_letter(dead.receipt)
    back = await receive_one(queue)
    assert back.body == RunMessage(run_id="retry-me", task_token="tok")
    assert back.message_id == new_id
    assert back.receive_count == 1  # a fresh message: a full set of attempts again


async def test_invalid_receipt_is_a_queue_error(queue: RunQueue) -> None:
    await queue.send(RunMessage(run_id="run-7"))
    await receive_one(queue)
    with pytest.raises(QueueError):
        await queue.delete("not-a-receipt")
    with pytest.raises(QueueError):
        await queue.change_visibility("not-a-receipt", 5)


def test_sqs_queue_without_a_url_refuses_to_queue() -> None:
    queue = SqsRunQueue("", client=object(), max_workers=1)
    try:
        with pytest.raises(QueueError):
            asyncio.run(queue.send(RunMessage(run_id="r")))
    finally:
        queue.close()


def test_sqs_queue_without_dlq_url_refuses_dead_letter_calls() -> None:
    queue = SqsRunQueue("https://example.invalid/q", client=object(), max_workers=1)
    try:
        with pytest.raises(QueueError):
            asyncio.run(queue.dead_letters())
    finally:
        queue.close()


def test_sqs_queue_skips_bodies_that_are_not_run_messages(sqs_queue: SqsRunQueue) -> None:
    sqs_queue.client.send_message(QueueUrl=sqs_queue.queue_url, MessageBody="{not json")
    sqs_queue.client.send_message(
        QueueUrl=sqs_queue.queue_url, MessageBody=RunMessage(run_id="ok").model_dump_json()
    )

    async def scenario() -> list[str]:
        got = await sqs_queue.receive(max_messages=10, wait_s=0, visibility_s=30)
        return [m.body.run_id for m in got]

    assert asyncio.run(scenario()) == ["ok"]


def test_sqs_errors_are_queue_errors_from_the_client_error(sqs_queue: SqsRunQueue) -> None:
    with pytest.raises(QueueError) as caught:
        asyncio.run(sqs_queue.delete("not-a-receipt"))
    assert isinstance(caught.value.__cause__, ClientError)
    assert caught.value.details["aws_code"] == "ReceiptHandleIsInvalid"


def test_provisioning_queues_is_repeatable_and_sets_the_redrive_policy() -> None:
    """``create_queues`` (hand-written, what ``switchyard dev`` uses until the local stack
    deploys the template: ``shared.dal.local``)."""
    with mock_aws():
        settings = Settings(table_name="provisioned", lease_ttl_s=2.5)
        first = create_queues(settings, max_receive_count=3)
        again = create_queues(settings, max_receive_count=4)
        assert again == first
        assert first.queue_url.endswith("/provisioned-runs")
        assert first.dlq_url.endswith("/provisioned-runs-dlq")
        sqs = aws_client("sqs", region=settings.region)
        attrs = sqs.get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["All"])
        policy = json.loads(attrs["Attributes"]["RedrivePolicy"])
        assert policy["maxReceiveCount"] == 4
        assert policy["deadLetterTargetArn"].endswith(":provisioned-runs-dlq")
        assert attrs["Attributes"]["VisibilityTimeout"] == "3"  # the lease period, rounded up
        # Settings carry the URLs the way entry points read them.
        carried = settings.model_copy(update=first._asdict())
        assert (carried.queue_url, carried.dlq_url) == first
