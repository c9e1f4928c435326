"""Completion webhooks against a local HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from datetime import UTC, datetime

import pytest

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.logic.service import create_run
from shared.logic.webhooks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RetryPolicy,
    WebhookResponse,
    WebhookSender,
    WebhookTransportError,
    completion_hook,
    sign,
    verify_signature,
)
from shared.models.api import RunCreate
from shared.models.run import Run, RunError, RunStatus, Shape, Usage
from shared.observability import MASK
from shared.wiring import build_services
from tests.support.moto_server import free_port
from tests.triggers.conftest import Receiver

SECRET = "whsec_test_9f8e7d6c5b4a39281706"


def finished_run(url: str) -> Run:
    return Run(
        run_id="run_01JTESTWEBHOOK0000000000000",
        tenant="acme",
        agent="researcher",
        input="q",
        status=RunStatus.FAILED,
        webhook_url=url,
        output=None,
        error=RunError(code="budget_exceeded", message="max_steps reached"),
        usage=Usage(input_tokens=120, output_tokens=30, cost_usd=0.0012),
        finished_at=datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC),
    )


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def sender(sleeps: Sleeps, **fields: object) -> WebhookSender:
    options: dict[str, object] = {
        "secret": SECRET,
        "policy": RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=30.0),
        "timeout_s": 5.0,
        "allow_private": True,
        "sleep": sleeps,
        "rng": random.Random(7),
    }
    options.update(fields)
    return WebhookSender(**options)  # type: ignore[arg-type]


async def test_delivery_is_signed_and_verifies(receiver: Receiver) -> None:
    result = await sender(Sleeps()).deliver(finished_run(receiver.url))

    assert result.delivered
    assert result.attempts == 1
    (request,) = receiver.requests
    assert request.path == "/hooks/switchyard"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body == {
        "run_id": "run_01JTESTWEBHOOK0000000000000",
        "status": "failed",
        "agent": "researcher",
        "output": None,
        "error": {"code": "budget_exceeded", "message": "max_steps reached", "details": None},
        "usage": {
            "input_tokens": 120,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "cost_usd": 0.0012,
        },
        "finished_at": "2025-03-01T12:00:05+00:00",
    }
    timestamp = request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    assert signature.startswith("v1=")
    assert verify_signature(SECRET, timestamp, request.body, signature)
    # What a receiver must reject:
    assert not verify_signature("another-secret-123", timestamp, request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body + b" ", signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), request.body, signature)
    assert not verify_signature(SECRET, timestamp, request.body, None)


def test_verify_signature_rules() -> None:
    body = b'{"run_id":"r"}'
    now = 1_740_830_400
    header = sign(SECRET, now, body)
    expected = hmac.new(SECRET.encode(), f"{now}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"v1={expected}"
    assert verify_signature(SECRET, str(now), body.decode(), header, now=now + 299)
    assert not verify_signature(SECRET, str(now), body, header, now=now + 301)  # too old
    assert not verify_signature(SECRET, str(now), body, header, now=now - 301)  # from the future
    assert verify_signature(SECRET, now, body, header, tolerance_s=600, now=now + 500)
    rotated = f"v1={'0' * 64}, {header}"  # several signatures: one match is enough
    assert verify_signature(SECRET, now, body, rotated, now=now)
    assert not verify_signature(SECRET, "not-a-number", body, header, now=now)
    assert not verify_signature("", now, body, header, now=now)


async def test_5xx_is_retried_with_growing_delays(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    sleeps = Sleeps()
    result = await sender(sleeps).deliver(finished_run(receiver.url))

    assert result.delivered
    assert result.attempts == 3
    assert len(receiver.requests) == 3
    assert len(sleeps.delays) == 2
    first, second = sleeps.delays
    assert 0.5 <= first <= 1.0  # base 1 s with jitter: between half and all of it
    assert 1.0 <= second <= 2.0  # doubled
    assert second > first
    # One delivery id for every attempt; each attempt signed afresh and valid.
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.requests}) == 1
    for request in receiver.requests:
        assert verify_signature(
            SECRET,
            request.headers[TIMESTAMP_HEADER],
            request.body,
            request.headers[SIGNATURE_HEADER],
        )


async def test_429_is_retried_honouring_retry_after(receiver: Receiver) -> None:
    receiver.statuses = [429]
    receiver.retry_after = "7"
    sleeps = Sleeps()
    result = await sender(sleeps).deliver(finished_run(receiver.url))
    assert result.delivered
    assert sleeps.delays == [7.0]


async def test_4xx_is_not_retried(receiver: Receiver) -> None:
    receiver.statuses = [400]
    sleeps = Sleeps()
    result = await sender(sleeps).deliver(finished_run(receiver.url))
    assert not result.delivered
    assert result.attempts == 1
    assert result.status == 400
    assert len(receiver.requests) == 1
    assert sleeps.delays == []


async def test_attempts_run_out(receiver: Receiver) -> None:
    receiver.statuses = [502] * 10
    sleeps = Sleeps()
    result = await sender(sleeps, policy=RetryPolicy(attempts=4, base_delay_s=2.0)).deliver(
        finished_run(receiver.url)
    )
    assert not result.delivered
    assert (result.attempts, result.status, result.error) == (4, 502, "HTTP 502")
    assert len(receiver.requests) == 4
    ceilings = [2.0, 4.0, 8.0]
    assert len(sleeps.delays) == 3
    for delay, ceiling in zip(sleeps.delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling


async def test_connection_errors_are_retried() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        async def post(self, url: str, body: bytes, headers: object, timeout_s: float) -> object:
            self.calls += 1
            if self.calls < 3:
                raise WebhookTransportError("ConnectionRefusedError: [Errno 111] refused")
            return WebhookResponse(status=204)

    transport = Flaky()
    sleeps = Sleeps()
    result = await sender(sleeps, transport=transport).deliver(finished_run("http://hooks.test/x"))
    assert result.delivered
    assert transport.calls == 3
    assert len(sleeps.delays) == 2


async def test_refused_connection_on_a_real_port() -> None:
    closed = f"http://127.0.0.1:{free_port()}/nothing-listens-here"
    sleeps = Sleeps()
    result = await sender(sleeps, policy=RetryPolicy(attempts=2)).deliver(finished_run(closed))
    assert not result.delivered
    assert result.attempts == 2
    assert result.status is None
    assert result.error is not None
    assert len(sleeps.delays) == 1


async def test_private_addresses_are_refused_unless_allowed(receiver: Receiver) -> None:
    strict = sender(Sleeps(), allow_private=False)
    for url in (receiver.url, "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/x"):
        result = await strict.deliver(finished_run(url))
        assert not result.delivered
        assert result.attempts == 0
        assert result.error is not None
        assert "non-public" in result.error
    assert receiver.requests == []


async def test_secret_never_reaches_logs_reprs_or_errors(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.statuses = [500, 400]
    settings = Settings.from_env(
        {"SWITCHYARD_WEBHOOK_SECRET": SECRET, "SWITCHYARD_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    hook = completion_hook(settings, sleep=Sleeps())
    await hook(finished_run(receiver.url))
    result = await hook.deliver(finished_run(receiver.url))

    assert len(receiver.requests) == 3  # 500 → retried → 400; then 200
    out, err = capfd.readouterr()
    texts = [caplog.text, out, err, repr(hook), repr(settings), str(result), repr(result)]
    for text in texts:
        assert SECRET not in text
    # Not even masked: it was never handed to a logger.
    assert MASK not in caplog.text
    assert "webhook attempt failed" in caplog.text  # the logs are there, just without it


async def test_hook_delivers_only_for_runs_with_a_webhook_url(receiver: Receiver) -> None:
    hook = sender(Sleeps())
    no_url = finished_run(receiver.url).model_copy(update={"webhook_url": None})
    await hook(no_url)
    assert receiver.requests == []


async def test_a_sync_run_with_a_webhook_url_is_delivered_on_completion(
    receiver: Receiver, registry: AgentRegistry
) -> None:
    settings = Settings(webhook_allow_private=True)
    svc = build_services(
        settings,
        backend="memory",
        registry=registry,
        on_complete=completion_hook(settings, secret=SECRET, sleep=Sleeps()),
    )
    body = RunCreate(
        agent="ticket-triage", input="printer on fire", mode=Shape.SYNC, webhook_url=receiver.url
    )
    submitted = await create_run(svc, "acme", body)

    assert submitted.run.status is RunStatus.SUCCEEDED
    (request,) = receiver.requests
    payload = json.loads(request.body)
    assert payload["run_id"] == submitted.run.run_id
    assert payload["status"] == "succeeded"
    assert payload["output"] == submitted.run.output
    assert verify_signature(
        SECRET, request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER]
    )


async def test_background_hook_drains(receiver: Receiver) -> None:
    hook = sender(Sleeps(), background=True)
    await hook(finished_run(receiver.url))
    assert await hook.drain(timeout_s=10) == 0
    assert len(receiver.requests) == 1
