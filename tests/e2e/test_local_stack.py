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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.make_dev import (
    DevStack,
    kill_make_dev,
    run_status,
    session_processes,
    start_make_dev,
)
from tests.support.moto_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state_dir = tmp_path_factory.mktemp("dev-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANTHROPIC_"))}
    env["SWITCHYARD_PORT"] = str(free_port())
    env["SWITCHYARD_EFFECTS_DIR"] = str(state_dir / "effects")
    stack = start_make_dev(state_dir, env, "--latency 0.4 --demo")
    yield stack
    kill_make_dev(stack)


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
    dev.events_until(run_id, lambda evs: run_status(evs) == "awaiting_approval", timeout_s=60)
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
    # Counters are written by each process every few seconds (usage_flush_s).
    usage = dev.get_until(
        "/v1/usage?group_by=agent",
        lambda u: any(g["key"] == "researcher" and g["runs"] >= 2 for g in u["groups"]),
    )
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
    assert set(workers) <= set(session_processes(sid))
    os.killpg(dev.process.pid, signal.SIGINT)
    dev.process.wait(timeout=90)
    assert dev.reader is not None
    dev.reader.join(timeout=10)
    output = "\n".join(dev.lines)
    assert "Stopped." in output, output[-3000:]
    assert session_processes(sid) == [], "processes left behind after Ctrl-C"
    assert not (dev.state_dir / "local-outputs.json").exists()  # its moto endpoint is gone
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
