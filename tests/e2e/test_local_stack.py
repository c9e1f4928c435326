"""`make dev`, end to end: the local stack started as a newcomer starts it, in a subprocess,
driven only over HTTP (the API, the local controls, S3 on moto) and the `switchyard` CLI.

One stack serves the whole module (it takes ~10 s to start, more on a first synth). The
steps run in order, as one session would: sync and async runs, tailing, an S3 upload that
triggers a run, a schedule fired, a worker SIGKILLed mid-run, an approval, a cancellation,
usage; then Ctrl-C (SIGINT to the process group, as a terminal sends it) must leave no
process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.moto_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled"}
START_TIMEOUT_S = 240.0  # a first synth of the local stack's template included


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    url: str
    key: str
    state_dir: Path
    lines: list[str] = field(default_factory=list)
    output: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    def follow_output(self) -> None:
        """Keep reading the stack's console (so it never blocks on a full pipe)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.output:
                self.lines.append(line.rstrip("\n"))
                self.output.notify_all()

    def lines_with(self, text: str, count: int, timeout_s: float = 60.0) -> list[str]:
        """The console lines containing ``text``, once there are ``count`` of them."""
        with self.output:
            self.output.wait_for(
                lambda: (
                    sum(text in line for line in self.lines) >= count
                    or self.process.poll() is not None
                ),
                timeout=timeout_s,
            )
            return [line for line in self.lines if text in line]

    # ---- HTTP -------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=40) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.call(method, path, body)
        assert status in (200, 201, 202), (status, payload)
        return payload

    def events_until(
        self, run_id: str, done: Any, *, after: int = 0, timeout_s: float = 90.0
    ) -> list[dict[str, Any]]:
        """Long-poll the run's events until ``done(events)`` holds; every event so far."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            page = self.ok("GET", f"/v1/runs/{run_id}/events?after={after}&wait=10")
            seen.extend(page["events"])
            after = page["next_after"]
            if done(seen):
                return seen
        raise AssertionError(f"run {run_id}: condition not reached; events {seen}")

    def finish(self, run_id: str, timeout_s: float = 90.0) -> dict[str, Any]:
        self.events_until(run_id, lambda evs: _status(evs) in TERMINAL, timeout_s=timeout_s)
        run: dict[str, Any] = self.ok("GET", f"/v1/runs/{run_id}")
        return run

    # ---- the CLI -------------------------------------------------------------------------

    def cli(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SWITCHYARD_URL": self.url,
            "SWITCHYARD_API_KEY": self.key,
            "SWITCHYARD_OUTPUTS": str(self.state_dir / "local-outputs.json"),
        }
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=timeout_s,
            check=False,
        )

    def outputs(self) -> dict[str, str]:
        document = json.loads((self.state_dir / "local-outputs.json").read_text())
        (stack,) = document.values()
        return dict(stack)


def _status(events: list[dict[str, Any]]) -> str | None:
    statuses = [e["data"].get("status") for e in events if e["type"] == "run.status"]
    return statuses[-1] if statuses else None


def _session_processes(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state_dir = tmp_path_factory.mktemp("dev-state")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANTHROPIC_"))}
    env["SWITCHYARD_PORT"] = str(port)
    env["SWITCHYARD_EFFECTS_DIR"] = str(state_dir / "effects")
    process = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "dev",
            f"DEV_ARGS=--state-dir {state_dir} --latency 0.4 --demo",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test's "terminal"
    )
    assert process.stdout is not None
    lines: list[str] = []
    values: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(values) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        for name in ("SWITCHYARD_URL", "SWITCHYARD_API_KEY"):
            if line.startswith(name + "="):
                values[name] = line.strip().split("=", 1)[1]
    if len(values) < 2:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("make dev did not become ready:\n" + "\n".join(lines[-40:]))
    stack = DevStack(process, values["SWITCHYARD_URL"], values["SWITCHYARD_API_KEY"], state_dir)
    stack.lines = lines
    stack.reader = threading.Thread(target=stack.follow_output, daemon=True)
    stack.reader.start()
    yield stack
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ---- the session, in order ---------------------------------------------------------------


def test_ready_lines_are_usable_as_they_are(dev: DevStack) -> None:
    assert dev.url.startswith("http://127.0.0.1:")
    assert dev.key.startswith("sy_")
    status, health = dev.call("GET", "/v1/health")
    assert status == 200, health
    status, _ = dev.call("GET", "/v1/agents", key="sy_0000000000000000_wrong")
    assert status == 403


def test_the_demo_flag_seeds_a_run_of_each_example_agent(dev: DevStack) -> None:
    demo = dev.lines_with("] demo: ", 3)
    agents = {line.split("] demo: ", 1)[1].split(" ->")[0] for line in demo}
    assert agents == {"ticket-triage", "researcher", "ops-assistant"}, demo
    for line in demo:
        run_id = line.split("-> ", 1)[1].split()[0]
        assert dev.ok("GET", f"/v1/runs/{run_id}")["run_id"] == run_id


def test_sync_run_answers_inline(dev: DevStack) -> None:
    run = dev.ok("POST", "/v1/runs", {"agent": "ticket-triage", "input": "Invoice is wrong"})
    assert run["status"] == "succeeded"
    assert run["shape"] == "sync"
    assert run["output"]


def test_async_run_is_tailed_to_completion_by_the_cli(dev: DevStack) -> None:
    submitted = dev.ok("POST", "/v1/runs", {"agent": "researcher", "input": "durable agents"})
    assert submitted["status"] == "queued"
    tail = dev.cli("runs", "tail", submitted["run_id"])
    assert tail.returncode == 0, tail.stderr
    assert "succeeded" in tail.stdout
    assert "step" in tail.stdout  # progress lines, not just the end
    run = dev.ok("GET", f"/v1/runs/{submitted['run_id']}")
    assert run["status"] == "succeeded"
    assert run["steps"] >= 2


def test_cli_submits_and_lists(dev: DevStack) -> None:
    submitted = dev.cli("runs", "submit", "ticket-triage", "--input", "Printer on fire", "--json")
    assert submitted.returncode == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run_id"]
    listing = dev.cli("runs", "list", "--agent", "ticket-triage", "--json")
    assert listing.returncode == 0, listing.stderr
    assert run_id in listing.stdout
    missing = dev.cli("runs", "get", "run_does_not_exist")
    assert missing.returncode != 0
    assert len(missing.stderr.strip().splitlines()) == 1
    assert "not_found" in missing.stderr or "not found" in missing.stderr


def test_concurrent_requests_are_answered_each_for_itself(dev: DevStack) -> None:
    """Each API container serves one request at a time, as Lambda does: concurrent requests
    for different runs never get each other's answers."""
    from concurrent.futures import ThreadPoolExecutor

    run_ids = [r["run_id"] for r in dev.ok("GET", "/v1/runs?limit=50")["runs"]]
    assert len(run_ids) >= 3
    wanted = run_ids * (24 // len(run_ids) + 1)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda rid: dev.ok("GET", f"/v1/runs/{rid}"), wanted))
    assert [a["run_id"] for a in answers] == wanted
    functions = dev.ok("GET", "/_local/stack")["functions"]
    api = next(f for f in functions if f["function"] == "api-handler")
    assert api["cold_starts"] >= 2  # the burst needed more than one container


def test_an_uploaded_object_triggers_a_run(dev: DevStack) -> None:
    from shared.dal import aws_client

    outputs = dev.outputs()
    s3 = aws_client("s3", region=outputs["Region"], endpoint_url=outputs["AwsEndpointUrl"])
    key = f"tickets/e2e-{time.time_ns()}.txt"
    s3.put_object(Bucket=outputs["InboxBucketName"], Key=key, Body=b"The VPN is down")
    deadline = time.monotonic() + 60
    triggered = None
    while triggered is None and time.monotonic() < deadline:
        for item in dev.ok("GET", "/v1/runs?agent=ticket-triage&limit=20")["runs"]:
            run = dev.ok("GET", f"/v1/runs/{item['run_id']}")
            if isinstance(run["input"], dict) and run["input"].get("key") == key:
                triggered = run
                break
        else:
            # The notification travels S3 -> SQS -> the poller -> the function, in another
            # process: poll for the run it starts (bounded by the deadline), a moment apart.
            time.sleep(0.5)
    assert triggered is not None, "no run started for the uploaded object"
    assert triggered["metadata"].get("trigger") == "s3"
    assert dev.finish(triggered["run_id"])["status"] == "succeeded"


def test_a_schedule_fires(dev: DevStack) -> None:
    fired = dev.ok("POST", "/_local/schedules/hourly-triage/fire")
    run_id = fired["result"]["run_id"]
    run = dev.finish(run_id)
    assert run["status"] == "succeeded"
    assert run["metadata"].get("trigger") == "schedule"
    schedules = dev.ok("GET", "/_local/schedules")["schedules"]
    assert {s["name"] for s in schedules} == {"hourly-triage", "morning-digest"}


def test_a_worker_killed_mid_run_is_replaced_and_the_run_finishes(dev: DevStack) -> None:
    before = dev.ok("GET", "/_local/workers")
    submitted = dev.ok("POST", "/v1/runs", {"agent": "researcher", "input": "crash me"})
    run_id = submitted["run_id"]
    events = dev.events_until(
        run_id, lambda evs: any(e["type"] == "step.completed" for e in evs), timeout_s=60
    )
    worker = next(
        e["data"]["worker"] for e in events if e["type"] == "run.status" and "worker" in e["data"]
    )
    pid = int(worker.rsplit("-", 1)[1])
    assert pid in {w["pid"] for w in before["workers"]}
    os.kill(pid, signal.SIGKILL)
    run = dev.finish(run_id, timeout_s=120)  # resumed after the lease (10 s) by a worker
    assert run["status"] == "succeeded"
    all_events = dev.events_until(run_id, lambda evs: True)
    steps = [e["data"]["step"] for e in all_events if e["type"] == "step.completed"]
    assert len(steps) == len(set(steps)), f"a step was journaled twice: {steps}"
    owners = {e["data"].get("worker") for e in all_events if e["type"] == "run.status"} - {None}
    assert len(owners) >= 2, owners
    after = dev.ok("GET", "/_local/workers")
    assert after["replaced"] >= before["replaced"] + 1
    assert pid not in {w["pid"] for w in after["workers"]}
    assert all(w["alive"] for w in after["workers"])


def test_a_pending_tool_call_is_approved_with_the_cli(dev: DevStack) -> None:
    submitted = dev.ok(
        "POST", "/v1/runs", {"agent": "ops-assistant", "input": "billing is down, restart it"}
    )
    run_id = submitted["run_id"]
    dev.events_until(run_id, lambda evs: _status(evs) == "awaiting_approval", timeout_s=60)
    approved = dev.cli("runs", "approve", run_id, "--comment", "go ahead")
    assert approved.returncode == 0, approved.stderr
    run = dev.finish(run_id)
    assert run["status"] == "succeeded"


def test_a_run_is_cancelled_with_the_cli(dev: DevStack) -> None:
    submitted = dev.ok("POST", "/v1/runs", {"agent": "researcher", "input": "cancel me"})
    cancelled = dev.cli("runs", "cancel", submitted["run_id"])
    assert cancelled.returncode == 0, cancelled.stderr
    run = dev.finish(submitted["run_id"])
    assert run["status"] == "cancelled"


def test_usage_is_readable(dev: DevStack) -> None:
    usage = dev.ok("GET", "/v1/usage?group_by=agent")
    by_agent = {g["key"]: g for g in usage["groups"]}
    assert by_agent["researcher"]["runs"] >= 2
    assert usage["total"]["cost_usd"] > 0
    cli = dev.cli("usage", "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["total"]["runs"] == usage["total"]["runs"]


def test_ctrl_c_leaves_no_process_behind(dev: DevStack) -> None:
    workers = [w["pid"] for w in dev.ok("GET", "/_local/workers")["workers"]]
    assert workers
    sid = os.getsid(dev.process.pid)
    assert set(workers) <= set(_session_processes(sid))
    os.killpg(dev.process.pid, signal.SIGINT)
    dev.process.wait(timeout=90)
    assert dev.reader is not None
    dev.reader.join(timeout=10)
    output = "\n".join(dev.lines)
    assert "Stopped." in output, output[-3000:]
    assert _session_processes(sid) == [], "processes left behind after Ctrl-C"
    assert not (dev.state_dir / "local-outputs.json").exists()  # its moto endpoint is gone
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
