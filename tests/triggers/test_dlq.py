"""Dead letters: the run is marked failed with the reason, the message stays for redrive,
and a redrive resumes the run from its journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

import functions.dlq.handler as dlq_function
from functions import run_sync
from infra import constants as c
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.dal import aws_client
from shared.dal.local import DeployedStack
from shared.dal.sqs import SqsRunQueue
from shared.journal import MemoryJournal
from shared.logic.dlq import (
    DEAD_LETTERED,
    dead_letter_error,
    handle_dead_letter,
    list_dead_letters,
    mark_dead_lettered,
    redrive,
)
from shared.logic.service import Services, create_run, execute_run
from shared.models.api import RunCreate
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import Run, RunStatus, Shape
from shared.queue import MemoryQueue, QueueMessage, RunMessage
from shared.runtime.state import replay
from shared.tenancy.memory import MemoryControlStore
from tests.support.runtime_kit import Interrupted, Toolbox, assert_journal_consistent, kinds
from tests.support.scripted_provider import ScriptedProvider, plan
from tests.triggers.conftest import MAX_RECEIVES, load_event

EMAIL = {"to": "ops@example.com", "body": "the report is ready"}


@dataclass
class World:
    svc: Services
    provider: ScriptedProvider
    toolbox: Toolbox
    completed: list[Run] = field(default_factory=list)

    @property
    def queue(self) -> MemoryQueue:
        assert isinstance(self.svc.queue, MemoryQueue)
        return self.svc.queue


def make_world(queue: Any = None) -> World:
    toolbox = Toolbox()
    provider = ScriptedProvider(responder=plan([("send_email", EMAIL)], "sent it"))
    world = World(svc=None, provider=provider, toolbox=toolbox)  # type: ignore[arg-type]
    world.svc = Services(
        settings=Settings(),
        registry=AgentRegistry([toolbox.agent("send_email")]),
        journal=MemoryJournal(),
        control=MemoryControlStore(),
        queue=queue or MemoryQueue(visibility_s=0, max_receive_count=MAX_RECEIVES),
        make_provider=lambda: provider,
        on_complete=world.completed.append,
        owner="worker-1",
    )
    return world


@pytest.fixture
def world() -> World:
    return make_world()


async def submit(w: World, **fields: Any) -> str:
    body = RunCreate(agent="tester", input="email the report", mode=Shape.ASYNC, **fields)
    return (await create_run(w.svc, "acme", body)).run.run_id


async def crash_until_dead(w: World) -> QueueMessage:
    """A worker takes the message, crashes mid-tool; later deliveries crash before doing
    anything; after MAX_RECEIVES receives the queue moves the message to the DLQ."""
    (message,) = await w.queue.receive(wait_s=0)
    w.toolbox.raise_next["send_email"] = Interrupted()
    with pytest.raises(Interrupted):
        await execute_run(w.svc, message.body.run_id)
    while not await w.queue.dead_letters():
        await w.queue.receive(wait_s=0)
    (dead,) = await w.queue.dead_letters()
    return dead


async def test_dead_letter_marks_the_run_failed_and_keeps_the_message(world: World) -> None:
    run_id = await submit(world)
    dead = await crash_until_dead(world)
    assert dead.receive_count == MAX_RECEIVES

    run = await handle_dead_letter(world.svc, dead)

    assert run is not None
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == DEAD_LETTERED
    assert f"received {MAX_RECEIVES} times" in run.error.message
    assert run.error.details is not None
    assert run.error.details["receive_count"] == MAX_RECEIVES
    assert run.error.details["message_id"] == dead.message_id
    assert run.finished_at is not None
    assert run.steps == 1  # what the journal holds: the first model step
    # The journal says the same: a finished record carrying the failed event.
    records = await world.svc.journal.records(run_id)
    assert kinds(records) == [
        RecordKind.CREATED,
        RecordKind.STARTED,
        RecordKind.MODEL,
        RecordKind.FINISHED,
    ]
    last = (await world.svc.journal.events(run_id, limit=100))[-1]
    assert last.type is EventType.RUN_STATUS
    assert last.data["status"] == "failed"
    assert last.data["error"]["code"] == DEAD_LETTERED
    # Replay still sees the run where it stopped (so a redrive can resume it).
    assert not replay(records).finished
    # The completion hook fired once; the lease was released.
    assert [r.run_id for r in world.completed] == [run_id]
    await world.svc.journal.acquire_lease(run_id, "someone-else", 30)
    # The message is still in the DLQ, for redrive.
    assert [m.message_id for m in await world.queue.dead_letters()] == [dead.message_id]


async def test_handling_is_idempotent(world: World) -> None:
    run_id = await submit(world)
    dead = await crash_until_dead(world)
    first = await handle_dead_letter(world.svc, dead)
    records = await world.svc.journal.records(run_id)

    second = await handle_dead_letter(world.svc, dead)

    assert first == second
    assert await world.svc.journal.records(run_id) == records
    assert len(world.completed) == 1


async def test_a_live_lease_leaves_the_message_for_later(world: World) -> None:
    run_id = await submit(world)
    dead = await crash_until_dead(world)
    before = await world.svc.journal.get_run(run_id)
    lease = await world.svc.journal.acquire_lease(run_id, "worker-still-alive", 30)

    assert await handle_dead_letter(world.svc, dead) is None
    assert await world.svc.journal.get_run(run_id) == before
    assert world.completed == []

    await world.svc.journal.release_lease(lease)
    marked = await handle_dead_letter(world.svc, dead)
    assert marked is not None
    assert marked.status is RunStatus.FAILED


async def test_a_run_that_ended_meanwhile_is_left_as_it_is(world: World) -> None:
    run_id = await submit(world)
    (message,) = await world.queue.receive(wait_s=0)
    done = await execute_run(world.svc, run_id)
    records = await world.svc.journal.records(run_id)

    written = await mark_dead_lettered(
        world.svc.journal, run_id, dead_letter_error(message), owner="dlq-test", lease_ttl_s=30
    )

    assert written is not None
    assert not written.changed
    assert written.run.status is RunStatus.SUCCEEDED
    assert written.run.finished_at == done.finished_at
    assert await world.svc.journal.records(run_id) == records


async def test_redrive_reopens_the_run_and_it_resumes_from_its_journal(world: World) -> None:
    run_id = await submit(world)
    dead = await crash_until_dead(world)
    marked = await handle_dead_letter(world.svc, dead)
    assert marked is not None

    outcomes = await redrive(world.svc)

    assert [(o.run_id, o.action) for o in outcomes] == [(run_id, "redriven")]
    assert await world.queue.dead_letters() == []
    reopened = await world.svc.journal.get_run(run_id)
    assert reopened.status is RunStatus.QUEUED
    assert reopened.error is None
    assert reopened.finished_at is None
    assert reopened.paused_s >= marked.paused_s  # time in the DLQ is not working time

    # A worker takes the redriven message and finishes the run.
    (message,) = await world.queue.receive(wait_s=0)
    assert message.body == RunMessage(run_id=run_id)
    done = await execute_run(world.svc, run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.output == "sent it"
    # The journaled model call was not repeated; the interrupted tool ran again with the
    # same idempotency key.
    assert world.provider.calls_per_step[1] == 1
    keys = [c.ctx.idempotency_key for c in world.toolbox.calls("send_email")]
    assert len(keys) == 2
    assert keys[0] == keys[1]
    records = await world.svc.journal.records(run_id)
    assert_journal_consistent(records, done)
    statuses = [
        e.data["status"]
        for e in await world.svc.journal.events(run_id, limit=100)
        if e.type is EventType.RUN_STATUS
    ]
    assert statuses == ["queued", "running", "failed", "queued", "running", "succeeded"]
    assert [r.status for r in world.completed] == [RunStatus.FAILED, RunStatus.SUCCEEDED]


async def test_redrive_discards_what_cannot_run_again(world: World) -> None:
    # A run that finished on its own after its message went to the DLQ (the worker that
    # finished it could not delete the message).
    finished_id = await submit(world)
    finished_dead = await crash_until_dead(world)
    assert (await execute_run(world.svc, finished_id)).status is RunStatus.SUCCEEDED
    assert await handle_dead_letter(world.svc, finished_dead) is not None
    # A message for a run that does not exist.
    await world.queue.send(RunMessage(run_id="run_gone"))
    while len(await world.queue.dead_letters()) < 2:
        await world.queue.receive(wait_s=0)
    # A dead-lettered run of a thread: the thread moved on when it failed.
    world.toolbox.raise_next.clear()
    thread_run = await submit(world, thread_id="conversation-7")
    while len(await world.queue.dead_letters()) < 3:
        await world.queue.receive(wait_s=0)
    (thread_dead,) = [m for m in await world.queue.dead_letters() if m.body.run_id == thread_run]
    assert await handle_dead_letter(world.svc, thread_dead) is not None
    thread = await world.svc.control.get_thread("acme", "conversation-7")
    assert thread is not None
    assert not thread.busy  # freed when the run was marked failed

    outcomes = {o.run_id: o for o in await redrive(world.svc)}

    assert outcomes[finished_id].action == "discarded"
    assert outcomes[finished_id].reason == "the run already succeeded"
    assert outcomes["run_gone"].action == "discarded"
    assert outcomes[thread_run].action == "discarded"
    assert "thread" in str(outcomes[thread_run].reason)
    assert await world.queue.dead_letters() == []
    assert await world.queue.receive(wait_s=0) == []  # nothing went back to the runs queue
    assert (await world.svc.journal.get_run(thread_run)).status is RunStatus.FAILED


async def test_redrive_can_pick_runs_and_requeues_unmarked_ones(world: World) -> None:
    first = await submit(world)
    second = await submit(world)
    while len(await world.queue.dead_letters()) < 2:
        await world.queue.receive(wait_s=0)
    listed = await list_dead_letters(world.svc)
    assert sorted(d.run_id for d in listed) == sorted([first, second])
    assert all(d.run is not None and d.run.status is RunStatus.QUEUED for d in listed)

    outcomes = await redrive(world.svc, run_ids={second})

    # Not marked yet (nobody handled the dead letter): sent back as it is.
    assert [(o.run_id, o.action) for o in outcomes] == [(second, "requeued")]
    assert [m.body.run_id for m in await world.queue.dead_letters()] == [first]
    assert [m.body.run_id for m in await world.queue.receive(wait_s=0)] == [second]


# ---- the Lambda entry (event-source mapping on the transit queue) ----------------------------


def dead_letter_event(run_id: str) -> dict[str, Any]:
    event = load_event("sqs_dead_letter.json")
    record = event["Records"][0]
    record["body"] = record["body"].replace("RUN_ID", run_id)
    return event


def test_handler_marks_the_run_and_keeps_the_message_in_the_dlq(world: World) -> None:
    run_id = run_sync(submit(world))
    sink = MemoryQueue()
    dlq_function.configure(world.svc, dlq=sink)
    event = dead_letter_event(run_id)
    message_id = event["Records"][0]["messageId"]

    response = dlq_function.handler(event)

    assert response == {"batchItemFailures": [], "settled": {message_id: "kept"}}
    run = run_sync(world.svc.journal.get_run(run_id))
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == DEAD_LETTERED
    assert "received 6 times" in run.error.message  # the record's ApproximateReceiveCount
    (kept,) = run_sync(sink.receive(wait_s=0))
    assert kept.body == RunMessage(run_id=run_id)


def test_handler_reports_what_must_be_delivered_again(world: World) -> None:
    leased = run_sync(submit(world))
    run_sync(world.svc.journal.acquire_lease(leased, "live-worker", 30))
    sink = MemoryQueue()
    dlq_function.configure(world.svc, dlq=sink)
    leased_record = dead_letter_event(leased)["Records"][0]
    garbage = {**leased_record, "messageId": "garbage", "body": '{"hello": "world"}'}
    unknown = {**dead_letter_event("run_unknown")["Records"][0], "messageId": "unknown"}

    response = dlq_function.handler({"Records": [leased_record, garbage, unknown]})

    assert response["batchItemFailures"] == [
        {"itemIdentifier": leased_record["messageId"]},
        {"itemIdentifier": "garbage"},
    ]
    assert response["settled"] == {leased_record["messageId"]: "retry", "unknown": "dropped"}
    assert run_sync(world.svc.journal.get_run(leased)).status is RunStatus.QUEUED
    assert run_sync(sink.receive(wait_s=0)) == []


# ---- moto: runs queue → transit queue → this function → DLQ → redrive ------------------------


@dataclass
class Queues:
    sqs: Any
    runs: str
    transit: str
    dlq: str
    transit_arn: str


@pytest.fixture
def queues(stack: DeployedStack) -> Queues:
    """The stack's runs queue → transit ("failed") queue → DLQ chain (``STACK_SETTINGS``: the
    runs queue moves a message on after MAX_RECEIVES receives; the DLQ's visibility timeout
    is 0, so a listed dead letter is visible again to redrive)."""
    sqs = aws_client("sqs", region=stack.region)
    transit = stack.outputs[c.OUTPUT_FAILED_QUEUE_URL]
    attrs = sqs.get_queue_attributes(QueueUrl=transit, AttributeNames=["QueueArn"])
    return Queues(
        sqs,
        runs=stack.outputs[c.OUTPUT_RUNS_QUEUE_URL],
        transit=transit,
        dlq=stack.outputs[c.OUTPUT_DLQ_URL],
        transit_arn=str(attrs["Attributes"]["QueueArn"]),
    )


def esm_event(sqs: Any, url: str, arn: str) -> dict[str, Any]:
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": arn.split(":")[3],
            }
            for m in got.get("Messages", [])
        ]
    }


def test_moto_dead_letter_round_trip(queues: Queues) -> None:
    runs_queue = SqsRunQueue(queues.runs, queues.dlq, client=queues.sqs)
    dlq_sink = SqsRunQueue(queues.dlq, client=queues.sqs)
    world = make_world(runs_queue)
    try:
        run_id = run_sync(submit(world))
        # Workers keep crashing before finishing: the message is received MAX_RECEIVES times.
        for _ in range(MAX_RECEIVES):
            (got,) = run_sync(runs_queue.receive(wait_s=0, visibility_s=0))
            assert got.body.run_id == run_id
        assert run_sync(runs_queue.receive(wait_s=0)) == []  # moved on to the transit queue

        # The event-source mapping hands it to the DLQ function.
        dlq_function.configure(world.svc, dlq=dlq_sink)
        event = esm_event(queues.sqs, queues.transit, queues.transit_arn)
        assert len(event["Records"]) == 1
        response = dlq_function.handler(event)
        assert response["batchItemFailures"] == []
        # Lambda deletes what was reported processed.
        record = event["Records"][0]
        queues.sqs.delete_message(QueueUrl=queues.transit, ReceiptHandle=record["receiptHandle"])

        run = run_sync(world.svc.journal.get_run(run_id))
        assert run.status is RunStatus.FAILED
        assert run.error is not None
        assert run.error.code == DEAD_LETTERED
        # Kept in the DLQ operators read.
        (listed,) = run_sync(list_dead_letters(world.svc))
        assert listed.run_id == run_id
        assert listed.run is not None
        assert listed.run.status is RunStatus.FAILED

        (outcome,) = run_sync(redrive(world.svc))
        assert outcome.action == "redriven"
        assert run_sync(list_dead_letters(world.svc)) == []
        (again,) = run_sync(runs_queue.receive(wait_s=0))
        assert again.body.run_id == run_id
        assert run_sync(execute_run(world.svc, run_id)).status is RunStatus.SUCCEEDED
        run_sync(runs_queue.delete(again.receipt))
    finally:
        runs_queue.close()
        dlq_sink.close()
