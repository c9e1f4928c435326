"""Runs per second and submit-to-finish latency through the local stack (`make dev`).

The stack is started as `make dev` starts it, in a subprocess (``python -m shared.cli dev``,
or ``devstack.cli`` directly when that command is not there), with ``--latency 0`` (the
offline model answers at once) and its own port and state directory. Its two ready lines,
``SWITCHYARD_URL=`` and ``SWITCHYARD_API_KEY=``, are read from its stdout. Then, over HTTP
with a thread pool (``--concurrency``, default 16, for submitting and as many for following):

- ``--runs`` (default 200) short async runs of ``ticket-triage`` are submitted
  (``POST /v1/runs``, ``mode: async``); the time before each request is its submit time;
- each run is followed by long-polling ``GET /v1/runs/{id}/events?after=<cursor>&wait=20``
  until a ``run.status`` event with a terminal status, then read once (``GET /v1/runs/{id}``)
  for its status and server timestamps. A run's finish is its ``finished_at`` (the same
  machine's clock), so a follower that looks late does not make the run look slow.

Figures: ``runs_per_s`` = runs / (last finish - first submit); ``submit_to_finish_ms`` and
``submit_ms`` (the POST's round trip) p50/p99; where the time goes on the server
(``queue_wait_ms``: created -> started, ``execute_ms``: started -> finished); failures.
Finally the stack gets SIGINT, as Ctrl-C: it must exit 0 and the worker processes listed by
``GET /_local/workers`` just before must be gone.

Moto-bound: every SQS and DynamoDB call of the API function, the workers and the long polls
goes to one moto server process, which scans a queue per call (about 100-250 SQS cycles per
second, see the project notes) and deep-copies the whole table for each item of a
TransactWriteItems (a submit is one), so submits slow down as the table fills; under
concurrent writes that copy sometimes fails and moto answers 500 (``moto_errors``, counted
from the stack's stderr; the AWS SDK retries them). This measures the local stack, not the
platform: the platform's own overhead is in runtime_overhead and worker_concurrency.

Target (``meets_target``): not a speed. Every run succeeds, the stack exits 0 on SIGINT and
leaves no worker process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
AGENT = "ticket-triage"
TERMINAL = {"succeeded", "failed", "cancelled"}
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 35.0  # > the 20 s long poll
_FINAL_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*$", re.MULTILINE)
NOTE = (
    "moto-bound: every SQS/DynamoDB call goes through a single moto server process (the API "
    "function's, the workers' and the event long polls'). Moto scans a whole queue per SQS "
    "call (~100-250 send/receive/delete cycles per second on this machine) and deep-copies "
    "the whole table for each item of a TransactWriteItems (every submit is one), so submits "
    "slow down as the table grows; under concurrent writes that copy can also fail "
    "('dictionary changed size during iteration', answered 500 and retried by the SDK: "
    "moto_errors). This is the local stack's throughput, not the platform's: see "
    "runtime_overhead and worker_concurrency for the platform's own cost."
)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values, default=0.0), 1),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stack_command(port: int, workers: int, state_dir: Path) -> tuple[list[str], str]:
    """`make dev`'s command when the CLI has it, else devstack.cli's own entry points."""
    options = ["--port", str(port), "--workers", str(workers), "--latency", "0"]
    options += ["--state-dir", str(state_dir)]
    probe = subprocess.run(
        [sys.executable, "-m", "shared.cli", "dev", "--help"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "shared.cli", "dev", *options], "python -m shared.cli dev"
    inline = (
        "import argparse, sys; from devstack.cli import add_arguments, run; "
        "p = argparse.ArgumentParser(); add_arguments(p); sys.exit(run(p.parse_args()))"
    )
    return [sys.executable, "-c", inline, *options], "devstack.cli.run"


class StackProcess:
    """The stack subprocess; its stdout drained by a thread (it reports while it runs)."""

    def __init__(
        self, command: list[str], state_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}  # offline only
        env.pop("SWITCHYARD_PORT", None)
        env.update(extra_env or {})
        self.stderr_path = state_dir / "stack.stderr"
        self._stderr: IO[bytes] = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, name="stack-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def ready(self, timeout_s: float) -> tuple[str, str]:
        """SWITCHYARD_URL and SWITCHYARD_API_KEY, as printed once the stack is ready."""
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout_s
        while not {"SWITCHYARD_URL", "SWITCHYARD_API_KEY"} <= found.keys():
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the stack was not ready after {timeout_s:.0f} s") from None
            if line is None:
                raise RuntimeError(f"the stack exited before it was ready: {self.stderr_tail()}")
            name, sep, value = line.partition("=")
            if sep and name in ("SWITCHYARD_URL", "SWITCHYARD_API_KEY"):
                found[name] = value.strip()
        return found["SWITCHYARD_URL"], found["SWITCHYARD_API_KEY"]

    def stderr_tail(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        lines = self.stderr_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-5:]) or "(no stderr)"

    def server_errors(self) -> dict[str, int]:
        """Errors the stack's moto server logged answering a request (it answers them 500; the
        AWS SDK retries those), by the exception's last line."""
        if not self._stderr.closed:
            self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace")
        counts: dict[str, int] = {}
        for block in text.split("Error on request:")[1:]:
            finals = _FINAL_LINE.findall(block)
            kind = finals[-1][:120] if finals else "unknown"
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def interrupt(self, timeout_s: float) -> int | None:
        """Ctrl-C; the exit code, or None if it had to be killed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            self._reader.join(timeout=5)
            self._stderr.close()
        return code


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            with contextlib.suppress(ValueError):
                return exc.code, json.loads(exc.read() or b"null")
            return exc.code, None


@dataclass
class Outcome:
    index: int
    submitted_at: float  # wall clock, before the POST
    submit_ms: float
    run_id: str | None = None
    status: str | None = None
    error: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def submit(api: Api, index: int) -> Outcome:
    body = {"agent": AGENT, "input": f"Ticket {index}: my invoice is wrong", "mode": "async"}
    submitted_at = time.time()
    started = time.perf_counter()
    try:
        status, answer = api.call("POST", "/v1/runs", body)
    except OSError as exc:
        outcome = Outcome(index, submitted_at, (time.perf_counter() - started) * 1000)
        outcome.error = f"submit: {type(exc).__name__}: {exc}"
        return outcome
    outcome = Outcome(index, submitted_at, (time.perf_counter() - started) * 1000)
    if status != 202 or not isinstance(answer, dict) or "run_id" not in answer:
        outcome.error = f"submit: HTTP {status}: {str(answer)[:200]}"
    else:
        outcome.run_id = answer["run_id"]
    return outcome


def follow(api: Api, outcome: Outcome, deadline: float) -> Outcome:
    """Long-poll the run's events until it finishes, then read the run."""
    if outcome.run_id is None:
        return outcome
    cursor = 0
    try:
        while time.monotonic() < deadline:
            status, page = api.call(
                "GET", f"/v1/runs/{outcome.run_id}/events?after={cursor}&wait=20"
            )
            if status != 200 or not isinstance(page, dict):
                outcome.error = f"events: HTTP {status}: {str(page)[:200]}"
                return outcome
            ended = any(
                e.get("type") == "run.status" and (e.get("data") or {}).get("status") in TERMINAL
                for e in page.get("events", [])
            )
            cursor = int(page.get("next_after", cursor))
            if ended:
                break
        else:
            outcome.error = "not finished before the deadline"
            return outcome
        status, run = api.call("GET", f"/v1/runs/{outcome.run_id}")
    except OSError as exc:
        outcome.error = f"follow: {type(exc).__name__}: {exc}"
        return outcome
    if status != 200 or not isinstance(run, dict):
        outcome.error = f"run: HTTP {status}: {str(run)[:200]}"
        return outcome
    outcome.status = run.get("status")
    outcome.created_at = _epoch(run.get("created_at"))
    outcome.started_at = _epoch(run.get("started_at"))
    outcome.finished_at = _epoch(run.get("finished_at"))
    if outcome.status != "succeeded":
        outcome.error = f"run {outcome.status}: {str(run.get('error'))[:200]}"
    return outcome


