"""AWS cost per 1,000 runs, from the AWS requests real runs make on the local stack.

The local stack (`make dev`: ``python -m shared.cli dev``) is started in a subprocess with
``SWITCHYARD_AGENT_MODULES=benchmarks.agents`` (the benchmark's agents and pipeline,
``benchmarks/agents.py``) and ``--latency 0`` (the offline model answers at once). Every AWS
call of its processes (API function, authorizer, workers, pipeline function, Step Functions'
task states) reaches its one moto server, whose request meter (``devstack.metering``,
``GET``/``DELETE /_local/metering``) counts them: requests by service and operation, DynamoDB
request units from the item images, SQS 64 KB chunks, S3 bytes, Lambda invocations, Step
Functions state transitions, and the storage the runs leave behind.

Three shapes, each ``--runs`` runs (default 20) after ``--warmup`` runs (default 3), the meter
reset between them, driven over HTTP as a client would:

- ``sync``: ``bench-sync-3`` (3 tool steps, small results), ``POST /v1/runs`` with
  ``mode: sync``: the finished run is the answer;
- ``async``: ``bench-async-10`` (10 tool steps of ~5 KB of JSON records; with
  ``--incompressible`` ``bench-async-10-incompressible``, random base64),
  ``POST /v1/runs`` with ``mode: async``, then once finished one ``GET /v1/runs/{id}``;
- ``pipeline``: ``bench-pipeline`` (function -> agent -> map of 3 agent runs -> function),
  ``POST /v1/jobs``, then once finished one ``GET /v1/jobs/{id}``.

The benchmark waits for the ends with reads the meter does not count (``UNMETERED``): the
client's cost is its submit and one read of the result.

Priced with ``benchmarks/prices.py`` (us-east-1, on-demand list prices):

- **infrastructure** (the target's figure) = requests (DynamoDB request units, S3, SQS,
  Lambda requests, API Gateway requests, Step Functions transitions, Secrets Manager) +
  storage (the DynamoDB items and index entries and S3 objects the runs leave, kept for the
  retention period, default 30 days). Empty SQS receives (idle long polls) are left out:
  they are a fixed cost per poller, reported under ``idle``;
- **logs**: the bytes the functions and workers logged (their log files grew by that much),
  ingested into CloudWatch Logs and kept 30 days, plus an estimate for the state machines'
  logs (level ALL: two events per state transition, ``--sfn-log-event-bytes`` each);
- **compute** (an estimate, not counted): Lambda duration (a sync run holds the API function
  for the whole run: ``model calls x --model-latency-s``, plus ``--lambda-overhead-s`` per
  invocation), Fargate for async runs and agent stages (the worker task's price over the runs
  it holds at once: ``SWITCHYARD_WORKER_CONCURRENCY`` x the scaling target utilization), and
  the lease heartbeats a run of that duration makes (one run-item update and one SQS
  visibility change per third of the 30 s lease);
- **tokens**: the runs' ``usage`` and ``cost_usd`` as the API reports them (the offline
  model's counts, priced at the agents' model's list price by the platform).

Every model call goes through the gateway's shared rate limits, as in a deployment: the stack
runs with ``SWITCHYARD_RATE_LIMITS`` (``--rate-limits``, default ``RATE_LIMITS``: a key with
room for this load), so the buckets' DynamoDB writes are counted, as are the usage counters'
(each process writes them every few seconds), one rate-limit write per model call unless
``--prefetch`` is above 1 (see docs/gateway.md). ``--rate-limits tier4`` uses a tier-4-sized key
(4,000 requests, 2,000,000 input and 400,000 output tokens a minute) that this load, with no
model latency, saturates: a write per model call, the limiter's most expensive regime.

Target (``meets_target``): async 10-step runs cost <= $0.03 of infrastructure per 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import prices
from benchmarks.agents import ASYNC_STEPS, SECTIONS, SYNC_STEPS
from benchmarks.local_throughput import Api, StackProcess, free_port, stack_command

TARGET_USD_PER_1000 = 0.03
AGENT_MODULE = "benchmarks.agents"
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 300.0
SETTLE_S = 1.5  # the meter must be still this long before a shape's figures are read
TERMINAL = {"succeeded", "failed", "cancelled"}
JOB_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
RETENTION_DAYS = 30  # the stack's retention_days (runs' and jobs' TTL)
BLOB_RETENTION_DAYS = 32  # overflow blobs expire retention + blob_expiry_margin_days
LOG_RETENTION_DAYS = 30  # the stack's log_retention_days
FREE_SERVICES = {"stepfunctions", "cloudformation", "ssm", "sts", "iam", "events", "logs"}

# Lambda memory per function (infra/config.py defaults), by the local function's name.
FUNCTION_MEMORY_MB = {
    "api-handler": 1024,
    "authorizer-handler": 512,
    "pipeline-handler": 1024,
    "dlq-handler": 512,
    "triggers-s3": 1024,
    "triggers-schedule": 1024,
}
API_FUNCTION = "api-handler"
WORKER_VCPU = 0.5  # infra/config.py WorkerSettings: cpu 512, memory 1024
WORKER_MEMORY_GB = 1.0
WORKER_CONCURRENCY = 64
WORKER_TARGET_UTILIZATION = 0.75
LEASE_TTL_S = 30.0  # the stack's lease_ttl_s; heartbeats every third of it


@dataclass(frozen=True)
class Assumptions:
    model_latency_s: float = 2.0
    lambda_overhead_s: float = 0.05
    sfn_log_event_bytes: int = 350

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_latency_s_per_call": self.model_latency_s,
            "lambda_overhead_s_per_invocation": self.lambda_overhead_s,
            "lambda_memory_mb": FUNCTION_MEMORY_MB,
            "fargate_task": f"{WORKER_VCPU} vCPU, {WORKER_MEMORY_GB} GB, arm64",
            "fargate_runs_per_task": WORKER_CONCURRENCY * WORKER_TARGET_UTILIZATION,
            "lease_ttl_s": LEASE_TTL_S,
            "heartbeat_every_s": LEASE_TTL_S / 3,
            "retention_days": RETENTION_DAYS,
            "blob_retention_days": BLOB_RETENTION_DAYS,
            "log_retention_days": LOG_RETENTION_DAYS,
            "sfn_log_events_per_transition": 2,
            "sfn_log_event_bytes": self.sfn_log_event_bytes,
        }


# ---- reading the stack without being counted -------------------------------------------------


class Observer:
    """Reads of the stack's table and Step Functions that its meter does not count."""

    def __init__(self, outputs: dict[str, str]) -> None:
        import boto3
        from botocore.config import Config

        from devstack.metering import UNMETERED
        from shared.dal.dynamodb import RunTable
        from shared.dal.s3 import BlobStore
        from shared.jobs.dynamodb import DynamoJobStore
        from shared.journal.dynamodb import DynamoJournal

        session = boto3.session.Session()
        config = Config(user_agent_extra=UNMETERED, max_pool_connections=32)
        common: dict[str, Any] = {
            "region_name": outputs["Region"],
            "endpoint_url": outputs["AwsEndpointUrl"],
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "config": config,
        }
        self.table = RunTable(outputs["TableName"], session.client("dynamodb", **common))
        blobs = BlobStore(outputs["BucketName"], session.client("s3", **common))
        self.journal = DynamoJournal(self.table, blobs)
        self.jobs = DynamoJobStore(self.table)
        self.sfn = session.client("stepfunctions", **common)
        self._lock = threading.Lock()

    def run_item(self, run_id: str) -> dict[str, Any] | None:
        from shared.dal.schema import RUN_SK, run_pk

        return self.table.get({"pk": run_pk(run_id), "sk": RUN_SK})

    def run(self, run_id: str) -> Any:
        with self._lock:  # one event loop at a time
            return asyncio.run(self.journal.get_run(run_id))

    def job_execution(self, job_id: str) -> str:
        with self._lock:
            return str(asyncio.run(self.jobs.get_job(job_id)).execution_arn)

    def execution_status(self, execution_arn: str) -> str:
        return str(self.sfn.describe_execution(executionArn=execution_arn)["status"])


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(interval_s)
    return False


