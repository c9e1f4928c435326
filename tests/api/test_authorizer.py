"""The Lambda authorizer on its own: simple responses, and the key never reaches a log."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.apigw import Gateway, api_event, authorizer_event
from functions.authorizer import handler as authorizer
from shared.errors import JournalError
from shared.logic.keys import create_key, revoke_key
from shared.tenancy.base import ApiKeyRecord
from shared.tenancy.memory import MemoryControlStore


@pytest.fixture
def store() -> Iterator[MemoryControlStore]:
    store = MemoryControlStore()
    authorizer.set_store(store)
    yield store
    authorizer.set_store(None)


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handlers = [h for h in authorizer.logger.handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.setStream(buffer) for h in handlers]
    level = authorizer.logger.log_level
    authorizer.logger.setLevel("DEBUG")
    yield buffer
    authorizer.logger.setLevel(level)
    for handler, stream in zip(handlers, previous, strict=True):
        if stream is not None:
            handler.setStream(stream)


def _event(headers: dict[str, str]) -> dict[str, Any]:
    return authorizer_event(api_event("GET", "/v1/runs", headers=headers))


def test_a_valid_key_authorizes_with_tenant_and_key_id(store: MemoryControlStore) -> None:
    key, record = asyncio.run(create_key(store, "acme"))
    verdict = authorizer.handler(_event({"Authorization": f"Bearer {key}"}), None)
    assert verdict == {
        "isAuthorized": True,
        "context": {"tenant": "acme", "key_id": record.key_id},
    }


def test_header_name_and_scheme_are_case_insensitive(store: MemoryControlStore) -> None:
    key, _ = asyncio.run(create_key(store, "acme"))
    event = _event({})
    event["headers"] = {"AUTHORIZATION": f"bearer {key}"}
    assert authorizer.handler(event, None)["isAuthorized"] is True


def test_identity_source_is_used_when_headers_are_absent(store: MemoryControlStore) -> None:
    key, _ = asyncio.run(create_key(store, "acme"))
    event = _event({"Authorization": f"Bearer {key}"})
    del event["headers"]
    assert authorizer.handler(event, None)["isAuthorized"] is True


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer sy_0123456789abcdef_" + "A" * 43,  # well-formed, unknown
        "Bearer sy_short",
    ],
)
def test_anything_else_is_denied_without_context(
    store: MemoryControlStore, header: str | None
) -> None:
    asyncio.run(create_key(store, "acme"))
    verdict = authorizer.handler(_event({"Authorization": header} if header else {}), None)
    assert verdict == {"isAuthorized": False}


def test_a_key_with_a_known_id_but_wrong_secret_is_denied(store: MemoryControlStore) -> None:
    key, _ = asyncio.run(create_key(store, "acme"))
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert authorizer.handler(_event({"Authorization": f"Bearer {forged}"}), None) == {
        "isAuthorized": False
    }


def test_a_revoked_key_is_denied(store: MemoryControlStore) -> None:
    key, record = asyncio.run(create_key(store, "acme"))
    asyncio.run(revoke_key(store, record.key_id))
    assert authorizer.handler(_event({"Authorization": f"Bearer {key}"}), None) == {
        "isAuthorized": False
    }


def test_the_key_is_never_logged(store: MemoryControlStore, log: io.StringIO) -> None:
    key, record = asyncio.run(create_key(store, "acme"))
    secret = key.split("_", 2)[2]
    asyncio.run(revoke_key(store, record.key_id))
    other, _ = asyncio.run(create_key(store, "acme"))
    for header in (f"Bearer {key}", f"Bearer {other}", f"Bearer {other}x", "Bearer nonsense-key"):
        authorizer.handler(_event({"Authorization": header}), None)
    logged = log.getvalue()
    assert "denied" in logged  # refusals are logged, with their reason...
    assert "revoked" in logged
    assert "allowed" in logged
    assert key not in logged  # ...but never the key, whole or in part
    assert secret not in logged
    assert other not in logged
    assert other.split("_", 2)[2] not in logged
    assert "nonsense-key" not in logged


class _FailingStore(MemoryControlStore):
    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        raise JournalError("DynamoDB unavailable")


def test_a_store_failure_is_an_error_not_a_denial() -> None:
    authorizer.set_store(_FailingStore())
    try:
        with pytest.raises(JournalError):
            authorizer.handler(
                _event({"Authorization": "Bearer sy_0123456789abcdef_" + "A" * 43}), None
            )
        # ...which API Gateway answers with a 500, not a 403 that would blame the key.
        response = Gateway().get("/v1/runs", key="sy_0123456789abcdef_" + "A" * 43)
        assert response.status == 500
    finally:
        authorizer.set_store(None)


def test_the_store_is_built_once_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    authorizer.set_store(None)
    monkeypatch.setenv("SWITCHYARD_BACKEND", "memory")
    try:
        denied = authorizer.handler(_event({"Authorization": "Bearer x"}), None)
        assert denied == {"isAuthorized": False}
        built = authorizer.get_store()
        assert isinstance(built, MemoryControlStore)
        assert authorizer.get_store() is built
    finally:
        authorizer.set_store(None)
