"""The consumer in-process, on the memory backend: what it does with each kind of message.

The multi-process behaviour (real worker processes on a moto server, SIGKILL and SIGTERM) is
in ``test_worker_processes.py``; these check the same rules quickly and deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.gateway import ModelGateway
from shared.logic.service import Services, create_run
from shared.models.api import OnConflict, RunCreate
from shared.models.run import RunStatus, Shape
from shared.queue import MemoryQueue, QueueMessage, RunMessage
from shared.wiring import build_services
from tests.support.worker_agents import TRACE_ENV, StepProvider, poison, read_trace, stepper
from workers import health as health_check
from workers.consumer import Consumer, ConsumerOptions, Outcome
from workers.health import HealthFile

TENANT = "acme"


class RecordingQueue:
    """A MemoryQueue that records visibility changes and sends."""

    def __init__(self, inner: MemoryQueue) -> None:
        self.inner = inner
        self.visibility: list[tuple[str, int]] = []
        self.sent: list[tuple[RunMessage, int]] = []
        self.received = 0

    async def send(self, message: RunMessage, *, delay_s: int = 0) -> str:
        self.sent.append((message, delay_s))
        return await self.inner.send(message, delay_s=delay_s)

    async def receive(
        self, *, max_messages: int = 10, wait_s: float = 20.0, visibility_s: int | None = None
    ) -> list[QueueMessage]:
        got = await self.inner.receive(
            max_messages=max_messages, wait_s=wait_s, visibility_s=visibility_s
        )
        self.received += len(got)
        return got

    async def delete(self, receipt: str) -> None:
        await self.inner.delete(receipt)

    async def change_visibility(self, receipt: str, timeout_s: int) -> None:
        self.visibility.append((receipt, timeout_s))
        await self.inner.change_visibility(receipt, timeout_s)

    async def dead_letters(self, *, max_messages: int = 10) -> list[QueueMessage]:
        return await self.inner.dead_letters(max_messages=max_messages)

    async def delete_dead_letter(self, receipt: str) -> None:
        await self.inner.delete_dead_letter(receipt)

    async def redrive(self, message: QueueMessage) -> str:
        return await self.inner.redrive(message)


class Harness:
    def __init__(
        self,
        *,
        steps: int = 3,
        latency_s: float = 0.0,
        lease_ttl_s: float = 0.6,
        max_receive_count: int = 5,
        **settings: Any,
    ) -> None:
        defaults: dict[str, Any] = {
            "lease_ttl_s": lease_ttl_s,
            "worker_receive_wait_s": 0.1,
            "worker_drain_timeout_s": 5.0,
            "worker_thread_backoff_s": 1,
        }
        self.settings = Settings(**{**defaults, **settings})
        self.svc: Services = build_services(
            self.settings, backend="memory", registry=AgentRegistry([stepper, poison])
        )
        self.memory = MemoryQueue(visibility_s=30, max_receive_count=max_receive_count)
        self.queue = RecordingQueue(self.memory)
        self.svc.queue = self.queue
        self.provider = StepProvider(steps, latency_s=latency_s)
        self.svc.make_provider = lambda: self.provider
        self.consumers: list[tuple[Consumer, asyncio.Task[None]]] = []

    async def submit(self, agent: str = "stepper", **body: Any) -> str:
        submitted = await create_run(
            self.svc, TENANT, RunCreate(agent=agent, input="go", mode=Shape.ASYNC, **body)
        )
        return submitted.run.run_id

    def start(self, *, health: HealthFile | None = None, **options: Any) -> Consumer:
        """A new worker on the same stores: its own Services, hence its own runtime (a
        drained runtime stays drained, like the process it belongs to)."""
        base = ConsumerOptions.from_services(self.svc)
        opts = ConsumerOptions(**{**base.__dict__, **options})
        svc = dataclasses.replace(self.svc, _runtime=None)
        consumer = Consumer(svc, opts, health=health)
        self.consumers.append((consumer, asyncio.create_task(consumer.run())))
        return consumer

    async def stop_all(self) -> None:
        for consumer, task in self.consumers:
            consumer.stop()
            await asyncio.wait_for(task, timeout=15)
        self.consumers.clear()

    async def status(self, run_id: str) -> RunStatus:
        return (await self.svc.journal.get_run(run_id)).status


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


def finished(h: Harness, run_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await h.status(run_id)).is_terminal

    return check


@pytest.fixture
def trace_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trace.txt"
    monkeypatch.setenv(TRACE_ENV, str(path))
    monkeypatch.setenv("SWITCHYARD_TEST_TOOL_S", "0.01")
    return path


# ---- acking ----------------------------------------------------------------------------------


async def test_a_run_is_executed_and_its_message_deleted(trace_file: Path) -> None:
    h = Harness(steps=3)
    run_id = await h.submit()
    consumer = h.start()
    await eventually(finished(h, run_id))
    await h.stop_all()
    run = await h.svc.journal.get_run(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert h.memory.depth() == 0
    assert consumer.outcomes[Outcome.FINISHED] == 1
    assert h.provider.calls == {1: 1, 2: 1, 3: 1, 4: 1}


async def test_a_message_for_a_finished_run_is_deleted_without_work(trace_file: Path) -> None:
    h = Harness(steps=2)
    run_id = await h.submit()
    consumer = h.start()
    await eventually(finished(h, run_id))
    await h.queue.send(RunMessage(run_id=run_id))  # delivered again, late

    async def drained() -> bool:
        return h.memory.depth() == 0 and consumer.outcomes[Outcome.DUPLICATE] == 1

    await eventually(drained)
    await h.stop_all()
    assert h.provider.calls == {1: 1, 2: 1, 3: 1}


async def test_the_same_run_sent_twice_runs_once(trace_file: Path) -> None:
    h = Harness(steps=4, latency_s=0.05)
    run_id = await h.submit()
    await h.queue.send(RunMessage(run_id=run_id))
    consumer = h.start()
    await eventually(finished(h, run_id))

    async def drained() -> bool:
        return h.memory.depth() == 0

    await eventually(drained)
    await h.stop_all()
    assert h.provider.calls == {step: 1 for step in range(1, 6)}
    assert [e for e, _, _ in read_trace(trace_file)].count("start") == 4
    assert consumer.outcomes[Outcome.FINISHED] == 1
    assert consumer.outcomes[Outcome.DUPLICATE] == 1


async def test_a_message_for_a_missing_run_is_deleted(trace_file: Path) -> None:
    h = Harness()
    await h.queue.send(RunMessage(run_id="no-such-run"))
    consumer = h.start()

    async def gone() -> bool:
        return h.memory.depth() == 0

    await eventually(gone)
    await h.stop_all()
    assert consumer.outcomes[Outcome.MISSING] == 1


async def test_heartbeats_keep_a_long_run_hidden(trace_file: Path) -> None:
    # The run lasts several lease periods; without extensions it would reappear after 1 s.
    h = Harness(steps=12, latency_s=0.1, lease_ttl_s=0.6)
    run_id = await h.submit()
    consumer = h.start()
    await eventually(finished(h, run_id))
    await h.stop_all()
    extensions = [t for _, t in h.queue.visibility if t == consumer.options.visibility_s]
    assert len(extensions) >= 3
    assert consumer.outcomes[Outcome.REDELIVERED] == 0
    assert consumer.outcomes[Outcome.FINISHED] == 1
    assert h.provider.calls == {step: 1 for step in range(1, 14)}


async def test_a_message_that_comes_back_mid_run_is_kept_and_acked(trace_file: Path) -> None:
    h = Harness(steps=6, latency_s=0.1)
    run_id = await h.submit()
    consumer = h.start()

    async def running() -> bool:
        return await h.status(run_id) is RunStatus.RUNNING

    await eventually(running)
    # As if an extension had failed: the message being executed becomes visible again.
    entry = next(iter(h.memory._entries.values()))
    assert entry.receipt is not None
    await h.memory.change_visibility(entry.receipt, 0)
    await eventually(finished(h, run_id))

    async def gone() -> bool:
        return h.memory.depth() == 0

    await eventually(gone)
    await h.stop_all()
    assert consumer.outcomes[Outcome.REDELIVERED] == 1
    assert h.provider.calls == {step: 1 for step in range(1, 8)}


async def test_a_crashing_run_is_left_for_redelivery_then_dead(trace_file: Path) -> None:
    h = Harness(max_receive_count=2)
    run_id = await h.submit("poison")
    consumer = h.start()

    async def dead() -> bool:
        return len(await h.memory.dead_letters()) == 1

    await eventually(dead, within=15)
    await h.stop_all()
    assert consumer.outcomes[Outcome.ERROR] == 2
    [letter] = await h.memory.dead_letters()
    assert letter.body.run_id == run_id
    # Each attempt gave the lease back: the run waits, unfinished, for the DLQ handler.
    assert await h.status(run_id) is RunStatus.QUEUED
    assert [e for e, _, _ in read_trace(trace_file)] == ["start", "start"]


async def test_a_run_leased_elsewhere_waits_for_that_lease(trace_file: Path) -> None:
    h = Harness(steps=2)
    run_id = await h.submit()
    await h.svc.journal.acquire_lease(run_id, "someone-else", 1.5)
    consumer = h.start()
    await eventually(finished(h, run_id), within=10)
    await h.stop_all()
    assert consumer.outcomes[Outcome.LEASE_HELD] >= 1
    # Hidden until that lease would expire (1.5 s, rounded up), not for a whole period.
    hidden = [t for _, t in h.queue.visibility]
    assert 1 <= hidden[0] <= 2
    assert await h.status(run_id) is RunStatus.SUCCEEDED


async def test_a_run_waiting_for_its_thread_is_resent_not_burned(trace_file: Path) -> None:
    h = Harness(steps=5, latency_s=0.05, max_receive_count=2)
    first = await h.submit(thread_id="t-1")
    second = await h.submit(thread_id="t-1", on_conflict=OnConflict.ENQUEUE)
    consumer = h.start()
    await eventually(finished(h, second), within=15)
    await h.stop_all()
    assert await h.status(first) is RunStatus.SUCCEEDED
    assert await h.status(second) is RunStatus.SUCCEEDED
    assert consumer.outcomes[Outcome.THREAD_WAIT] >= 1
    resent = [(m.run_id, d) for m, d in h.queue.sent if d > 0]
    assert resent
    assert all(r == (second, 1) for r in resent)
    assert await h.memory.dead_letters() == []  # waiting never used up its receives


# ---- draining --------------------------------------------------------------------------------


async def test_stop_hands_runs_over_at_the_next_step_boundary(trace_file: Path) -> None:
    h = Harness(steps=20, latency_s=0.05)
    run_id = await h.submit()
    consumer = h.start()
    task = h.consumers[-1][1]

    async def two_steps() -> bool:
        return (await h.svc.journal.get_run(run_id)).status is RunStatus.RUNNING and (
            max(h.provider.calls, default=0) >= 3
        )

    await eventually(two_steps)
    stopped = time.monotonic()
    consumer.stop()
    await asyncio.wait_for(task, timeout=5)
    assert time.monotonic() - stopped < 1.0  # one step, not the whole run
    h.consumers.clear()
    assert consumer.outcomes[Outcome.HANDED_OVER] == 1
    run = await h.svc.journal.get_run(run_id)
    assert run.status is RunStatus.QUEUED
    # Visible again at once, for whichever worker polls next.
    [again] = await h.memory.receive(wait_s=0, visibility_s=1)
    assert again.body.run_id == run_id
    await h.memory.change_visibility(again.receipt, 0)

    h.start()
    await eventually(finished(h, run_id))
    await h.stop_all()
    assert await h.status(run_id) is RunStatus.SUCCEEDED
    # Nothing journaled was done again: every model call made once.
    assert h.provider.calls == {step: 1 for step in range(1, 22)}


async def test_drain_timeout_cancels_and_releases(
    trace_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_TEST_TOOL_S", "30")
    h = Harness(steps=2, worker_drain_timeout_s=0.3)
    run_id = await h.submit()
    consumer = h.start()

    async def in_tool() -> bool:
        return [e for e, _, _ in read_trace(trace_file)] == ["start"]

    await eventually(in_tool)
    stopped = time.monotonic()
    consumer.stop()
    await asyncio.wait_for(h.consumers[-1][1], timeout=5)
    h.consumers.clear()
    assert time.monotonic() - stopped < 2.0
    assert consumer.outcomes[Outcome.CANCELLED] == 1
    assert await h.status(run_id) is RunStatus.QUEUED  # lease released by the runtime
    [again] = await h.memory.receive(wait_s=0, visibility_s=1)
    assert again.body.run_id == run_id


async def test_concurrency_limit_bounds_in_flight_runs(trace_file: Path) -> None:
    h = Harness(steps=2, latency_s=0.05)
    run_ids = [await h.submit() for _ in range(9)]
    consumer = h.start(concurrency=3)
    for run_id in run_ids:
        await eventually(finished(h, run_id))
    await h.stop_all()
    assert consumer.max_in_flight == 3
    assert consumer.outcomes[Outcome.FINISHED] == 9


# ---- health ----------------------------------------------------------------------------------


async def test_the_loop_stamps_the_health_file(tmp_path: Path) -> None:
    path = tmp_path / "health"
    h = Harness()
    h.start(health=HealthFile(path))

    async def stamped() -> bool:
        return path.exists()

    await eventually(stamped)
    env = {"SWITCHYARD_WORKER_HEALTH_FILE": str(path), "SWITCHYARD_WORKER_HEALTH_MAX_AGE_S": "5"}
    assert health_check.main(env) == 0
    await h.stop_all()
    old = time.time() - 60
    os.utime(path, (old, old))
    assert health_check.main(env) == 1
    path.unlink()
    assert health_check.main(env) == 1


class Pressure(ModelGateway):
    """The gateway with its rate-limit pressure set by the test."""

    def __init__(self, provider: Any) -> None:
        super().__init__(provider)
        self.seconds = 0.0

    def pressure_s(self) -> float:
        return self.seconds


async def test_a_worker_takes_no_new_runs_while_rate_limits_would_make_them_wait() -> None:
    h = Harness(steps=1, backpressure_wait_s=1.0)
    consumer = h.start()
    gateway = Pressure(h.provider)
    consumer.svc.runtime().gateway = gateway
    gateway.seconds = 1.2  # a call would wait 1.2 s: more than the 1 s allowed
    run_id = await h.submit()
    await eventually(lambda: _true(consumer.held_back_ticks >= 3))
    # Held back: the run is still in the queue, nothing received it.
    assert await h.status(run_id) is RunStatus.QUEUED
    assert h.queue.received == 0
    gateway.seconds = 0.5  # within the allowance: the worker takes runs again
    await eventually(finished(h, run_id))
    assert await h.status(run_id) is RunStatus.SUCCEEDED
    await h.stop_all()


async def _true(value: bool) -> bool:
    return value