# ---- one run of each shape -------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    model_calls: int = 0
    run_item_bytes: int = 0
    agent_runs: int = 0


def _usage(run: dict[str, Any]) -> dict[str, int]:
    usage = run.get("usage") or {}
    return {k: int(v) for k, v in usage.items() if k.endswith("tokens") and v is not None}


def _item_bytes(item: dict[str, Any] | None) -> int:
    from shared.dal.dynamodb import item_size

    return item_size(item) if item else 0


def run_sync(api: Api, observer: Observer, agent: str, index: int) -> Outcome:
    status, run = api.call(
        "POST", "/v1/runs", {"agent": agent, "input": f"Customer C-{index:04d}", "mode": "sync"}
    )
    if status != 200 or not isinstance(run, dict) or run.get("status") != "succeeded":
        return Outcome(False, f"sync submit: HTTP {status}: {str(run)[:200]}")
    size = _item_bytes(observer.run_item(run["run_id"]))
    return Outcome(
        True,
        usage=_usage(run),
        cost_usd=float(run.get("cost_usd") or 0.0),
        model_calls=int(run.get("steps") or 0),
        run_item_bytes=size,
        agent_runs=1,
    )


def run_async(api: Api, observer: Observer, agent: str, index: int) -> Outcome:
    status, answer = api.call(
        "POST", "/v1/runs", {"agent": agent, "input": f"Segment {index:04d}", "mode": "async"}
    )
    if status != 202 or not isinstance(answer, dict) or "run_id" not in answer:
        return Outcome(False, f"async submit: HTTP {status}: {str(answer)[:200]}")
    run_id = answer["run_id"]

    def finished() -> bool:
        item = observer.run_item(run_id)
        return item is not None and item.get("status") in TERMINAL

    if not wait_until(finished, RUN_TIMEOUT_S):
        return Outcome(False, f"run {run_id} did not finish")
    size = _item_bytes(observer.run_item(run_id))
    status, run = api.call("GET", f"/v1/runs/{run_id}")  # the client reads its result once
    if status != 200 or not isinstance(run, dict) or run.get("status") != "succeeded":
        return Outcome(False, f"run {run_id}: HTTP {status}: {str(run)[:200]}")
    return Outcome(
        True,
        usage=_usage(run),
        cost_usd=float(run.get("cost_usd") or 0.0),
        model_calls=int(run.get("steps") or 0),
        run_item_bytes=size,
        agent_runs=1,
    )


