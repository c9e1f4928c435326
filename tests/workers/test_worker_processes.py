"""Real worker processes (``python -m workers.main``) on a moto server, killed and stopped.

Every test runs its own moto server (DynamoDB + S3 + SQS: the stack's, deployed from the
synthesized template with a 2 s lease, ``shared.dal.local.deploy_template``) and its own fake
Messages API server; the workers use the real
Anthropic SDK against it, so every model call a worker makes is recorded here. The agents come
from ``tests.support.worker_agents`` (SWITCHYARD_AGENT_MODULES); their tool appends
``start|done <pid> <tool_use_id>`` to a trace file. Each journal record carries the fence of
the lease it was written under, which tells which worker journaled what.

Everything waits on observable state (worker logs, the trace, the journal, queue contents)
with a bound; nothing sleeps for a fixed time and hopes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import constants as c
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.dal import aws_client
from shared.dal.sqs import SqsRunQueue
from shared.journal.dynamodb import DynamoJournal
from shared.logic.dlq import DEAD_LETTERED, handle_dead_letter
from shared.logic.runs import SubmitRun, submit_run
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import RunStatus
from shared.queue import QueueMessage, RunMessage
from shared.wiring import build_services
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Reply,
    ScriptItem,
    StepLoopResponder,
    assistant_turns,
)
from tests.support.moto_server import template_on_moto_server
from tests.support.worker_agents import TOOL_SECONDS_ENV, TRACE_ENV, poison, read_trace, stepper

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LEASE_TTL_S = 2
DRAIN_TIMEOUT_S = 5.0
MODEL_DELAY_S = 0.1
TOOL_S = 0.1
STEPS = 10
DUMMY_KEY = "sk-ant-test-dummy-0123456789abcdef"
READY_TIMEOUT_S = 30.0


class SlowSteps(StepLoopResponder):
    """The step-loop model, answering each call after ``delay_s``."""

    def __init__(self, steps: int, delay_s: float) -> None:
        super().__init__(steps, tool_name="step")
        self.delay_s = delay_s

    def __call__(self, body: dict[str, Any]) -> ScriptItem:
        reply = super().__call__(body)
        assert isinstance(reply, Reply)
        return dataclasses.replace(reply, delay_s=self.delay_s)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for raw in self.log.read_text().splitlines():
            if raw.startswith("{"):
                try:
                    out.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue
        return out

    def said(self, message: str) -> bool:
        return any(line.get("message") == message for line in self.lines())

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-15:])


@dataclass
class Stack:
    env: dict[str, str]
    settings: Settings
    journal: DynamoJournal
    queue: SqsRunQueue
    fake: FakeAnthropicServer
    tmp: Path
    trace: Path
    workers: list[Worker] = field(default_factory=list)

    def spawn(self, **extra_env: str) -> Worker:
        n = len(self.workers)
        log = self.tmp / f"worker-{n}.log"
        env = {
            **os.environ,
            **self.env,
            "SWITCHYARD_WORKER_HEALTH_FILE": str(self.tmp / f"health-{n}"),
            "PYTHONPATH": str(ROOT),
            **extra_env,
        }
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workers.main"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    async def ready(self, *workers: Worker) -> None:
        for worker in workers:
            await eventually(
                functools.partial(_ready, worker),
                within=READY_TIMEOUT_S,
                what=f"worker {worker.pid}",
            )

    async def submit(self, agent: str = "stepper") -> str:
        registry = AgentRegistry([stepper, poison])
        run = await submit_run(self.journal, registry, SubmitRun(agent=agent, input="go"))
        await self.queue.send(RunMessage(run_id=run.run_id))
        return run.run_id

    async def records(self, run_id: str) -> list[JournalRecord]:
        return await self.journal.records(run_id)

    def model_calls(self) -> Counter[int]:
        """How many model calls were made for each step (step = assistant turns + 1)."""
        return Counter(assistant_turns(b) + 1 for b in self.fake.message_bodies())

    def tool_starts(self) -> list[tuple[int, str]]:
        return [(pid, tid) for event, pid, tid in read_trace(self.trace) if event == "start"]

    def queue_depth(self) -> int:
        sqs = aws_client("sqs", region=self.settings.region)
        attrs = sqs.get_queue_attributes(
            QueueUrl=self.settings.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())


async def _ready(worker: Worker) -> bool:
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited with {worker.proc.returncode}:\n{worker.tail()}")
    return worker.said("worker ready")


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
def max_receive_count() -> int:
    return 5


@pytest.fixture
async def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_receive_count: int
) -> AsyncIterator[Stack]:
    stack_settings = {
        "lease_ttl_s": LEASE_TTL_S,
        "queues": {"max_receive_count": max_receive_count},
    }
    with (
        template_on_moto_server(stack_settings) as deployed,
        FakeAnthropicServer(SlowSteps(STEPS, MODEL_DELAY_S)) as fake,
    ):
        deployed_settings = deployed.settings()
        base = {
            "AWS_ENDPOINT_URL": str(deployed.endpoint_url),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "SWITCHYARD_TABLE": deployed_settings.table_name,
            "SWITCHYARD_BUCKET": deployed_settings.bucket_name,
        }
        for key, value in base.items():
            monkeypatch.setenv(key, value)
        trace = tmp_path / "trace.txt"
        env = {
            **base,
            "SWITCHYARD_QUEUE_URL": deployed_settings.queue_url,
            "SWITCHYARD_DLQ_URL": deployed_settings.dlq_url,
            "SWITCHYARD_AGENT_MODULES": "tests.support.worker_agents",
            "SWITCHYARD_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY": DUMMY_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "SWITCHYARD_LEASE_TTL_S": str(LEASE_TTL_S),
            "SWITCHYARD_WORKER_RECEIVE_WAIT_S": "1",
            "SWITCHYARD_WORKER_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
            "SWITCHYARD_WORKER_THREAD_BACKOFF_S": "1",
            "SWITCHYARD_LOG_LEVEL": "INFO",
            TRACE_ENV: str(trace),
            TOOL_SECONDS_ENV: str(TOOL_S),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env()
        journal = DynamoJournal.from_settings(settings, max_workers=4)
        # The test's view of dead letters is where the runs queue redrives them: the stack's
        # transit queue, which its DLQ function reads (moto runs no function: the test does).
        transit = deployed.outputs[c.OUTPUT_FAILED_QUEUE_URL]
        queue = SqsRunQueue(settings.queue_url, transit, region=settings.region, max_workers=2)
        s = Stack(env, settings, journal, queue, fake, tmp_path, trace)
        try:
            yield s
        finally:
            for worker in s.workers:
                if worker.proc.poll() is None:
                    worker.proc.kill()
                worker.proc.wait(timeout=10)
            queue.close()
            journal.close()


# ---- assertions ------------------------------------------------------------------------------


def assert_journal_well_formed(records: list[JournalRecord], steps: int) -> None:
    model_steps = [r.step for r in records if r.kind is RecordKind.MODEL]
    assert model_steps == list(range(1, steps + 2)), "each step journaled exactly once, in order"
    results = [res.tool_use_id for r in records for res in r.tool_results]
    assert sorted(results) == [f"toolu_{s:04d}" for s in range(1, steps + 1)], (
        "each tool result journaled exactly once"
    )


def assert_nothing_journaled_repeated(
    stack: Stack, records: list[JournalRecord], *, first_fence: int, first_pid: int
) -> None:
    """What the first worker journaled was never done again by anyone."""
    calls = stack.model_calls()
    starts = Counter(tid for _, tid in stack.tool_starts())
    for record in records:
        if record.fence != first_fence:
            continue
        if record.kind is RecordKind.MODEL:
            assert calls[record.step] == 1, f"journaled model call of step {record.step} repeated"
        for result in record.tool_results:
            assert starts[result.tool_use_id] == 1, f"journaled {result.tool_use_id} re-executed"
            assert (first_pid, result.tool_use_id) in stack.tool_starts()
    # Anything else was done at most twice: once by the worker that stopped, once on resume.
    assert max(calls.values()) <= 2
    assert max(starts.values()) <= 2


async def executing_worker(stack: Stack, candidates: list[Worker]) -> Worker:
    """The worker whose process ran the run's first tool call."""

    async def started() -> bool:
        return bool(stack.tool_starts())

    await eventually(started, within=20, what="the first tool call")
    pid = stack.tool_starts()[0][0]
    [worker] = [w for w in candidates if w.pid == pid]
    return worker


