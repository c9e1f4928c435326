"""100 concurrent runs across three worker processes against a rate-limited Messages API.

The fake Messages API server enforces limits the way the Anthropic API does (token buckets
per key and model: requests, input tokens and output tokens, ``max_tokens`` reserved at
admission, 429 with retry-after past them). The workers are real processes
(``python -m workers.main``) on a moto server with the stack's table and queues, using the
real SDK, and share the limits through the gateway's DynamoDB buckets (configured with the
same limits, ``SWITCHYARD_RATE_LIMITS``).

The limits are 50 requests and 15,000 input tokens per 10-second window: a minute
compressed six times (``SWITCHYARD_RATE_LIMIT_PERIOD_S`` and the server's ``period_s``), the
same arithmetic, so the test takes seconds instead of minutes. 100 runs of two model calls
each (one tool step, then the answer) need 200 requests: four windows' worth, so most calls
have to wait for the buckets. Every run must succeed, none may fail for a rate limit, and
the server's count of 429s is reported (it must stay near zero: the gateway waits before
the provider has to refuse).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.dal.sqs import SqsRunQueue
from shared.journal.dynamodb import DynamoJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.events import EventType
from shared.models.run import RunStatus
from shared.queue import RunMessage
from tests.support.fake_anthropic import FakeAnthropicServer, ServerLimits, StepLoopResponder
from tests.support.moto_server import template_on_moto_server
from tests.support.worker_agents import TOOL_SECONDS_ENV, stepper

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RUNS = 100
WORKERS = 3
PERIOD_S = 10.0
LIMITS = ServerLimits(requests=50, input_tokens=15_000, output_tokens=400_000, period_s=PERIOD_S)
DUMMY_KEY = "sk-ant-test-dummy-ratelimits-0123456789"
# 200 requests at 50 per window: about 30 s of refill after the first burst.
FINISH_WITHIN_S = 240.0
# "Near zero": the gateway's buckets and the server's agree up to clock and in-flight skew.
MAX_429 = 5


@dataclass
class Workers:
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def lines(self) -> Iterator[dict[str, Any]]:
        for log in self.logs:
            for raw in log.read_text().splitlines():
                if raw.startswith("{"):
                    try:
                        yield json.loads(raw)
                    except json.JSONDecodeError:
                        continue

    def tails(self) -> str:
        return "\n".join("\n".join(log.read_text().splitlines()[-10:]) for log in self.logs)


@dataclass
class Setup:
    journal: DynamoJournal
    queue: SqsRunQueue
    fake: FakeAnthropicServer
    workers: Workers


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    limits = {
        "default": {
            "requests": LIMITS.requests,
            "input_tokens": LIMITS.input_tokens,
            "output_tokens": LIMITS.output_tokens,
        }
    }
    with (
        template_on_moto_server({"lease_ttl_s": 6}) as deployed,
        FakeAnthropicServer(StepLoopResponder(1), limits=LIMITS) as fake,
    ):
        stack = deployed.settings()
        env = {
            "AWS_ENDPOINT_URL": str(deployed.endpoint_url),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "SWITCHYARD_TABLE": stack.table_name,
            "SWITCHYARD_BUCKET": stack.bucket_name,
            "SWITCHYARD_QUEUE_URL": stack.queue_url,
            "SWITCHYARD_DLQ_URL": stack.dlq_url,
            "SWITCHYARD_AGENT_MODULES": "tests.support.worker_agents",
            "SWITCHYARD_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY": DUMMY_KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "SWITCHYARD_LEASE_TTL_S": "6",
            "SWITCHYARD_WORKER_RECEIVE_WAIT_S": "1",
            "SWITCHYARD_WORKER_CONCURRENCY": "64",
            "SWITCHYARD_RATE_LIMITS": json.dumps(limits),
            "SWITCHYARD_RATE_LIMIT_PERIOD_S": str(PERIOD_S),
            "SWITCHYARD_LOG_LEVEL": "INFO",
            TOOL_SECONDS_ENV: "0.01",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings.from_env()
        journal = DynamoJournal.from_settings(settings, max_workers=8)
        queue = SqsRunQueue(settings.queue_url, settings.dlq_url, region=settings.region)
        workers = _spawn_workers(tmp_path)
        try:
            yield Setup(journal, queue, fake, workers)
        finally:
            for proc in workers.procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in workers.procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            queue.close()
            journal.close()


def _spawn_workers(tmp_path: Path) -> Workers:
    workers = Workers()
    for n in range(WORKERS):
        log = tmp_path / f"worker-{n}.log"
        with log.open("wb") as out:
            workers.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "workers.main"],
                    cwd=ROOT,
                    env={
                        **os.environ,
                        "PYTHONPATH": str(ROOT),
                        "SWITCHYARD_WORKER_HEALTH_FILE": str(tmp_path / f"health-{n}"),
                    },
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        workers.logs.append(log)
    return workers


async def _until(check: Any, *, within: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within} s\n{workers.tails()}")
        await asyncio.sleep(0.2)


async def test_100_concurrent_runs_across_workers_all_finish_without_429s(setup: Setup) -> None:
    workers = setup.workers

    async def ready() -> bool:
        for proc in workers.procs:
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited:\n{workers.tails()}")
        return sum(1 for line in workers.lines() if line.get("message") == "worker ready") == 3

    await _until(ready, within=60, what="workers ready", workers=workers)
    registry = AgentRegistry([stepper])
    started = time.monotonic()
    run_ids = []
    for _ in range(RUNS):
        run = await submit_run(setup.journal, registry, SubmitRun(agent="stepper", input="go"))
        run_ids.append(run.run_id)
    await asyncio.gather(*(setup.queue.send(RunMessage(run_id=r)) for r in run_ids))

    async def all_finished() -> bool:
        runs = await asyncio.gather(*(setup.journal.get_run(r) for r in run_ids))
        return all(run.status.is_terminal for run in runs)

    await _until(all_finished, within=FINISH_WITHIN_S, what="every run finished", workers=workers)
    elapsed = time.monotonic() - started
    runs = await asyncio.gather(*(setup.journal.get_run(r) for r in run_ids))
    statuses = Counter(run.status for run in runs)
    requests = len(setup.fake.message_bodies())
    rate_limited = setup.fake.rate_limited
    waits = [
        line
        for line in workers.lines()
        if line.get("message") == "model call waits for rate limits"
    ]
    print(  # the figures the issue asks to report
        f"\n{RUNS} runs on {WORKERS} workers: {dict(statuses)} in {elapsed:.1f}s; "
        f"{requests} requests, {rate_limited} answered 429 by the server "
        f"{dict(setup.fake.refused_by)}; "
        f"{len(waits)} gateway waits"
    )
    assert statuses == {RunStatus.SUCCEEDED: RUNS}, [r.error for r in runs if r.error]
    assert rate_limited <= MAX_429
    # The limits did bind: the server admits 50 at once and 5 a second after, so 200
    # requests took at least 30 s (without the gateway the workers send them in a few).
    assert elapsed >= (2 * RUNS - LIMITS.requests) * PERIOD_S / LIMITS.requests
    # Every run was in flight at once somewhere: spread over the three workers.
    owners: Counter[str] = Counter()
    for run_id in run_ids:
        events = await setup.journal.events(run_id, limit=50)
        for event in events:
            if event.type is EventType.RUN_STATUS and event.data.get("worker"):
                owners[event.data["worker"]] += 1
                break
    assert len(owners) == WORKERS, owners
    # Each run made its two calls (a call is repeated only when a lease expired before its
    # step was journaled, as on a loaded machine; never because it waited).
    assert requests - rate_limited >= 2 * RUNS