def run_pipeline(api: Api, observer: Observer, pipeline: str, index: int) -> Outcome:
    body = {"pipeline": pipeline, "input": {"topic": f"accounts batch {index:04d}"}}
    status, answer = api.call("POST", "/v1/jobs", body)
    if status not in (200, 201, 202) or not isinstance(answer, dict) or "job_id" not in answer:
        return Outcome(False, f"job submit: HTTP {status}: {str(answer)[:200]}")
    job_id = answer["job_id"]
    arn = observer.job_execution(job_id)
    if not wait_until(lambda: observer.execution_status(arn) in JOB_TERMINAL, RUN_TIMEOUT_S):
        return Outcome(False, f"job {job_id} did not finish")
    status, job = api.call("GET", f"/v1/jobs/{job_id}")  # the client reads its result once
    if status != 200 or not isinstance(job, dict) or job.get("status") != "succeeded":
        return Outcome(False, f"job {job_id}: HTTP {status}: {str(job)[:300]}")
    run_ids = [r for stage in job.get("stages", []) for r in stage.get("runs", [])]
    usage: dict[str, int] = {}
    calls = sizes = 0
    for run_id in run_ids:
        run = observer.run(run_id)
        for name, value in run.usage.model_dump().items():
            if name.endswith("tokens"):
                usage[name] = usage.get(name, 0) + int(value)
        calls += run.steps
        sizes += _item_bytes(observer.run_item(run_id))
    return Outcome(
        True,
        usage=usage,
        cost_usd=float(job.get("cost_usd") or 0.0),
        model_calls=calls,
        run_item_bytes=sizes // max(1, len(run_ids)),
        agent_runs=len(run_ids),
    )


