"""`make dev` with ``ANTHROPIC_API_KEY`` set: the local stack on the real Anthropic SDK, end to end.

The SDK in the API function's containers and in the worker processes reaches the fake
Messages API server (``tests.support.fake_anthropic``) through ``ANTHROPIC_BASE_URL``, which
they inherit from the `make dev` process, as a developer's shell would hand it down. The fake
server answers as the offline model does (so ``researcher`` calls its tools and finishes),
with fixed token counts per model so the runs' usage can be checked against what it reported.

The steps run in order, as one session would: the banner, a sync run, an async run, usage,
then Ctrl-C (SIGINT to the process group) must stop everything; the test key must appear in
no log file and nowhere on the console.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.fake_anthropic import (
    MESSAGES_PATH,
    FakeAnthropicServer,
    OfflineResponder,
    RecordedRequest,
    Reply,
    ScriptItem,
)
from tests.support.make_dev import DevStack, kill_make_dev, session_processes, start_make_dev
from tests.support.moto_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TEST_KEY = f"sk-ant-test-e2e-{uuid.uuid4().hex}"
TRIAGE_MODEL = "claude-haiku-4-5"  # agents/classifier.py
RESEARCH_MODEL = "claude-sonnet-4-6"  # agents/research.py
# What the fake server reports per call, by model: distinct, non-zero in every field, and
# small enough for ticket-triage's per-call and per-run token limits.
USAGE_BY_MODEL: dict[str, dict[str, int]] = {
    TRIAGE_MODEL: {
        "input_tokens": 321,
        "output_tokens": 12,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 40,
    },
    RESEARCH_MODEL: {
        "input_tokens": 654,
        "output_tokens": 23,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 80,
    },
}
TOKEN_FIELDS = tuple(USAGE_BY_MODEL[TRIAGE_MODEL])
BANNER_MODEL_LINE = "model      the Anthropic API (ANTHROPIC_API_KEY is set)"  # console._banner


class FixedUsageResponder:
    """The offline model's replies, with the token counts of ``USAGE_BY_MODEL``."""

    def __init__(self) -> None:
        self._offline = OfflineResponder()

    def __call__(self, body: dict[str, Any]) -> ScriptItem:
        item = self._offline(body)
        usage = USAGE_BY_MODEL.get(body["model"])
        if usage is None or not isinstance(item, Reply):
            return item
        return dataclasses.replace(item, usage=usage)