async def tool_started(stack: Stack, pid: int, tool_use_id: str) -> None:
    async def check() -> bool:
        return (pid, tool_use_id) in stack.tool_starts()

    await eventually(check, within=20, what=f"{tool_use_id} started by {pid}")


async def run_status(stack: Stack, run_id: str, status: RunStatus, *, within: float) -> None:
    async def check() -> bool:
        return (await stack.journal.get_run(run_id)).status is status

    await eventually(check, within=within, what=f"run {status.value}")


# ---- the scenarios ---------------------------------------------------------------------------


async def test_a_run_survives_its_worker_being_killed(stack: Stack) -> None:
    workers = [stack.spawn(), stack.spawn()]
    await stack.ready(*workers)
    run_id = await stack.submit()
    first = await executing_worker(stack, workers)
    [second] = [w for w in workers if w is not first]
    await tool_started(stack, first.pid, "toolu_0004")  # mid-run, mid-tool
    first.proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await asyncio.to_thread(first.proc.wait, 10)

    await run_status(stack, run_id, RunStatus.SUCCEEDED, within=30)
    records = await stack.records(run_id)
    assert_journal_well_formed(records, STEPS)
    fences = sorted({r.fence for r in records if r.fence})
    assert len(fences) == 2, fences
    resumed = next(r for r in records if r.kind is RecordKind.STARTED and r.fence == fences[1])
    assert resumed.events[0].data["resumed"] is True
    assert resumed.events[0].data["worker"].endswith(f"-{second.pid}")
    # Crash -> resumed step within the lease period (plus the poll and process latencies).
    resume_s = resumed.at.timestamp() - killed_at
    print(f"crash -> resumed in {resume_s:.2f} s (lease {LEASE_TTL_S} s)")
    assert resume_s <= LEASE_TTL_S + 1.5, f"resumed {resume_s:.2f} s after the kill"
    assert_nothing_journaled_repeated(stack, records, first_fence=fences[0], first_pid=first.pid)

    async def acked() -> bool:
        return stack.queue_depth() == 0

    await eventually(acked, within=15, what="the message deleted")