@dataclass(frozen=True)
class Shape:
    key: str
    target: str  # agent or pipeline
    runner: Callable[[Api, Observer, str, int], Outcome]
    compute: str  # lambda | fargate | pipeline
    describe: str


def shapes(incompressible: bool) -> dict[str, Shape]:
    agent = "bench-async-10-incompressible" if incompressible else "bench-async-10"
    payload = "random base64" if incompressible else "JSON records"
    return {
        "sync": Shape(
            "sync",
            "bench-sync-3",
            run_sync,
            "lambda",
            f"sync, {SYNC_STEPS} tool steps (~0.2 KB each) + answer",
        ),
        "async": Shape(
            "async",
            agent,
            run_async,
            "fargate",
            f"async, {ASYNC_STEPS} tool steps x ~5 KB ({payload}) + answer",
        ),
        "pipeline": Shape(
            "pipeline",
            "bench-pipeline",
            run_pipeline,
            "pipeline",
            f"pipeline: function -> agent (1 tool step) -> map of {SECTIONS} agent runs "
            "-> function",
        ),
    }


# ---- pricing a meter snapshot ------------------------------------------------------------------


def _op_cost(service: str, operation: str, stats: dict[str, Any]) -> tuple[float, str, float]:
    """(billed quantity, its unit, dollars) for one operation's counts."""
    requests = stats["requests"] - stats.get("server_errors", 0)
    if service == "dynamodb":
        wru = stats.get("write_units", 0.0) + stats.get("index_write_units", 0.0)
        rru = stats.get("read_units", 0.0)
        usd = wru * prices.DYNAMODB_WRITE_UNIT + rru * prices.DYNAMODB_READ_UNIT
        return (wru, "WRU", usd) if wru else (rru, "RRU", usd)
    if service == "sqs":
        billed = stats.get("billed_requests", 0) - stats.get("empty_receives", 0)
        return billed, "requests", billed * prices.SQS_REQUEST
    if service == "s3":
        return requests, "requests", requests * prices.s3_request_price(operation)
    if service == "secretsmanager":
        return requests, "requests", requests * prices.SECRETS_MANAGER_REQUEST
    return requests, "requests (not billed)", 0.0