@dataclasses.dataclass
class Session:
    """The stack, the fake API it talks to, and what the runs' inputs were marked with."""

    stack: DevStack
    fake: FakeAnthropicServer
    markers: dict[str, str] = dataclasses.field(default_factory=dict)
    runs: dict[str, str] = dataclasses.field(default_factory=dict)  # agent -> run id
    output: str = ""  # the whole console output, once stopped

    def requests_for(self, agent: str) -> list[RecordedRequest]:
        """Messages API calls whose conversation carries ``agent``'s run marker."""
        marker = self.markers[agent]
        return [
            r
            for r in self.fake.requests
            if r.path == MESSAGES_PATH
            and isinstance(r.body, dict)
            and marker in json.dumps(r.body.get("messages", []))
        ]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer(FixedUsageResponder(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture(scope="module")
def session(
    fake: FakeAnthropicServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    state_dir = tmp_path_factory.mktemp("dev-anthropic-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANTHROPIC_"))}
    env["SWITCHYARD_PORT"] = str(free_port())
    env["SWITCHYARD_EFFECTS_DIR"] = str(state_dir / "effects")
    env["ANTHROPIC_API_KEY"] = TEST_KEY
    env["ANTHROPIC_BASE_URL"] = fake.base_url
    stack = start_make_dev(state_dir, env, "--workers 1")
    yield Session(stack, fake)
    kill_make_dev(stack)


def _assert_requests(requests: list[RecordedRequest], model: str) -> None:
    assert requests
    for request in requests:
        assert request.status == 200, request
        assert request.body["model"] == model
        headers = request.headers
        assert (
            headers.get("authorization") == f"Bearer {TEST_KEY}"
            or headers.get("x-api-key") == TEST_KEY
        ), {k: v for k, v in headers.items() if k in ("authorization", "x-api-key")}
        assert headers.get("anthropic-version")


def _assert_usage(run: dict[str, Any], requests: list[RecordedRequest]) -> None:
    """The run's token counts are the sum of what the fake server reported for its calls."""
    expected = {
        name: sum(USAGE_BY_MODEL[r.body["model"]][name] for r in requests) for name in TOKEN_FIELDS
    }
    assert {name: run["usage"][name] for name in TOKEN_FIELDS} == expected, run["usage"]
    assert run["usage"]["cost_usd"] > 0


# ---- the session, in order ---------------------------------------------------------------


def test_banner_says_the_anthropic_api_is_used(session: Session) -> None:
    banner = "\n".join(session.stack.lines)
    assert BANNER_MODEL_LINE in banner, banner
    assert "offline model" not in banner
    status, health = session.stack.call("GET", "/v1/health")
    assert status == 200, health


def test_sync_run_is_answered_inline_through_the_fake_api(session: Session) -> None:
    marker = session.markers["ticket-triage"] = f"e2e-{uuid.uuid4().hex[:12]}"
    run = session.stack.ok(
        "POST", "/v1/runs", {"agent": "ticket-triage", "input": f"Invoice is wrong ({marker})"}
    )
    session.runs["ticket-triage"] = run["run_id"]
    assert run["status"] == "succeeded", run
    assert run["shape"] == "sync"
    assert run["output"]
    requests = session.requests_for("ticket-triage")
    _assert_requests(requests, TRIAGE_MODEL)
    assert run["steps"] == len(requests) == 1
    _assert_usage(run, requests)


def test_async_run_is_executed_by_a_worker_through_the_fake_api(session: Session) -> None:
    stack = session.stack
    marker = session.markers["researcher"] = f"e2e-{uuid.uuid4().hex[:12]}"
    submitted = stack.ok(
        "POST", "/v1/runs", {"agent": "researcher", "input": f"durable agents ({marker})"}
    )
    run_id = session.runs["researcher"] = submitted["run_id"]
    assert submitted["status"] == "queued", submitted
    run = stack.finish(run_id, timeout_s=120)
    assert run["status"] == "succeeded", run
    events = stack.events_until(run_id, lambda evs: True)
    workers = {e["data"].get("worker") for e in events if e["type"] == "run.status"} - {None}
    assert workers, f"no worker claimed the run: {events}"
    requests = session.requests_for("researcher")
    _assert_requests(requests, RESEARCH_MODEL)
    # The fake answers as the offline model: one call per tool, then the final answer.
    assert run["steps"] == len(requests) >= 2
    called = [
        m["content"]
        for m in requests[-1].body["messages"]
        if m["role"] == "assistant" and isinstance(m["content"], list)
    ]
    assert any(b.get("type") == "tool_use" for blocks in called for b in blocks)
    _assert_usage(run, requests)


def test_usage_report_reflects_the_fake_api_token_counts(session: Session) -> None:
    # Counters are written by each process every few seconds (usage_flush_s).
    usage = session.stack.get_until(
        "/v1/usage?group_by=agent",
        lambda u: {"ticket-triage", "researcher"} <= {g["key"] for g in u["groups"]},
    )
    by_agent = {g["key"]: g for g in usage["groups"]}
    assert {"ticket-triage", "researcher"} <= set(by_agent), usage
    for agent in ("ticket-triage", "researcher"):
        assert by_agent[agent]["runs"] >= 1
    assert usage["total"]["cost_usd"] > 0
    # Only this session's runs exist in the stack's (fresh) state.
    requests = session.requests_for("ticket-triage") + session.requests_for("researcher")
    assert len(requests) == len(session.fake.message_bodies())


def test_ctrl_c_stops_everything(session: Session) -> None:
    stack = session.stack
    workers = [w["pid"] for w in stack.ok("GET", "/_local/workers")["workers"]]
    assert len(workers) == 1
    sid = os.getsid(stack.process.pid)
    assert set(workers) <= set(session_processes(sid))
    os.killpg(stack.process.pid, signal.SIGINT)
    stack.process.wait(timeout=90)
    assert stack.reader is not None
    stack.reader.join(timeout=10)
    session.output = "\n".join(stack.lines)
    assert "Stopped." in session.output, session.output[-3000:]
    assert session_processes(sid) == [], "processes left behind after Ctrl-C"


def test_the_key_appears_in_no_log_and_not_on_the_console(session: Session) -> None:
    assert session.output, "the stack was not stopped by the previous step"
    assert TEST_KEY not in session.output
    logs = session.stack.state_dir / "logs"
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert any(p.name == "worker-1.log" for p in files), files
    leaked = [str(p) for p in files if TEST_KEY.encode() in p.read_bytes()]
    assert leaked == [], f"the Anthropic API key is written in {leaked}"
