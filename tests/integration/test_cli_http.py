"""The `switchyard` CLI's API commands against a real HTTP server: the local gateway
(``devstack.gateway``) in front of the real authorizer and API handlers, on in-memory
Services. Most cases call ``main()`` in-process; a few run the CLI as a subprocess, as a
user does, for exit codes and the one-line stderr."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from io import StringIO
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import functions.api.app as api_app
import shared.cli.jobs as jobs_module
import shared.cli.runs as runs_module
from agents.documents import document_review
from devstack.apigw import Gateway
from devstack.gateway import LocalGateway
from functions.api.app import set_services
from functions.authorizer.handler import set_store
from shared.cli import main
from shared.config import Settings
from shared.jobs.base import ExecutionStatus
from shared.jobs.memory import MemoryWorkflows
from shared.logic import jobs as job_logic
from shared.logic import service, stages
from shared.logic.service import Services
from shared.models.api import ApprovalBody, JobApprovalBody
from shared.models.job import FunctionCall
from shared.observability import get_logger
from shared.pipelines.registry import PipelineRegistry
from shared.wiring import build_services
from tests.api.conftest import new_key, run_worker
from tests.support.http_server import serving

CLI_ENV = ("SWITCHYARD_URL", "SWITCHYARD_API_KEY", "SWITCHYARD_OUTPUTS")
MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:switchyard-test-document-review"


@dataclass
class Api:
    svc: Services
    url: str
    key: str


@pytest.fixture(autouse=True)
def _quiet_cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No URL or key from the developer's shell; the handlers' logs and metrics kept off
    stdout (the server runs in this process, and stdout is what the tests read)."""
    for var in CLI_ENV:
        monkeypatch.delenv(var, raising=False)
    # The API's metrics are EMF lines printed to stdout (Powertools' single_metric).
    monkeypatch.setattr(api_app, "count", lambda *args, **kwargs: None)
    handlers = [
        h
        for name in ("api", "authorizer")
        for h in get_logger(name).handlers
        if hasattr(h, "setStream")
    ]
    previous = [h.setStream(StringIO()) for h in handlers]
    yield
    for handler, stream in zip(handlers, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    """The local gateway on a free port, for the module (the handlers it calls find their
    Services at each request: every test installs its own)."""
    server = LocalGateway(Gateway(), port=0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def api(gateway_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """Fresh in-memory Services behind the gateway, the key of tenant acme in
    SWITCHYARD_API_KEY and the URL in SWITCHYARD_URL (tests that want flags or no key
    take them out)."""
    svc = build_services(
        Settings(pipeline_arns={"document-review": MACHINE}),
        backend="memory",
        pipeline_registry=PipelineRegistry([document_review]),
    )
    set_services(svc)
    set_store(svc.control)
    key = new_key(svc, "acme")
    monkeypatch.setenv("SWITCHYARD_URL", gateway_url)
    monkeypatch.setenv("SWITCHYARD_API_KEY", key)
    try:
        yield Api(svc, gateway_url, key)
    finally:
        set_services(None)
        set_store(None)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def cli_process(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLI_ENV}
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(err: str, starts: str) -> None:
    assert err.count("\n") == 1, err
    assert err.startswith(f"switchyard: error: {starts}"), err
    assert "Traceback" not in err


def submit(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    ran = cli(capsys, "runs", "submit", *args, "--json")
    assert ran.code == 0, ran.err
    body: dict[str, Any] = ran.json()
    return body


def paused_ops_run(capsys: pytest.CaptureFixture[str], api: Api) -> str:
    run_id = str(submit(capsys, "ops-assistant", "--input", "checkout is slow")["run_id"])
    assert run_worker(api.svc) == ["awaiting_approval"]
    return run_id


# ---- runs submit -------------------------------------------------------------------------------


def test_submit_a_sync_run_prints_the_finished_run(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = cli(capsys, "runs", "submit", "ticket-triage", "--input", "I was charged twice")
    assert ran.code == 0, ran.err
    assert ran.err == ""
    head, *rest = ran.lines()
    assert head.startswith("run_")
    assert "succeeded  (ticket-triage, sync)" in head
    assert "  output" in rest
    assert "    billing" in rest


def test_a_sync_run_that_fails_exits_1_with_its_error(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = cli(
        capsys, "runs", "submit", "researcher", "--input", "q", "--mode", "sync", "--max-steps", "1"
    )
    assert ran.code == 1
    head = ran.lines()[0]
    run_id = head.split()[0]
    assert head == f"{run_id}  failed  (researcher, sync)"
    assert any(line.startswith("  error     ") for line in ran.lines())
    error = cli(capsys, "runs", "get", run_id, "--json").json()["error"]
    assert (
        ran.err == f"switchyard: error: run {run_id} failed: {error['code']}: {error['message']}\n"
    )


def test_submit_json_is_the_api_body(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run = submit(capsys, "researcher", "--input", "what is a lease?")
    assert run["status"] == "queued"
    assert run["shape"] == "async"
    assert run["links"]["events"] == f"/v1/runs/{run['run_id']}/events"


def test_submit_async_prints_how_to_follow(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "runs", "submit", "researcher", "--input", "q")
    assert ran.code == 0
    head, follow = ran.lines()
    run_id = head.split()[0]
    assert head == f"{run_id}  queued  (researcher, async)"
    assert follow == f"follow it: switchyard runs tail {run_id}"


def test_submit_sends_every_option(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    options = [
        "researcher",
        "--input-json",
        '{"question": "what is a lease?"}',
        "--thread",
        "support-1",
        "--mode",
        "async",
        "--metadata",
        '{"team": "ops"}',
        "--webhook-url",
        "https://hooks.example.com/switchyard",
        "--max-steps",
        "3",
        "--max-cost",
        "0.5",
        "--on-conflict",
        "enqueue",
        "--idempotency-key",
        "ticket-1",
    ]
    first = submit(capsys, *options)
    run = cli(capsys, "runs", "get", first["run_id"], "--json").json()
    assert run["input"] == {"question": "what is a lease?"}
    assert run["thread_id"] == "support-1"
    assert run["shape"] == "async"
    assert run["metadata"] == {"team": "ops"}
    assert run["webhook_url"] == "https://hooks.example.com/switchyard"
    assert run["budget"] == {"max_steps": 3, "max_cost_usd": 0.5}
    assert run["idempotency_key"] == "ticket-1"
    # The same Idempotency-Key and body: the same run, said so.
    again = cli(capsys, "runs", "submit", *options)
    assert again.code == 0
    assert again.lines()[0].startswith(f"{first['run_id']}  queued")
    assert again.lines()[0].endswith("(replayed)")


def test_input_from_a_file_or_stdin(
    api: Api,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = tmp_path / "ticket.txt"
    text.write_text("I was charged twice\nplease refund")
    data = tmp_path / "input.json"
    data.write_text('{"question": "q", "depth": 2}')
    from_file = submit(capsys, "researcher", "--input-file", str(text))
    from_json = submit(capsys, "researcher", "--input-json", f"@{data}")
    monkeypatch.setattr(sys, "stdin", StringIO("from stdin"))
    from_stdin = submit(capsys, "researcher", "--input-file", "-")
    inputs = [
        cli(capsys, "runs", "get", r["run_id"], "--json").json()["input"]
        for r in (from_file, from_json, from_stdin)
    ]
    assert inputs == [
        "I was charged twice\nplease refund",
        {"question": "q", "depth": 2},
        "from stdin",
    ]


def test_bad_local_options_are_one_line_before_any_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # No server at all: these fail before sending anything.
    url = "http://127.0.0.1:1"
    bad_json = cli(capsys, "runs", "submit", "x", "--input-json", "{nope", "--url", url)
    assert bad_json.code == 1
    assert_one_line_error(bad_json.err, "--input-json is not valid JSON")
    not_object = cli(capsys, "runs", "submit", "x", "--input", "y", "--metadata", "[1]")
    assert_one_line_error(not_object.err, "--metadata must be a JSON object")
    missing = cli(capsys, "runs", "submit", "x", "--input-file", str(tmp_path / "nope.txt"))
    assert_one_line_error(missing.err, f"cannot read --input-file {tmp_path / 'nope.txt'}")
    both = cli(capsys, "runs", "approve", "run_1", "--reject", "--edited-input", "{}")
    assert_one_line_error(both.err, "--edited-input goes with an approval")
    bad_url = cli(capsys, "runs", "get", "run_1", "--url", "ftp://example.com")
    assert_one_line_error(bad_url.err, "invalid API URL 'ftp://example.com'")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "runs", "submit", "researcher")  # no input
    assert ran.code == 2
    assert "one of the arguments --input --input-json --input-file is required" in ran.err


# ---- runs tail -------------------------------------------------------------------------------


def test_tail_follows_a_queued_run_as_a_worker_executes_it(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = submit(capsys, "researcher", "--input", "what is a lease?")["run_id"]
    worker = threading.Thread(target=run_worker, args=(api.svc,))
    worker.start()  # whether it is done before tail starts or not, tail sees every event
    try:
        ran = cli(capsys, "runs", "tail", run_id)
    finally:
        worker.join(timeout=60)
    assert ran.code == 0, ran.err
    lines = ran.lines()
    assert lines[0].startswith(f"following {run_id} (researcher), ")
    events = [line for line in lines if line.startswith("#")]
    assert "run.status         -> queued (researcher)" in events[0]
    assert any("step.completed     step 1  claude-sonnet-4-6  in " in e for e in events)
    assert any("tool.called        step 1  search_docs(" in e for e in events)
    assert any("tool.completed     step 1  search_docs ok (" in e for e in events)
    assert "-> succeeded" in events[-1]
    seqs = [int(e.split()[0][1:]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order
    done = lines.index(next(line for line in lines if line.startswith("succeeded: ")))
    assert done == len(events) + 1
    assert lines[done + 1 :]  # the output follows


def test_submit_tail_json_is_json_lines(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "runs", "submit", "ticket-triage", "--input", "refund", "--tail", "--json")
    assert ran.code == 0, ran.err
    submitted, *events = [json.loads(line) for line in ran.lines()]
    assert submitted["status"] == "succeeded"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["type"] for e in events} == {"run.status", "step.completed"}
    assert set(events[0]) == {"seq", "type", "at", "data"}
    assert events[-1]["data"]["status"] == "succeeded"


def test_tail_waits_through_an_approval(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    """As a user sees it: `runs tail` in a terminal prints the pause and the command that
    ends it, keeps following, and exits 0 once the approved run has succeeded."""
    run_id = paused_ops_run(capsys, api)
    tail = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "runs", "tail", run_id],
        env={
            **{k: v for k, v in os.environ.items() if k not in CLI_ENV},
            "SWITCHYARD_URL": api.url,
            "SWITCHYARD_API_KEY": api.key,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        seen: list[str] = []
        for line in tail.stdout:  # blocks until tail prints the next line
            seen.append(line)
            if line.startswith("awaiting approval: "):
                break
        assert seen[-1].startswith(f"awaiting approval: switchyard runs approve {run_id}")
        assert any("needs approval: restart_service(" in line for line in seen)
        # A person approves (straight through the use case: the tail's long-poll is in
        # flight, and the API handler serves one request at a time per process).
        asyncio.run(service.approve_run(api.svc, "acme", run_id, ApprovalBody(decision="approve")))
        assert run_worker(api.svc) == ["succeeded"]
        rest, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    assert err == ""
    assert "approval.decided   step 2  approve" in rest
    assert "restart_service ok" in rest
    assert "-> succeeded" in rest
    assert '"restarted":"checkout"' in rest


def test_tail_of_a_failed_run_exits_1_with_its_error(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = submit(capsys, "researcher", "--input", "q", "--max-steps", "1")["run_id"]
    assert run_worker(api.svc) == ["failed"]
    ran = cli(capsys, "runs", "tail", run_id)
    assert ran.code == 1
    assert "-> failed (" in ran.out
    assert ran.lines()[-1].startswith("failed: ")
    error = cli(capsys, "runs", "get", run_id, "--json").json()["error"]
    assert_one_line_error(ran.err, f"run {run_id} failed: {error['code']}: ")


def test_tail_no_follow_and_after(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = submit(capsys, "researcher", "--input", "q")["run_id"]
    queued = cli(capsys, "runs", "tail", run_id, "--no-follow")
    assert queued.code == 0  # not finished: nothing to report but what is there
    assert [line.split()[2:] for line in queued.lines()[1:]] == [
        ["run.status", "->", "queued", "(researcher)"]
    ]
    run_worker(api.svc)
    every = cli(capsys, "runs", "tail", run_id, "--json")
    seqs = [json.loads(line)["seq"] for line in every.lines()]
    later = cli(capsys, "runs", "tail", run_id, "--after", "3", "--json")
    assert [json.loads(line)["seq"] for line in later.lines()] == seqs[3:]
    past = cli(capsys, "runs", "tail", run_id, "--after", str(seqs[-1] + 10))
    assert past.code == 0  # nothing after the cursor, and the run is over: done at once
    assert not any(line.startswith("#") for line in past.lines())


# ---- get, list, cancel, approve ---------------------------------------------------------------


def test_get_shows_a_run(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = paused_ops_run(capsys, api)
    ran = cli(capsys, "runs", "get", run_id)
    assert ran.code == 0
    lines = ran.lines()
    assert lines[0] == f"{run_id}  awaiting_approval  (ops-assistant, async)"
    assert lines[1].startswith("  usage     2 steps, in ")
    assert any(line.startswith("  awaits approval: restart_service({") for line in lines)
    assert lines[-1].startswith(f"awaiting approval: switchyard runs approve {run_id}")
    as_json = cli(capsys, "runs", "get", run_id, "--json").json()
    assert as_json["pending_approval"]["calls"][0]["name"] == "restart_service"


def test_list_filters_pages_and_all(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ids = [submit(capsys, "ticket-triage", "--input", f"t{i}")["run_id"] for i in range(3)]
    submit(capsys, "researcher", "--input", "q")
    first = cli(capsys, "runs", "list", "--agent", "ticket-triage", "--limit", "2")
    assert first.code == 0
    header, one, two, more = first.lines()
    assert header.split() == ["RUN", "AGENT", "STATUS", "SHAPE", "THREAD", "CREATED"]
    assert [one.split()[0], two.split()[0]] == [ids[2], ids[1]]  # newest first
    assert one.split()[1:4] == ["ticket-triage", "succeeded", "sync"]
    cursor = more.split()[-3]
    assert more == (
        f"more: switchyard runs list --agent ticket-triage --limit 2 --cursor {cursor}  (or --all)"
    )
    rest = cli(
        capsys, "runs", "list", "--agent", "ticket-triage", "--limit", "2", "--cursor", cursor
    )
    assert [line.split()[0] for line in rest.lines()[1:]] == [ids[0]]
    everything = cli(capsys, "runs", "list", "--limit", "1", "--all", "--json").json()
    assert len(everything["runs"]) == 4
    assert everything["next_cursor"] is None
    queued = cli(capsys, "runs", "list", "--status", "queued", "--json").json()
    assert [r["agent"] for r in queued["runs"]] == ["researcher"]
    nothing = cli(capsys, "runs", "list", "--thread", "no-such-thread")
    assert nothing.out == "no runs\n"


def test_cancel_then_tail_exits_1(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = submit(capsys, "researcher", "--input", "q")["run_id"]
    ran = cli(capsys, "runs", "cancel", run_id)
    assert ran.code == 0
    assert ran.out == (
        f"cancel requested for {run_id} (now queued): it stops at its next step boundary\n"
    )
    assert run_worker(api.svc) == ["cancelled"]
    tail = cli(capsys, "runs", "tail", run_id)
    assert tail.code == 1
    assert "-> cancelled" in tail.out
    assert_one_line_error(tail.err, f"run {run_id} cancelled")
    again = cli(capsys, "runs", "cancel", run_id, "--json")
    assert again.code == 1
    assert again.out == ""
    assert_one_line_error(again.err, "invalid_state: ")
    assert again.err.rstrip().endswith("(status: cancelled)")


def test_approve_reject_and_edited_input(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    approved = paused_ops_run(capsys, api)
    ran = cli(capsys, "runs", "approve", approved, "--comment", "go ahead")
    assert ran.code == 0, ran.err
    assert ran.out == (
        f"approved: {approved} is queued; follow it: switchyard runs tail {approved}\n"
    )
    assert run_worker(api.svc) == ["succeeded"]
    events = cli(capsys, "runs", "tail", approved, "--json").lines()
    decided = [json.loads(e) for e in events if '"approval.decided"' in e]
    assert decided[0]["data"]["decision"] == "approve"
    assert decided[0]["data"]["comment"] == "go ahead"
    # Deciding twice: the API's 409, one line.
    twice = cli(capsys, "runs", "approve", approved)
    assert twice.code == 1
    assert_one_line_error(twice.err, "invalid_state: ")

    rejected = paused_ops_run(capsys, api)
    body = cli(capsys, "runs", "approve", rejected, "--reject", "--json").json()
    assert body["status"] == "queued"
    assert body["pending_approval"]["decision"]["decision"] == "reject"
    run_worker(api.svc)

    edited = paused_ops_run(capsys, api)
    new_input = '{"service": "search", "reason": "edited by a human"}'
    assert cli(capsys, "runs", "approve", edited, "--edited-input", new_input).code == 0
    assert run_worker(api.svc) == ["succeeded"]
    output = cli(capsys, "runs", "get", edited, "--json").json()["output"]
    assert '"restarted":"search"' in output


# ---- agents, usage, jobs ----------------------------------------------------------------------


def test_agents_list_asks_the_api_when_one_is_named(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = cli(capsys, "agents", "list")
    assert ran.code == 0
    rows = {line.split()[0]: line for line in ran.lines()[1:-1]}
    assert set(rows) == {"ops-assistant", "researcher", "section-summarizer", "ticket-triage"}
    assert "restart_service*!" in rows["ops-assistant"]
    body = cli(capsys, "agents", "list", "--json").json()
    assert body == {"agents": [a.describe() for a in api.svc.registry]}


def test_agents_list_local_needs_no_server(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_URL", "http://127.0.0.1:1")  # nothing listens there
    local = cli(capsys, "agents", "list", "--local", "--json")
    assert local.code == 0, local.err
    assert {a["name"] for a in local.json()["agents"]} == {
        "ops-assistant",
        "researcher",
        "section-summarizer",
        "ticket-triage",
    }
    remote = cli(capsys, "agents", "list")
    assert remote.code == 1
    assert_one_line_error(remote.err, "cannot connect to http://127.0.0.1:1")


# ---- jobs and pipelines -----------------------------------------------------------------------

DOCUMENT = {"bucket": "docs", "key": "inbox/q3.md"}
MARKDOWN = b"# Q3\nRevenue up.\n# Risks\nSupply chain.\n"


class _Document:
    """The StageContext the extract stage reads the document through."""

    job_id = "job"
    tenant = "acme"
    pipeline = "document-review"
    stage = "extract"
    idempotency_key = "k"

    def read_object(self, bucket: str, key: str) -> bytes:
        return MARKDOWN

    def write_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        raise AssertionError("extract writes nothing")


def _workflows(api: Api) -> MemoryWorkflows:
    assert isinstance(api.svc.workflows, MemoryWorkflows)
    return api.svc.workflows


def _call(job_id: str, stage: str, data: Any, **kwargs: Any) -> FunctionCall:
    return FunctionCall(
        job_id=job_id, tenant="acme", pipeline="document-review", stage=stage, data=data, **kwargs
    )


def _extract(api: Api, job_id: str, data: Any = DOCUMENT) -> None:
    call = _call(job_id, "extract", data)
    asyncio.run(stages.run_function_stage(api.svc, call, lambda attempt_id: _Document()))


def _open_gate(api: Api, job_id: str, token: str = "tok-1") -> None:
    data = {**DOCUMENT, "summaries": ["Revenue rose.", "Supply is tight."]}
    call = _call(job_id, "review", data, action="gate", task_token=token)
    asyncio.run(stages.open_gate(api.svc, call))


def _end(api: Api, job_id: str, status: ExecutionStatus, **kwargs: Any) -> None:
    arn = asyncio.run(api.svc.jobs.get_job(job_id)).execution_arn
    _workflows(api).set_execution(arn, status, **kwargs)


def start_job(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    ran = cli(capsys, "jobs", "start", "document-review", "--json", *args)
    assert ran.code == 0, ran.err
    return str(ran.json()["job_id"])


def test_jobs_start_shows_the_job_and_how_to_follow_it(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--input-json", json.dumps(DOCUMENT), "--metadata", '{"ticket": "T-1"}')
    key = ("--idempotency-key", "q3")
    ran = cli(capsys, "jobs", "start", "document-review", *args, *key)
    assert ran.code == 0, ran.err
    head, *rest = ran.lines()
    job_id = head.split()[0]
    assert head == f"{job_id}  running  (document-review)"
    assert rest[0] == "  cost      $0.0000"
    assert '  metadata  {"ticket":"T-1"}' in rest
    table = rest[rest.index("  stages") + 1 :][:5]
    assert table[0].split() == ["STAGE", "KIND", "STATUS", "RUNS", "COST"]
    assert [row.split()[:3] for row in table[1:]] == [
        ["extract", "function", "pending"],
        ["summarize-section", "agent", "pending"],
        ["review", "approval", "pending"],
        ["publish", "function", "pending"],
    ]
    assert rest[-1] == f"follow it: switchyard jobs watch {job_id}"
    again = cli(capsys, "jobs", "start", "document-review", *args, *key)
    assert again.lines()[0] == f"{job_id}  running  (document-review)  (replayed)"
    ((_machine, name, execution_input),) = {
        (m, n, json.dumps(i)) for m, n, i in _workflows(api).starts
    }
    assert name == job_id
    assert json.loads(execution_input)["input"] == DOCUMENT


def test_jobs_start_refuses_an_input_that_is_not_an_object_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = ("--url", "http://127.0.0.1:1")  # nothing listens there
    ran = cli(capsys, "jobs", "start", "document-review", "--input-json", "[1]", *url)
    assert ran.code == 1
    assert_one_line_error(ran.err, "--input-json must be a JSON object")
    bad = cli(capsys, "jobs", "watch", "job_1", "--interval", "0", *url)
    assert bad.code == 2  # argparse: --interval out of bounds


def test_jobs_get_shows_stages_the_pending_gate_and_the_command_to_decide_it(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    _extract(api, job_id)
    _open_gate(api, job_id)
    ran = cli(capsys, "jobs", "get", job_id)
    assert ran.code == 0, ran.err
    lines = ran.lines()
    assert lines[0] == f"{job_id}  awaiting_approval  (document-review)"
    rows = {line.split()[0]: line.split() for line in lines if line.startswith("    ")}
    assert rows["extract"][:4] == ["extract", "function", "succeeded", "-"]
    assert rows["review"][:3] == ["review", "approval", "awaiting_approval"]
    assert "  awaits approval at review: Publish these section summaries?" in lines
    assert lines[-1] == (
        f"  decide: switchyard jobs approve {job_id}  (or --reject; --comment TEXT)"
    )
    assert "tok-1" not in ran.out
    as_json = cli(capsys, "jobs", "get", job_id, "--json").json()
    assert as_json["pending_approvals"][0]["stage"] == "review"


def test_jobs_approve_answers_the_gate_and_a_second_decision_is_one_line(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    _open_gate(api, job_id)
    ran = cli(capsys, "jobs", "approve", job_id, "--stage", "review", "--comment", "ship it")
    assert ran.code == 0, ran.err
    assert ran.lines()[0] == f"approved at review: {job_id}"
    assert ran.lines()[1] == f"{job_id}  running  (document-review)"
    assert ran.lines()[-1] == f"follow it: switchyard jobs watch {job_id}"
    kind, data = _workflows(api).answers["tok-1"]
    assert kind == "success"
    assert data["review"]["comment"] == "ship it"
    twice = cli(capsys, "jobs", "approve", job_id, "--reject")
    assert twice.code == 1
    assert twice.out == ""
    assert_one_line_error(twice.err, f"invalid_state: job {job_id} has no pending approval")


def test_jobs_reject_fails_the_gate(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    _open_gate(api, job_id)
    body = cli(capsys, "jobs", "approve", job_id, "--reject", "--comment", "no", "--json").json()
    assert body["job_id"] == job_id
    assert _workflows(api).answers["tok-1"] == (
        "failure",
        {"error": "ApprovalRejected", "cause": "no"},
    )


def test_jobs_cancel_then_a_second_cancel_is_one_line(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    ran = cli(capsys, "jobs", "cancel", job_id)
    assert ran.code == 0, ran.err
    assert ran.lines()[:2] == [f"cancelled: {job_id}", f"{job_id}  cancelled  (document-review)"]
    assert "  error     Cancelled: cancelled through the API" in ran.lines()
    assert len(_workflows(api).stops) == 1
    again = cli(capsys, "jobs", "cancel", job_id)
    assert again.code == 1
    assert_one_line_error(again.err, f"invalid_state: job {job_id} already cancelled")


class _Clock:
    """``time`` for ``jobs watch``: sleeping advances a fake clock and runs the next step of
    the script (what the platform does meanwhile)."""

    def __init__(self, *steps: Any) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.steps = list(steps)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.steps:
            self.steps.pop(0)()

    def monotonic(self) -> float:
        return self.now

    strftime = staticmethod(time.strftime)
    gmtime = staticmethod(time.gmtime)


def _watching(monkeypatch: pytest.MonkeyPatch, *steps: Any) -> _Clock:
    clock = _Clock(*steps)
    monkeypatch.setattr(jobs_module, "time", clock)
    return clock


def _untimed(lines: list[str]) -> list[str]:
    """The lines with their leading HH:MM:SS taken off."""
    return [line[10:] if line[:8].count(":") == 2 else line for line in lines]


def test_jobs_watch_prints_each_stage_change_and_the_approval_hint(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    output = {"published": {"bucket": "docs", "key": "published/inbox/q3.md.summary.json"}}

    def approve() -> None:
        body = JobApprovalBody(decision="approve")
        asyncio.run(job_logic.decide_job_approval(api.svc, "acme", job_id, body))

    clock = _watching(
        monkeypatch,
        lambda: _extract(api, job_id),
        lambda: None,  # nothing changes: the poll backs off
        lambda: _open_gate(api, job_id),
        approve,
        lambda: _end(api, job_id, ExecutionStatus.SUCCEEDED, output=output),
    )
    ran = cli(capsys, "jobs", "watch", job_id)
    assert ran.code == 0, ran.err
    assert ran.err == ""
    lines = _untimed(ran.lines())
    assert lines[0] == f"watching {job_id}  running  (document-review); Ctrl-C stops"
    assert [line.split() for line in lines[1:3]] == [
        ["extract", "succeeded"],
        ["review", "awaiting_approval"],
    ]
    assert lines[3] == "awaits approval at review: Publish these section summaries?"
    assert lines[4] == f"decide: switchyard jobs approve {job_id}  (or --reject; --comment TEXT)"
    assert lines[5].split() == ["review", "succeeded"]
    assert lines[6] == "succeeded: $0.0000"
    assert json.loads("\n".join(lines[7:])) == output
    assert clock.slept == [1.0, 1.0, 1.5, 1.0, 1.0]


def test_jobs_watch_of_a_failed_job_exits_1_with_the_stage_and_its_cause(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = start_job(capsys, "--input-json", '{"bucket": "docs"}')

    def fail() -> None:
        with pytest.raises(stages.StageFailed):
            _extract(api, job_id, {"bucket": "docs"})
        _end(api, job_id, ExecutionStatus.FAILED, error="StageFailed")

    _watching(monkeypatch, fail)
    ran = cli(capsys, "jobs", "watch", job_id)
    assert ran.code == 1
    lines = _untimed(ran.lines())
    assert lines[1].split()[:2] == ["extract", "failed"]
    assert "DocumentError: the job input needs the document's bucket and key" in lines[1]
    assert lines[-1] == "failed: $0.0000"
    assert_one_line_error(
        ran.err,
        f"job {job_id} failed: StageFailed at extract: DocumentError: the job input needs",
    )


def test_jobs_watch_json_and_timeout(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = start_job(capsys, "--input-json", json.dumps(DOCUMENT))
    clock = _watching(monkeypatch, lambda: _extract(api, job_id))
    ran = cli(capsys, "jobs", "watch", job_id, "--timeout", "30", "--json")
    assert ran.code == 1
    views = [json.loads(line) for line in ran.lines()]
    assert [v["stages"][0]["status"] for v in views] == ["pending", "succeeded"]
    assert_one_line_error(ran.err, f"job {job_id} is still running after 30 s")
    # Nothing moved after the extract: the interval grew, never past the bound.
    assert clock.slept[:3] == [1.0, 1.0, 1.5]
    assert max(clock.slept) <= jobs_module.MAX_INTERVAL_S
    assert sum(clock.slept) == pytest.approx(30)


def test_jobs_start_watch_and_a_cancelled_job(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def cancel() -> None:
        (job_id,) = [name for _m, name, _i in _workflows(api).starts]
        asyncio.run(job_logic.cancel_job(api.svc, "acme", job_id))

    _watching(monkeypatch, cancel)
    ran = cli(capsys, "jobs", "start", "document-review", "--input-json", "{}", "--watch")
    assert ran.code == 1
    job_id = ran.lines()[0].split()[0]
    assert ran.lines()[0] == f"{job_id}  running  (document-review)"
    assert _untimed(ran.lines())[-1] == "cancelled: $0.0000"
    assert_one_line_error(ran.err, f"job {job_id} cancelled: Cancelled: cancelled through")


def test_pipelines_lists_the_apis_pipelines(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    ran = cli(capsys, "pipelines")
    assert ran.code == 0, ran.err
    assert ran.lines() == [
        "document-review  (deployed)",
        "  Summarise a document section by section; publish after a human approves.",
        "  stages: extract -> summarize[map: summarize-section(agent)] -> review(approval)"
        " -> publish",
    ]
    listed = cli(capsys, "pipelines", "list", "--json").json()
    assert [p["name"] for p in listed["pipelines"]] == ["document-review"]


def test_job_errors_are_one_line_as_a_user_sees_them(api: Api) -> None:
    env = {"SWITCHYARD_URL": api.url, "SWITCHYARD_API_KEY": api.key}
    done = cli_process("jobs", "get", "job_NOPE", env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "switchyard: error: not_found: job job_NOPE not found\n"
    unknown = cli_process("jobs", "start", "nightly", env=env)
    assert unknown.returncode == 1
    assert_one_line_error(unknown.stderr, "unknown_pipeline: unknown pipeline 'nightly'")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Recorder:
    """An HTTP server answering each request with the next scripted (status, body)."""

    url: str = ""
    answers: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    state = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            state.requests.append(
                Recorded(
                    self.command,
                    split.path,
                    parse_qs(split.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            status, body = state.answers.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url
        yield state


REPORT = {
    "from": "2026-01-01T00:00:00Z",
    "to": "2026-01-02T00:00:00Z",
    "group_by": "tenant",
    "groups": [
        {
            "key": "acme",
            "runs": 3,
            "steps": 7,
            "input_tokens": 1200,
            "output_tokens": 300,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cost_usd": 0.0123,
        }
    ],
    "total": {
        "runs": 3,
        "steps": 7,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cost_usd": 0.0123,
    },
}


def test_usage_sends_its_query_and_shows_the_report(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder.answers += [(200, REPORT), (200, REPORT)]
    args = ("--group-by", "tenant", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02")
    ran = cli(capsys, "usage", *args, "--url", recorder.url, "--api-key", "sy_k")
    assert ran.code == 0, ran.err
    (request,) = recorder.requests
    assert (request.method, request.path) == ("GET", "/v1/usage")
    assert request.query == {
        "group_by": ["tenant"],
        "from": ["2026-01-01T00:00:00Z"],
        "to": ["2026-01-02"],
    }
    assert request.headers["authorization"] == "Bearer sy_k"
    lines = ran.lines()
    assert lines[0] == "usage from 2026-01-01 00:00:00 to 2026-01-02 00:00:00, by tenant"
    assert lines[2].split() == ["acme", "3", "7", "1,200", "300", "0", "$0.0123"]
    assert lines[3].split()[0] == "TOTAL"
    as_json = cli(capsys, "usage", "--url", recorder.url, "--json")
    assert as_json.json() == REPORT
    assert recorder.requests[1].query == {}  # the API's defaults


def test_usage_error_is_one_line(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    recorder.answers.append(
        (
            501,
            {
                "error": {
                    "code": "not_implemented",
                    "message": "usage (tokens and cost): not implemented yet",
                    "details": None,
                }
            },
        )
    )
    ran = cli(capsys, "usage", "--url", recorder.url)
    assert ran.code == 1
    assert ran.out == ""
    assert ran.err == (
        "switchyard: error: not_implemented: usage (tokens and cost): not implemented yet\n"
    )


def test_jobs_send_the_documented_requests(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = {"job_id": "job_1", "status": "running", "pipeline": "nightly"}
    recorder.answers += [
        (201, job),
        (200, {**job, "status": "awaiting_approval"}),
        (202, job),
        (200, {**job, "status": "cancelled"}),
        (503, {"message": "Service Unavailable"}),  # a passing gateway error: polled again
        (200, {**job, "status": "succeeded", "output": "done"}),
    ]
    url = ("--url", recorder.url)
    started = cli(
        capsys,
        "jobs",
        "start",
        "nightly",
        "--input-json",
        '{"day": 1}',
        "--metadata",
        '{"team": "ops"}',
        "--idempotency-key",
        "n-1",
        *url,
    )
    assert started.code == 0, started.err
    assert started.lines()[0] == "job_1  running  (nightly)"
    shown = cli(capsys, "jobs", "get", "job_1", "--json", *url)
    assert shown.json()["status"] == "awaiting_approval"
    approved = cli(
        capsys,
        "jobs",
        "approve",
        "job_1",
        "--reject",
        "--comment",
        "not today",
        "--stage",
        "legal",
        *url,
    )
    assert approved.lines()[0] == "rejected at legal: job_1"
    cancelled = cli(capsys, "jobs", "cancel", "job_1", "--json", *url)
    assert cancelled.json()["status"] == "cancelled"
    clock = _watching(monkeypatch)
    watched = cli(capsys, "jobs", "watch", "job_1", *url)
    assert watched.code == 0, watched.err
    assert clock.slept == [1]  # the retry's backoff
    start, get, approve, cancel, *polls = recorder.requests
    assert (start.method, start.path) == ("POST", "/v1/jobs")
    assert start.body == {"pipeline": "nightly", "input": {"day": 1}, "metadata": {"team": "ops"}}
    assert start.headers["idempotency-key"] == "n-1"
    assert (get.method, get.path) == ("GET", "/v1/jobs/job_1")
    assert (approve.method, approve.path) == ("POST", "/v1/jobs/job_1/approval")
    assert approve.body == {"decision": "reject", "comment": "not today", "stage": "legal"}
    assert (cancel.method, cancel.path, cancel.body) == ("POST", "/v1/jobs/job_1/cancel", None)
    assert [(p.method, p.path) for p in polls] == [("GET", "/v1/jobs/job_1")] * 2


def test_tail_long_polls_and_rides_out_a_gateway_timeout(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(runs_module, "time", SimpleNamespace(sleep=slept.append))

    def status(seq: int, value: str) -> dict[str, Any]:
        at = "2026-01-01T10:00:00Z"
        return {"seq": seq, "type": "run.status", "at": at, "data": {"status": value}}

    run = {"run_id": "run_1", "agent": "researcher", "status": "running"}
    recorder.answers += [
        (200, run),
        (503, {"message": "Service Unavailable"}),  # what the gateway says after 30 s
        (200, {"events": [status(1, "running")], "next_after": 1}),
        (200, {"events": [status(2, "succeeded")], "next_after": 2}),
        (200, {**run, "status": "succeeded", "output": "done", "steps": 1}),
    ]
    ran = cli(capsys, "runs", "tail", "run_1", "--url", recorder.url)
    assert ran.code == 0, ran.err
    assert slept == [1]
    assert ran.lines()[1:] == [
        "#1    10:00:00  run.status         -> running",
        "#2    10:00:00  run.status         -> succeeded",
        "succeeded: 1 step, in 0 / out 0 tokens, $0.0000",
        "done",
    ]
    polls = [(r.path, r.query) for r in recorder.requests if r.path.endswith("/events")]
    first = {"after": ["0"], "wait": ["0"], "limit": ["100"]}
    assert polls == [
        ("/v1/runs/run_1/events", first),
        ("/v1/runs/run_1/events", first),
        ("/v1/runs/run_1/events", {"after": ["1"], "wait": ["20"], "limit": ["100"]}),
    ]


# ---- errors, as a user sees them (subprocesses) ------------------------------------------------


def test_api_error_is_one_line_and_exit_1(api: Api) -> None:
    env = {"SWITCHYARD_URL": api.url, "SWITCHYARD_API_KEY": api.key}
    done = cli_process("runs", "get", "run_NOPE", env=env)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "switchyard: error: not_found: run run_NOPE not found\n"
    unknown = cli_process("runs", "submit", "nope", "--input", "x", "--json", env=env)
    assert unknown.returncode == 1
    assert_one_line_error(unknown.stderr, "unknown_agent: unknown agent 'nope' (known: ")


def test_missing_or_refused_key_is_one_line_and_never_printed(api: Api) -> None:
    no_key = cli_process("runs", "list", env={"SWITCHYARD_URL": api.url})
    assert no_key.returncode == 1
    assert no_key.stderr == (
        "switchyard: error: unauthorized: Unauthorized: no API key was sent: "
        "set SWITCHYARD_API_KEY or pass --api-key\n"
    )
    revoked = api.key[:-4] + "AAAA"
    refused = cli_process("runs", "list", "--api-key", revoked, env={"SWITCHYARD_URL": api.url})
    assert refused.returncode == 1
    assert_one_line_error(refused.stderr, "forbidden: Forbidden: the API key was refused")
    assert revoked not in refused.stderr + refused.stdout


def test_unreachable_url_is_one_line_naming_it() -> None:
    with socket.socket() as s:  # a port nothing listens on (it is closed again at once)
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    done = cli_process("runs", "list", env={"SWITCHYARD_URL": url, "SWITCHYARD_API_KEY": "sy_x"})
    assert done.returncode == 1
    assert done.stdout == ""
    assert_one_line_error(done.stderr, f"cannot connect to {url} (connection refused)")
    assert "make dev" in done.stderr


def test_flags_win_over_the_environment_in_either_position(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHYARD_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("SWITCHYARD_API_KEY", "sy_wrong")
    after = cli(capsys, "runs", "list", "--url", api.url, "--api-key", api.key, "--json")
    assert after.code == 0, after.err
    before = cli(capsys, "--url", api.url, "--api-key", api.key, "--json", "runs", "list")
    assert before.code == 0, before.err
    assert before.json() == after.json()


def test_help_works_as_a_module() -> None:
    done = cli_process("--help")
    assert done.returncode == 0
    for command in ("runs", "agents", "jobs", "pipelines", "usage", "keys", "dlq", "dev", "tour"):
        assert f"    {command} " in done.stdout
