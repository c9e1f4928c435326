"""In-flight runs one worker process holds at 2 s model latency, and what that costs.

The real consumer (``workers.consumer.Consumer``: receive, execute via ``shared.logic``, heartbeat
hook, ack late, structured logs and EMF metrics included) runs in this process with its
concurrency set to the target, on the in-memory queue, journal and control store. Those stand
in for SQS and DynamoDB because moto is far slower than both (about 100-250 SQS operations per
second, see the project notes): a moto run would measure moto. The model is a fake with a fixed
latency (default 2 s); each run makes ``--steps`` tool calls and one final answer.

``--runs`` (default 3 x the concurrency) are submitted up front, so the queue keeps a backlog
for about two waves and the consumer stays saturated.

Figures:
- ``max_in_flight`` / ``steady_in_flight``: runs executing at once (sampled every 0.1 s; steady
  is the median while a backlog remained, after the first model latency of ramp-up).
- ``step_dispatch_lag_ms`` p50/p99: from the moment a model reply was due (its call started +
  the latency) to the moment the same run's next model call started. It holds journaling the
  reply, running the tool and the event loop's queueing delay: the worker's own cost per step.
- ``cpu_s`` (user + system, from the first submit to the last run) and ``peak_rss_mb``
  (``ru_maxrss``, with the modules a real worker imports loaded: the SDK, boto3, AWS backends).

Target: >= 500 runs in flight below 1 GB RSS (``meets_target``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.logic.service import create_run
from shared.models.api import RunCreate
from shared.models.messages import ModelRequest, ModelResponse
from shared.models.run import Run, RunStatus, Shape
from shared.queue import MemoryQueue
from shared.wiring import build_services
from tests.support.loop_agent import LoopProvider, loop_agent
from workers.consumer import Consumer, ConsumerOptions

TARGET_IN_FLIGHT = 500
TARGET_RSS_MB = 1024
SAMPLE_S = 0.1
TENANT = "bench"


class TimedProvider(LoopProvider):
    """The loop agent's model, noting when each run's calls start (run = its input text)."""

    def __init__(self, steps: int, *, latency_s: float) -> None:
        super().__init__(steps, payload=200, latency_s=latency_s)
        self.starts: dict[str, list[float]] = defaultdict(list)

    async def complete(self, request: ModelRequest) -> ModelResponse:
        first = request.messages[0]["content"]
        key = first if isinstance(first, str) else json.dumps(first)
        self.starts[key].append(time.monotonic())
        return await super().complete(request)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_worker_modules() -> None:
    """Import what a real worker process holds in memory (the Anthropic SDK, boto3 and the AWS
    backends), so the RSS figure is a worker's and not only this benchmark's."""
    import shared.dal.sqs
    import shared.journal.dynamodb
    import shared.providers.anthropic
    import shared.tenancy.dynamodb

    shared.dal.aws_client("sqs", region="us-east-1")
    shared.dal.aws_client("dynamodb", region="us-east-1")


async def measure(runs: int, concurrency: int, steps: int, latency_s: float) -> dict[str, Any]:
    settings = Settings(worker_concurrency=concurrency, worker_receive_wait_s=1.0)
    agent = loop_agent(steps, name="bench-loop")
    svc = build_services(settings, backend="memory", registry=AgentRegistry([agent]))
    queue = MemoryQueue(visibility_s=30, max_receive_count=5)
    svc.queue = queue
    provider = TimedProvider(steps, latency_s=latency_s)
    svc.make_provider = lambda: provider
    consumer = Consumer(svc, ConsumerOptions.from_services(svc))
    done: list[str] = []
    all_done = asyncio.Event()

    def completed(run: Run) -> None:
        done.append(run.run_id)
        if len(done) >= runs:
            all_done.set()

    svc.on_complete = completed

    cpu_before = cpu_s()
    started = time.monotonic()
    run_ids = []
    for i in range(runs):
        body = RunCreate(agent=agent.name, input=f"run-{i}", mode=Shape.ASYNC)
        run_ids.append((await create_run(svc, TENANT, body)).run.run_id)
    submit_s = time.monotonic() - started

    samples: list[tuple[float, int, int]] = []  # (time, in flight, backlog)

    async def sample() -> None:
        while True:
            samples.append(
                (time.monotonic(), consumer.in_flight, queue.depth() - consumer.in_flight)
            )
            await asyncio.sleep(SAMPLE_S)

    sampler = asyncio.create_task(sample())
    consuming = asyncio.create_task(consumer.run())
    consume_started = time.monotonic()
    # Generous bound: ten times the ideal wall time.
    bound_s = 10 * latency_s * (steps + 1) * (runs / concurrency + 1)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), timeout=bound_s)
    wall_s = time.monotonic() - consume_started
    consumer.stop()
    await consuming
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler

    statuses = [(await svc.journal.get_run(r)).status for r in run_ids]
    succeeded = sum(1 for s in statuses if s is RunStatus.SUCCEEDED)
    ramp_end = consume_started + latency_s
    steady = [n for t, n, backlog in samples if t >= ramp_end and backlog > 0]
    lags = [
        (later - (earlier + latency_s)) * 1000
        for starts in provider.starts.values()
        for earlier, later in itertools.pairwise(starts)
    ]
    steady_in_flight = int(statistics.median(steady)) if steady else 0
    rss = peak_rss_mb()
    return {
        "benchmark": "worker_concurrency",
        "backend": "memory (queue, journal, control store in-process; moto would be the "
        "bottleneck at ~100-250 SQS ops/s)",
        "model_latency_s": latency_s,
        "steps_per_run": steps + 1,
        "runs": runs,
        "runs_succeeded": succeeded,
        "concurrency": concurrency,
        "max_in_flight": consumer.max_in_flight,
        "steady_in_flight": steady_in_flight,
        "steady_samples": len(steady),
        "step_dispatch_lag_ms": {
            "p50": round(percentile(lags, 50), 2),
            "p99": round(percentile(lags, 99), 2),
            "max": round(max(lags, default=0.0), 2),
            "steps": len(lags),
        },
        "submit_s": round(submit_s, 2),
        "wall_s": round(wall_s, 2),
        "runs_per_s": round(succeeded / wall_s, 1) if wall_s else 0.0,
        "cpu_s": round(cpu_s() - cpu_before, 2),
        "peak_rss_mb": round(rss, 1),
        "target_in_flight": TARGET_IN_FLIGHT,
        "target_rss_mb": TARGET_RSS_MB,
        "meets_target": steady_in_flight >= TARGET_IN_FLIGHT
        and rss < TARGET_RSS_MB
        and succeeded == runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=TARGET_IN_FLIGHT)
    parser.add_argument("--runs", type=int, default=0, help="default: 3 x concurrency")
    parser.add_argument("--steps", type=int, default=3, help="tool steps per run")
    parser.add_argument("--latency-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    runs = args.runs or 3 * args.concurrency
    load_worker_modules()
    # The worker logs every run and emits EMF metrics on stdout; keep that cost, drop the text.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        result = asyncio.run(measure(runs, args.concurrency, args.steps, args.latency_s))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