def price(
    snapshot: dict[str, Any],
    runs: int,
    log_bytes: int,
    outcomes: list[Outcome],
    shape: Shape,
    a: Assumptions,
) -> dict[str, Any]:
    per_run = 1.0 / runs
    by_operation: dict[str, dict[str, Any]] = {}
    requests_usd = 0.0
    idle: dict[str, Any] = {}
    for name, stats in snapshot["requests"].items():
        service, operation = name.split(".", 1)
        quantity, unit, usd = _op_cost(service, operation, stats)
        requests_usd += usd
        entry: dict[str, Any] = {
            "requests": round(stats["requests"] * per_run, 2),
            "billed": round(quantity * per_run, 2),
            "unit": unit,
            "usd_per_1000": round(usd * per_run * 1000, 5),
        }
        for detail in ("write_units", "index_write_units", "read_units", "conditional_failures"):
            if stats.get(detail):
                entry[detail] = round(stats[detail] * per_run, 2)
        if stats.get("items") and stats.get("stored_bytes"):
            entry["bytes_per_item_written"] = round(stats["stored_bytes"] / stats["items"])
        if stats.get("server_errors"):
            entry["moto_5xx_retried"] = stats["server_errors"]
        if stats.get("empty_receives"):
            entry["requests"] = round((stats["requests"] - stats["empty_receives"]) * per_run, 2)
            idle[name] = {
                "empty_receives": stats["empty_receives"],
                "seconds": snapshot["seconds"],
            }
            if stats["requests"] == stats["empty_receives"]:
                continue  # only idle polls
        by_operation[name] = entry
    for function, stats in snapshot["lambda"].items():
        usd = stats["invocations"] * prices.LAMBDA_REQUEST
        requests_usd += usd
        by_operation[f"lambda.Invoke:{function}"] = {
            "requests": round(stats["invocations"] * per_run, 2),
            "billed": round(stats["invocations"] * per_run, 2),
            "unit": "invocations",
            "usd_per_1000": round(usd * per_run * 1000, 5),
        }
    api_requests = snapshot["lambda"].get(API_FUNCTION, {}).get("invocations", 0)
    usd = api_requests * prices.API_GATEWAY_HTTP_REQUEST
    requests_usd += usd
    by_operation["apigateway.HttpRequest"] = {
        "requests": round(api_requests * per_run, 2),
        "billed": round(api_requests * per_run, 2),
        "unit": "requests (one per API function invocation)",
        "usd_per_1000": round(usd * per_run * 1000, 5),
    }
    transitions = snapshot["stepfunctions"]["state_transitions"]
    if snapshot["stepfunctions"]["executions"]:
        usd = transitions * prices.STEP_FUNCTIONS_TRANSITION
        requests_usd += usd
        by_operation["stepfunctions.StateTransition"] = {
            "requests": round(transitions * per_run, 2),
            "billed": round(transitions * per_run, 2),
            "unit": "state transitions",
            "usd_per_1000": round(usd * per_run * 1000, 5),
        }

    storage = snapshot["storage"]
    dynamodb_bytes = storage["dynamodb_item_bytes"] + storage["dynamodb_index_bytes"]
    storage_usd = prices.storage_price(
        dynamodb_bytes, prices.DYNAMODB_STORAGE_GB_MONTH, RETENTION_DAYS
    ) + prices.storage_price(storage["s3_bytes"], prices.S3_STORAGE_GB_MONTH, BLOB_RETENTION_DAYS)

    sfn_log_bytes = transitions * 2 * a.sfn_log_event_bytes
    all_log_bytes = log_bytes + sfn_log_bytes
    logs_usd = all_log_bytes / prices.GB * prices.LOGS_INGESTED_GB + prices.storage_price(
        all_log_bytes, prices.LOGS_STORED_GB_MONTH, LOG_RETENTION_DAYS
    )

    compute = compute_estimate(snapshot, runs, outcomes, shape, a)
    tokens: dict[str, int] = {}
    for o in outcomes:
        for k, v in o.usage.items():
            tokens[k] = tokens.get(k, 0) + v
    token_usd = sum(o.cost_usd for o in outcomes)
    n_ok = max(1, len(outcomes))

    infra = requests_usd + storage_usd
    total_request_bytes = sum(s["request_bytes"] for s in snapshot["requests"].values())
    total_response_bytes = sum(s["response_bytes"] for s in snapshot["requests"].values())
    ranked = sorted(by_operation.items(), key=lambda kv: -kv[1]["usd_per_1000"])
    return {
        "requests_per_run": {
            k: v["requests"] for k, v in sorted(by_operation.items()) if v["requests"]
        },
        "by_operation": dict(ranked),
        "bytes_per_run": {
            "aws_request_bodies": round(total_request_bytes * per_run),
            "aws_response_bodies": round(total_response_bytes * per_run),
            "dynamodb_kept": round(dynamodb_bytes * per_run),
            "s3_kept": round(storage["s3_bytes"] * per_run),
            "logs": round(log_bytes * per_run),
            "sfn_logs_estimated": round(sfn_log_bytes * per_run),
        },
        "usd_per_1000": {
            "requests": round(requests_usd * per_run * 1000, 5),
            "storage": round(storage_usd * per_run * 1000, 5),
            "infrastructure": round(infra * per_run * 1000, 5),
            "logs": round(logs_usd * per_run * 1000, 5),
            "compute_estimate": round(compute["usd"] * 1000, 5),
            "tokens": round(token_usd / n_ok * 1000, 4),
            "total": round(
                (infra + logs_usd) * per_run * 1000
                + compute["usd"] * 1000
                + token_usd / n_ok * 1000,
                4,
            ),
        },
        "infrastructure_top": [
            {"item": name, "share": round(v["usd_per_1000"] / (infra * per_run * 1000), 3)}
            for name, v in ranked[:5]
            if infra > 0 and v["usd_per_1000"] > 0
        ]
        + ([{"item": "storage", "share": round(storage_usd / infra, 3)}] if infra > 0 else []),
        "compute_estimate": compute,
        "tokens_per_run": {k: round(v / n_ok) for k, v in sorted(tokens.items())},
        "stepfunctions": snapshot["stepfunctions"]
        if snapshot["stepfunctions"]["executions"]
        else None,
        "lambda_local_duration_s": {
            k: round(v["duration_s"] / max(1, v["invocations"]), 3)
            for k, v in snapshot["lambda"].items()
        },
        "idle": idle,
        "meter_errors": snapshot["meter_errors"],
    }