async def test_a_message_delivered_twice_runs_once(stack: Stack) -> None:
    workers = [stack.spawn(), stack.spawn()]
    await stack.ready(*workers)
    run_id = await stack.submit()
    await stack.queue.send(RunMessage(run_id=run_id))  # the duplicate

    await run_status(stack, run_id, RunStatus.SUCCEEDED, within=30)

    async def both_acked() -> bool:
        return stack.queue_depth() == 0

    await eventually(both_acked, within=20, what="both copies deleted")
    records = await stack.records(run_id)
    assert_journal_well_formed(records, STEPS)
    assert [r.kind for r in records].count(RecordKind.STARTED) == 1, "executed once"
    assert set(stack.model_calls().values()) == {1}
    starts = Counter(tid for _, tid in stack.tool_starts())
    assert set(starts.values()) == {1}
    assert len(starts) == STEPS


@pytest.mark.parametrize("max_receive_count", [2])
async def test_a_poison_run_ends_in_the_dlq(stack: Stack, max_receive_count: int) -> None:
    worker = stack.spawn()
    await stack.ready(worker)
    run_id = await stack.submit("poison")
    dead: list[QueueMessage] = []

    async def in_dlq() -> bool:
        dead.extend(await stack.queue.dead_letters())
        return bool(dead)

    await eventually(in_dlq, within=30, what="the message in the DLQ")
    [letter] = dead
    assert letter.body.run_id == run_id
    assert letter.receive_count >= max_receive_count
    # Each delivery was one attempt, and each attempt crashed in the tool.
    assert len(stack.tool_starts()) == max_receive_count
    crashes = [line for line in worker.lines() if line.get("error_type") == "ToolCrash"]
    assert len(crashes) == max_receive_count
    assert all(line["run_id"] == run_id and line["agent"] == "poison" for line in crashes)
    run = await stack.journal.get_run(run_id)
    assert run.status is RunStatus.QUEUED  # every attempt gave its lease back

    # The DLQ handler marks it failed, with the reason.
    svc = build_services(stack.settings, backend="aws")
    failed = await handle_dead_letter(svc, letter)
    assert failed is not None
    assert failed.status is RunStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == DEAD_LETTERED
    assert "dead-letter queue" in failed.error.message
    assert failed.error.details is not None
    assert failed.error.details["receive_count"] == letter.receive_count
    stored = await stack.journal.get_run(run_id)
    assert stored.status is RunStatus.FAILED
    assert stored.error == failed.error


async def test_sigterm_mid_run_loses_nothing(stack: Stack) -> None:
    workers = [stack.spawn(), stack.spawn()]
    await stack.ready(*workers)
    run_id = await stack.submit()
    first = await executing_worker(stack, workers)
    [second] = [w for w in workers if w is not first]
    await tool_started(stack, first.pid, "toolu_0003")
    first.proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    code = await asyncio.to_thread(first.proc.wait, DRAIN_TIMEOUT_S + 10)
    took = time.monotonic() - stopped
    assert code == 0, first.tail()
    print(f"SIGTERM -> exit 0 in {took:.2f} s (drain timeout {DRAIN_TIMEOUT_S} s)")
    assert took < DRAIN_TIMEOUT_S, f"exited {took:.1f} s after SIGTERM"
    assert first.said("run handed over at a step boundary (draining)"), first.tail()

    await run_status(stack, run_id, RunStatus.SUCCEEDED, within=30)
    records = await stack.records(run_id)
    assert_journal_well_formed(records, STEPS)
    fences = sorted({r.fence for r in records if r.fence})
    assert len(fences) == 2
    resumed = next(r for r in records if r.kind is RecordKind.STARTED and r.fence == fences[1])
    assert resumed.events[0].data["worker"].endswith(f"-{second.pid}")
    assert_nothing_journaled_repeated(stack, records, first_fence=fences[0], first_pid=first.pid)
    # Handed over at a boundary: the tool it was running was journaled, not done again.
    assert Counter(tid for _, tid in stack.tool_starts())["toolu_0003"] == 1
    # Every line about the run carries its fields.
    started = [line for line in first.lines() if line.get("message") == "executing run"]
    assert started
    assert all(
        line["run_id"] == run_id and line["tenant"] == "default" and line["agent"] == "stepper"
        for line in started
    )
