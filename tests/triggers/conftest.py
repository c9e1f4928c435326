"""Fixtures for the trigger, dead-letter and webhook tests: in-memory services, the sample
events under tests/events/, the functions' containers reset after each test, the stack's
queues and inbox bucket in moto (from the synthesized template), and a local HTTP receiver
for webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

import functions.dlq.handler as dlq_function
import functions.triggers as trigger_functions
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.dal.local import DeployedStack, deploy_template
from shared.logic.service import Services
from shared.logic.triggers import TriggerRules
from shared.wiring import build_services
from tests.support.http_server import serving

EVENTS = Path(__file__).resolve().parent.parent / "events"

RULES: dict[str, Any] = {
    "s3": [
        {
            "name": "invoices",
            "bucket": "acme-inbox",
            "prefix": "invoices/",
            "suffix": ".pdf",
            "agent": "researcher",
            "tenant": "acme",
            "input": {"task": "extract the totals"},
            "metadata": {"team": "finance"},
        },
        {
            "name": "everything-in-acme",
            "bucket": "acme-inbox",
            "agent": "ops-assistant",
            "tenant": "acme",
            "prefix": "audit/",
        },
    ],
    "schedules": [
        {
            "name": "nightly-digest",
            "expression": "cron(0 6 * * ? *)",
            "agent": "ops-assistant",
            "tenant": "acme",
            "input": "Summarise yesterday's incidents",
        },
        {
            "name": "hourly-check",
            "expression": "rate(1 hour)",
            "agent": "researcher",
            "input": {"question": "anything new?"},
        },
    ],
}


# Receives before the runs queue moves a message on to the transit ("failed") queue.
MAX_RECEIVES = 3

# The stack variant of the moto tests of this directory (one synth for test_dlq and
# test_s3_trigger): S3 rules on the stack's inbox bucket (no bucket named), dead letters
# visible again at once so a redrive right after a listing sees them. The two rules' key
# filters overlap, so the inbox notifies for every key under invoices/ (infra/constructs/
# triggers.py merges them): S3 delivers invoices/readme.txt, which no rule matches.
STACK_SETTINGS: dict[str, Any] = {
    "queues": {"max_receive_count": MAX_RECEIVES, "dlq_visibility_timeout_s": 0},
    "triggers": {
        "s3": [
            # The same invoices rule the direct-handler tests use, on the stack's own inbox.
            {k: v for k, v in RULES["s3"][0].items() if k != "bucket"},
            {
                "name": "archive",
                "prefix": "invoices/archive/",
                "agent": "ops-assistant",
                "tenant": "acme",
            },
        ]
    },
}
REGION = "us-east-1"


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


@pytest.fixture
def rules() -> TriggerRules:
    return TriggerRules.model_validate(RULES)


@pytest.fixture
def services(registry: AgentRegistry) -> Services:
    return build_services(Settings(), backend="memory", registry=registry)


@pytest.fixture
def stack() -> Iterator[DeployedStack]:
    """The ``STACK_SETTINGS`` stack's table, buckets and queues, deployed into moto in this
    process (``outputs`` name them; infra.constants.OUTPUT_*)."""
    with mock_aws():
        yield deploy_template(STACK_SETTINGS, region=REGION)


@pytest.fixture(autouse=True)
def _forget_function_containers() -> Iterator[None]:
    yield
    trigger_functions.configure(None)
    dlq_function.configure(None)


# ---- a webhook receiver on 127.0.0.1 ---------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (200 once the script runs out)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    retry_after: str | None = None
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with state.lock:
                state.requests.append(Received(self.path, dict(self.headers.items()), body))
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if state.retry_after is not None and status in (429, 503):
                self.send_header("Retry-After", state.retry_after)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url + "/hooks/switchyard"
        yield state