def drive(api: Api, runs: int, concurrency: int, timeout_s: float) -> list[Outcome]:
    """Submit every run (``concurrency`` at a time) and follow each as soon as it is accepted
    (as many followers)."""
    deadline = time.monotonic() + timeout_s
    with (
        ThreadPoolExecutor(concurrency, thread_name_prefix="submit") as submitters,
        ThreadPoolExecutor(concurrency, thread_name_prefix="follow") as followers,
    ):
        followed: list[Future[Outcome]] = []
        lock = threading.Lock()

        def submitted(future: Future[Outcome]) -> None:
            with lock:
                followed.append(followers.submit(follow, api, future.result(), deadline))

        pending = [submitters.submit(submit, api, i) for i in range(runs)]
        for future in pending:
            future.add_done_callback(submitted)
        for future in pending:
            future.result()
        while True:
            with lock:
                if len(followed) == runs:
                    break
            time.sleep(0.01)
        return sorted((f.result() for f in followed), key=lambda o: o.index)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie has exited; its parent has not reaped it
        if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
            return False
    return True


def measure(runs: int, workers: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        state_dir = Path(tmp)
        command, launcher = stack_command(free_port(), workers, state_dir)
        launched = time.monotonic()
        stack = StackProcess(command, state_dir)
        try:
            url, key = stack.ready(READY_TIMEOUT_S)
            ready_s = time.monotonic() - launched
            api = Api(url, key)
            _, listing = api.call("GET", "/_local/workers")
            pids_before = [int(w["pid"]) for w in (listing or {}).get("workers", [])]
            outcomes = drive(api, runs, concurrency, timeout_s)
            _, listing = api.call("GET", "/_local/workers")
            pids = [int(w["pid"]) for w in (listing or {}).get("workers", [])]
            replaced = int((listing or {}).get("replaced", 0))
        finally:
            stopping = time.monotonic()
            exit_code = stack.interrupt(STOP_TIMEOUT_S)
            stop_s = time.monotonic() - stopping
        moto_errors = stack.server_errors()
        gone_by = time.monotonic() + 5.0
        while any(alive(p) for p in pids) and time.monotonic() < gone_by:
            time.sleep(0.1)
        left = [p for p in pids if alive(p)]

    ok = [o for o in outcomes if o.error is None and o.finished_at is not None]
    first_submit = min((o.submitted_at for o in outcomes), default=0.0)
    last_finish = max((o.finished_at for o in ok if o.finished_at), default=first_submit)
    span_s = last_finish - first_submit
    errors: dict[str, int] = {}
    for o in outcomes:
        if o.error is not None:
            kind = o.error.split(":", 1)[0]
            errors[kind] = errors.get(kind, 0) + 1
    first_errors = [o.error for o in outcomes if o.error][:3]

    def server(a: str, b: str) -> list[float]:
        return [
            (getattr(o, b) - getattr(o, a)) * 1000
            for o in ok
            if getattr(o, a) is not None and getattr(o, b) is not None
        ]

    succeeded = len(ok)
    in_order = [o.submit_ms for o in sorted(outcomes, key=lambda o: o.submitted_at) if o.run_id]
    tenth = max(1, len(in_order) // 10)
    early, late = in_order[:tenth], in_order[-tenth:]
    clean_stop = exit_code == 0 and not left and bool(pids)
    return {
        "benchmark": "local_throughput",
        "stack": f"{launcher} --workers {workers} --latency 0 (moto server, offline model)",
        "agent": AGENT,
        "runs": runs,
        "runs_succeeded": succeeded,
        "failures": runs - succeeded,
        "failure_kinds": errors,
        "first_failures": first_errors,
        "workers": workers,
        "concurrency": concurrency,
        "stack_ready_s": round(ready_s, 1),
        "wall_s": round(span_s, 2),
        "runs_per_s": round(succeeded / span_s, 1) if span_s > 0 else 0.0,
        "submit_to_finish_ms": spread(
            [(o.finished_at or 0) * 1000 - o.submitted_at * 1000 for o in ok]
        ),
        "submit_ms": spread([o.submit_ms for o in outcomes if o.run_id is not None]),
        "queue_wait_ms": spread(server("created_at", "started_at")),
        "execute_ms": spread(server("started_at", "finished_at")),
        "submit_ms_first_tenth_p50": round(percentile(early, 50), 1),
        "submit_ms_last_tenth_p50": round(percentile(late, 50), 1),
        "moto_errors": moto_errors,
        "workers_replaced": replaced,
        "worker_pids": pids,
        "worker_pids_changed": sorted(pids) != sorted(pids_before),
        "stack_exit_code": exit_code,
        "stack_stop_s": round(stop_s, 1),
        "workers_left_after_stop": left,
        "note": NOTE,
        "meets_target": succeeded == runs and clean_stop,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16, help="submitters (and followers)")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="for all runs to finish")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.workers < 1 or args.concurrency < 1:
        parser.error("--runs, --workers and --concurrency must be at least 1")
    print(json.dumps(measure(args.runs, args.workers, args.concurrency, args.timeout_s)))


if __name__ == "__main__":
    main()
