"""`make bench`: run every benchmark in a fresh interpreter and write benchmarks/RESULTS.md.

Each benchmark prints one JSON object on its last line; this collects them with the command
that produced them, so every figure in RESULTS.md can be reproduced by hand.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# (module, arguments, the figure a reader cares about, how the target reads)
BENCHMARKS: list[tuple[str, list[str], str, str]] = [
    (
        "checkpoint_growth",
        ["--steps", "200", "--payload", "2000"],
        "amplification, wire_amplification, dynamodb_writes_per_step",
        "amplification <= 1.2 and <= 1.2 DynamoDB writes per step",
    ),
    (
        "checkpoint_growth",
        ["--steps", "200", "--payload", "2000", "--incompressible"],
        "amplification, wire_amplification, dynamodb_writes_per_step",
        "same, with payloads compression cannot shrink",
    ),
    (
        "runtime_overhead",
        ["--steps", "50", "--latency-ms", "20"],
        "overhead_pct",
        "overhead <= 3 % vs a bare loop",
    ),
    (
        "worker_concurrency",
        ["--concurrency", "500", "--latency-s", "2"],
        "steady_in_flight, peak_rss_mb, step_dispatch_lag_ms",
        ">= 500 runs in flight in one worker process at 2 s model latency, < 1 GB RSS",
    ),
    (
        "cold_import",
        ["--runs", "9"],
        "api_handler_ms, floor_ms, project_ms, worker_ms, anthropic_imported_on_async_submit",
        "API handler import <= 150 ms; anthropic not imported on the async submit path",
    ),
    (
        "local_throughput",
        ["--runs", "200", "--workers", "2"],
        "runs_per_s, submit_to_finish_ms, submit_ms, failures",
        "no speed target, the figure is moto-bound (one moto server process serves every "
        "SQS/DynamoDB call): reported only; checked: all 200 runs succeed, the stack exits 0 "
        "on Ctrl-C and leaves no worker behind",
    ),
    (
        "cost_per_run",
        ["--runs", "20"],
        "async_infra_usd_per_1000, async_top_costs, sync_infra_usd_per_1000, "
        "pipeline_infra_usd_per_1000, async_total_usd_per_1000",
        "<= $0.03 of AWS infrastructure (requests + storage, list prices) per 1,000 async runs "
        "of 10 steps x 5 KB; sync and pipeline shapes reported",
    ),
    (
        "cost_per_run",
        ["--runs", "20", "--shapes", "async", "--prefetch", "8"],
        "async_infra_usd_per_1000, async_top_costs, async_total_usd_per_1000",
        "same, with rate-limit prefetch on (up to 8 calls' worth per write; off by default)",
    ),
    (
        "cost_per_run",
        ["--runs", "20", "--shapes", "async", "--rate-limits", "tier4"],
        "async_infra_usd_per_1000, async_top_costs, async_total_usd_per_1000",
        "same, on a tier-4-sized key this load saturates (one rate-limit write per model "
        "call, the gateway's most expensive regime)",
    ),
    (
        "cost_per_run",
        ["--runs", "20", "--shapes", "async", "--incompressible"],
        "async_infra_usd_per_1000, async_top_costs, async_total_usd_per_1000",
        "same, with tool results compression cannot shrink",
    ),
]


def run(module: str, args: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=HERE.parent)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    rows = []
    failures = 0
    for module, args, figure, target in BENCHMARKS:
        print(f"running {module} {' '.join(args)} ...", flush=True)
        result = run(module, args)
        print(json.dumps(result), flush=True)
        ok = result.get("meets_target")
        failures += 0 if ok else 1
        rows.append((module, args, figure, target, result, ok))
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"Python {platform.python_version()}, {platform.machine()}, "
        "on the development machine (2 cores). Every figure is a ratio or a count measured "
        "in the same run as its baseline; reproduce one with the command beside it.",
        "",
        "| benchmark | target | figure | meets target | command |",
        "| --- | --- | --- | --- | --- |",
    ]
    for module, args, figure, target, result, ok in rows:
        keys = [k.strip() for k in figure.split(",")]
        shown = ", ".join(f"{k} = {result.get(k)}" for k in keys)
        command = f"`python -m benchmarks.{module} {' '.join(args)}`"
        lines.append(f"| {module} | {target} | {shown} | {'yes' if ok else 'NO'} | {command} |")
    lines += ["", "## Raw output", ""]
    for module, _args, _figure, _target, result, _ok in rows:
        lines += [f"### {module}", "", "```json", json.dumps(result, indent=2), "```", ""]
    notes = HERE / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
