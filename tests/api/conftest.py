"""Contract tests of the HTTP API: API Gateway v2 events through the real authorizer and
API handlers, on Services with the in-memory backend (one module repeats the key routes on
the AWS backend, on moto)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.apigw import Gateway, GatewayResponse
from functions.api.app import set_services
from functions.authorizer.handler import set_store
from shared.config import Settings
from shared.logic import service
from shared.logic.keys import create_key
from shared.logic.service import Services
from shared.models.run import RunStatus
from shared.queue.memory import MemoryQueue
from shared.wiring import build_services


@pytest.fixture
def api_log() -> Iterator[io.StringIO]:
    """What the API's logger writes (its JSON lines), for this test."""
    from functions.api.app import logger

    buffer = io.StringIO()
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(buffer) for h in handlers]
    yield buffer
    for handler, stream in zip(handlers, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)


def memory_services(**settings: Any) -> Services:
    return build_services(Settings(**settings), backend="memory")


@pytest.fixture
def svc() -> Services:
    return memory_services()


@pytest.fixture
def install() -> Iterator[Any]:
    """Point both handlers at a Services (the authorizer at its control store)."""

    def _install(services: Services) -> Gateway:
        set_services(services)
        set_store(services.control)
        return Gateway()

    yield _install
    set_services(None)
    set_store(None)


@pytest.fixture
def gw(svc: Services, install: Any) -> Gateway:
    gateway: Gateway = install(svc)
    return gateway


def new_key(svc: Services, tenant: str) -> str:
    key, _ = asyncio.run(create_key(svc.control, tenant))
    return key


@pytest.fixture
def acme(svc: Services) -> str:
    return new_key(svc, "acme")


@pytest.fixture
def globex(svc: Services) -> str:
    return new_key(svc, "globex")


async def drain(svc: Services) -> list[str]:
    """Act as a worker until the queue is empty; statuses in execution order."""
    assert isinstance(svc.queue, MemoryQueue)
    seen: list[str] = []
    while True:
        messages = await svc.queue.receive(wait_s=0)
        if not messages:
            return seen
        for message in messages:
            run = await service.execute_run(svc, message.body.run_id)
            seen.append(run.status.value)
            if run.status is RunStatus.QUEUED:
                await svc.queue.change_visibility(message.receipt, 0)
            else:
                await svc.queue.delete(message.receipt)


def run_worker(svc: Services) -> list[str]:
    return asyncio.run(drain(svc))


def queued_run_ids(svc: Services) -> list[str]:
    """Run ids of the messages on the queue, left visible for the next receiver."""

    async def peek() -> list[str]:
        assert isinstance(svc.queue, MemoryQueue)
        messages = await svc.queue.receive(wait_s=0)
        for message in messages:
            await svc.queue.change_visibility(message.receipt, 0)
        return [m.body.run_id for m in messages]

    return asyncio.run(peek())


def assert_error(response: GatewayResponse, status: int, code: str) -> dict[str, Any]:
    """The response is the API's error shape with this status and code; returns the error."""
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error"}
    error: dict[str, Any] = payload["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    return error