def compute_estimate(
    snapshot: dict[str, Any], runs: int, outcomes: list[Outcome], shape: Shape, a: Assumptions
) -> dict[str, Any]:
    """Per-run compute dollars (estimated: not counted from requests) and the heartbeats a
    run of that duration makes."""
    n = max(1, len(outcomes))
    calls = sum(o.model_calls for o in outcomes) / n
    agent_runs = sum(o.agent_runs for o in outcomes) / n
    item_bytes = sum(o.run_item_bytes for o in outcomes) / n
    run_s = (calls / max(1.0, agent_runs)) * a.model_latency_s  # one agent run's model time
    lambda_gb_s = 0.0
    for function, stats in snapshot["lambda"].items():
        memory_gb = FUNCTION_MEMORY_MB.get(function, 1024) / 1024
        invocations = stats["invocations"] / runs
        seconds = invocations * a.lambda_overhead_s
        if function == API_FUNCTION and shape.compute == "lambda":
            seconds += calls * a.model_latency_s  # the sync run waits on the model inline
        lambda_gb_s += memory_gb * seconds
    lambda_usd = lambda_gb_s * prices.LAMBDA_GB_SECOND
    fargate_usd = 0.0
    if shape.compute in ("fargate", "pipeline"):
        task_per_s = (
            WORKER_VCPU * prices.FARGATE_VCPU_HOUR + WORKER_MEMORY_GB * prices.FARGATE_GB_HOUR
        ) / 3600
        slots = WORKER_CONCURRENCY * WORKER_TARGET_UTILIZATION
        fargate_usd = task_per_s * run_s * agent_runs / slots
    heartbeats = math.floor(run_s / (LEASE_TTL_S / 3)) * agent_runs
    from shared.dal.metering import write_units

    heartbeat_usd = heartbeats * (
        write_units(int(item_bytes)) * prices.DYNAMODB_WRITE_UNIT + prices.SQS_REQUEST
    )
    return {
        "model_calls_per_run": round(calls, 2),
        "agent_runs_per_run": round(agent_runs, 2),
        "agent_run_model_seconds": round(run_s, 2),
        "lambda_gb_s": round(lambda_gb_s, 3),
        "lambda_usd_per_1000": round(lambda_usd * 1000, 5),
        "fargate_usd_per_1000": round(fargate_usd * 1000, 5),
        "heartbeats_per_run": heartbeats,
        "heartbeat_usd_per_1000": round(heartbeat_usd * 1000, 5),
        "usd": lambda_usd + fargate_usd + heartbeat_usd,
    }


# ---- driving the stack ---------------------------------------------------------------------


def log_bytes(logs: Path) -> int:
    return sum(p.stat().st_size for p in logs.glob("*.log") if p.name != "devstack.log")


def settle(api: Api, timeout_s: float = 30.0) -> dict[str, Any]:
    """The meter once nothing but idle polls has moved for ``SETTLE_S`` (a worker deletes a
    run's message after journaling its end; the last writes trail the status the client sees)."""

    def busy(snapshot: dict[str, Any]) -> tuple[Any, ...]:
        counts = tuple(
            (k, v["requests"] - v.get("empty_receives", 0))
            for k, v in sorted(snapshot["requests"].items())
        )
        return (counts, tuple(sorted((k, v["invocations"]) for k, v in snapshot["lambda"].items())))

    deadline = time.monotonic() + timeout_s
    _, snapshot = api.call("GET", "/_local/metering")
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        _, later = api.call("GET", "/_local/metering")
        if busy(later) != busy(snapshot):
            still_since = time.monotonic()
        snapshot = later
        if time.monotonic() - still_since >= SETTLE_S:
            break
    result: dict[str, Any] = snapshot
    return result


def drive(
    api: Api, observer: Observer, shape: Shape, count: int, concurrency: int, offset: int
) -> list[Outcome]:
    with ThreadPoolExecutor(concurrency, thread_name_prefix=shape.key) as pool:
        futures = [
            pool.submit(shape.runner, api, observer, shape.target, offset + i) for i in range(count)
        ]
        return [f.result() for f in futures]


def measure_shape(
    api: Api,
    observer: Observer,
    logs: Path,
    shape: Shape,
    runs: int,
    warmup: int,
    concurrency: int,
    a: Assumptions,
) -> dict[str, Any]:
    if warmup:
        drive(api, observer, shape, warmup, concurrency, offset=10_000)
    settle(api)
    api.call("DELETE", "/_local/metering")
    logs_before = log_bytes(logs)
    started = time.monotonic()
    outcomes = drive(api, observer, shape, runs, concurrency, offset=0)
    wall_s = time.monotonic() - started
    snapshot = settle(api)
    logged = log_bytes(logs) - logs_before
    ok = [o for o in outcomes if o.ok]
    failures = [o.error for o in outcomes if not o.ok]
    priced = price(snapshot, runs, logged, ok, shape, a)
    return {
        "shape": shape.describe,
        "target": shape.target,
        "runs": runs,
        "failures": len(failures),
        "first_failures": failures[:3],
        "wall_s": round(wall_s, 1),
        **priced,
    }


# Limits with room for the benchmark's load: the offline model answers at once, so runs go
# through in seconds and use tokens at ~10M a minute; a key's buckets below half full are the
# regime of a deployment that is not at its limits (the gateway then reserves several calls
# per write). ``--rate-limits`` measures others, e.g. a tier-4-sized key that this load
# saturates (a write per call): see benchmarks/NOTES.md.
RATE_LIMITS = json.dumps(
    {"default": {"requests": 40_000, "input_tokens": 40_000_000, "output_tokens": 4_000_000}}
)
TIER4_LIMITS = json.dumps(
    {"default": {"requests": 4_000, "input_tokens": 2_000_000, "output_tokens": 400_000}}
)


def measure(
    runs: int,
    warmup: int,
    workers: int,
    concurrency: int,
    selected: list[str],
    incompressible: bool,
    a: Assumptions,
    rate_limits: str = RATE_LIMITS,
    prefetch: int = 1,
) -> dict[str, Any]:
    available = shapes(incompressible)
    with tempfile.TemporaryDirectory(prefix="switchyard-cost-") as tmp:
        state_dir = Path(tmp)
        command, launcher = stack_command(free_port(), workers, state_dir)
        stack = StackProcess(
            command,
            state_dir,
            {
                "SWITCHYARD_AGENT_MODULES": AGENT_MODULE,
                "SWITCHYARD_RATE_LIMITS": rate_limits,
                "SWITCHYARD_RATE_LIMIT_PREFETCH": str(prefetch),
            },
        )
        try:
            url, key = stack.ready(READY_TIMEOUT_S)
            api = Api(url, key)
            document = json.loads((state_dir / "local-outputs.json").read_text())
            (outputs,) = document.values()
            observer = Observer(outputs)
            results = {
                name: measure_shape(
                    api,
                    observer,
                    state_dir / "logs",
                    available[name],
                    runs,
                    warmup,
                    concurrency,
                    a,
                )
                for name in selected
            }
        finally:
            exit_code = stack.interrupt(STOP_TIMEOUT_S)

    def infra(name: str) -> float | None:
        shape = results.get(name)
        return shape["usd_per_1000"]["infrastructure"] if shape else None

    async_infra = infra("async")
    failures = sum(r["failures"] for r in results.values())
    top = results["async"]["infrastructure_top"] if "async" in results else []
    return {
        "benchmark": "cost_per_run",
        "stack": f"{launcher} --workers {workers} --latency 0, "
        f"SWITCHYARD_AGENT_MODULES={AGENT_MODULE}, SWITCHYARD_RATE_LIMITS={rate_limits}, "
        f"SWITCHYARD_RATE_LIMIT_PREFETCH={prefetch}",
        "runs_per_shape": runs,
        "warmup_runs": warmup,
        "payload_kind": "random base64 (incompressible)" if incompressible else "JSON records",
        "async_infra_usd_per_1000": async_infra,
        "async_total_usd_per_1000": (
            results["async"]["usd_per_1000"]["total"] if "async" in results else None
        ),
        "sync_infra_usd_per_1000": infra("sync"),
        "pipeline_infra_usd_per_1000": infra("pipeline"),
        "async_top_costs": ", ".join(f"{t['item']} {t['share']:.0%}" for t in top),
        "failures": failures,
        "shapes": results,
        "prices": prices.table(),
        "assumptions": a.as_dict(),
        "stack_exit_code": exit_code,
        "target_usd_per_1000": TARGET_USD_PER_1000,
        "meets_target": (
            async_infra is not None and async_infra <= TARGET_USD_PER_1000 and failures == 0
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="measured runs per shape")
    parser.add_argument("--warmup", type=int, default=3, help="runs per shape before measuring")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="runs in flight at once")
    parser.add_argument(
        "--shapes", default="sync,async,pipeline", help="comma-separated: sync, async, pipeline"
    )
    parser.add_argument(
        "--incompressible", action="store_true", help="async tool results of random base64"
    )
    parser.add_argument("--model-latency-s", type=float, default=2.0)
    parser.add_argument("--lambda-overhead-s", type=float, default=0.05)
    parser.add_argument("--sfn-log-event-bytes", type=int, default=350)
    parser.add_argument(
        "--rate-limits",
        default=RATE_LIMITS,
        help="SWITCHYARD_RATE_LIMITS JSON for the stack, or 'tier4' (a key this load saturates)",
    )
    parser.add_argument(
        "--prefetch",
        type=int,
        default=1,
        help="SWITCHYARD_RATE_LIMIT_PREFETCH: calls' worth one rate-limit write may reserve",
    )
    args = parser.parse_args(argv)
    rate_limits = TIER4_LIMITS if args.rate_limits == "tier4" else args.rate_limits
    selected = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(selected) - {"sync", "async", "pipeline"})
    if unknown or not selected:
        parser.error(f"unknown shapes {unknown}")
    if args.runs < 1 or args.warmup < 0 or args.workers < 1 or args.concurrency < 1:
        parser.error("--runs, --workers and --concurrency must be at least 1, --warmup >= 0")
    assumptions = Assumptions(
        args.model_latency_s, args.lambda_overhead_s, args.sfn_log_event_bytes
    )
    result = measure(
        args.runs,
        args.warmup,
        args.workers,
        args.concurrency,
        selected,
        args.incompressible,
        assumptions,
        rate_limits,
        args.prefetch,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
