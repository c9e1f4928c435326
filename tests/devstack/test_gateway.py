"""The local gateway over real HTTP on 127.0.0.1: requests become API Gateway v2 events for the
real authorizer and API handler (on in-memory Services), with API Gateway's limits (body size,
integration timeout) and the local stack's /_local/ controls."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.apigw import Gateway
from devstack.gateway import (
    INTEGRATION_TIMEOUT_S,
    MAX_BODY_BYTES,
    AdminHandler,
    GatewayLimits,
    LocalGateway,
)
from functions.api.app import set_services
from functions.authorizer.handler import set_store
from shared.logic.service import Services
from tests.api.conftest import memory_services, new_key
from tests.support.moto_server import free_port

Answer = tuple[int, dict[str, str], bytes]
Serve = Callable[..., LocalGateway]


def call(
    gateway: LocalGateway,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    key: str | None = None,
) -> Answer:
    """One HTTP request: status, headers (lower-case names), body; errors are answers too."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        gateway.url + target, data=body, method=method, headers=all_headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def json_of(answer: Answer) -> Any:
    return json.loads(answer[2])


@pytest.fixture
def svc() -> Iterator[Services]:
    """In-memory Services installed in the API handler and the authorizer."""
    services = memory_services()
    set_services(services)
    set_store(services.control)
    yield services
    set_services(None)
    set_store(None)


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a LocalGateway on a free port; every one started is stopped after the test."""
    started: list[LocalGateway] = []

    def _serve(
        gateway: Gateway | None = None,
        *,
        limits: GatewayLimits | None = None,
        admin: AdminHandler | None = None,
    ) -> LocalGateway:
        local = LocalGateway(gateway or Gateway(), port=free_port(), limits=limits, admin=admin)
        local.start()
        started.append(local)
        return local

    yield _serve
    for local in started:
        local.stop()


@pytest.fixture
def api(svc: Services, serve: Serve) -> LocalGateway:
    return serve()


@pytest.fixture
def key(svc: Services) -> str:
    return new_key(svc, "acme")


# ---- through the authorizer to the API -----------------------------------------------------


def test_the_public_health_route_needs_no_key(api: LocalGateway) -> None:
    status, headers, _ = call(api, "GET", "/v1/health")
    assert status == 200
    assert headers["content-type"] == "application/json"


def test_a_key_reaches_the_api(api: LocalGateway, key: str) -> None:
    status, headers, body = call(api, "GET", "/v1/agents", key=key)
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert json.loads(body)  # the API's answer, not the gateway's


def test_no_key_is_401_from_the_gateway(api: LocalGateway) -> None:
    answer = call(api, "GET", "/v1/agents")
    assert answer[0] == 401
    assert json_of(answer) == {"message": "Unauthorized"}


def test_a_bad_key_is_403_from_the_authorizer(api: LocalGateway, key: str) -> None:
    answer = call(api, "GET", "/v1/agents", key=key + "x")
    assert answer[0] == 403
    assert json_of(answer) == {"message": "Forbidden"}
    answer = call(api, "GET", "/v1/agents", key="sy_not_a_key")
    assert answer[0] == 403


def test_the_query_string_reaches_the_handler(api: LocalGateway, key: str) -> None:
    submitted = []
    for text in ("first", "second"):
        body = json.dumps({"agent": "researcher", "input": text}).encode()
        headers = {"Content-Type": "application/json"}
        answer = call(api, "POST", "/v1/runs", body=body, key=key, headers=headers)
        assert answer[0] == 202, answer[2]
        submitted.append(json_of(answer)["run_id"])
    everything = json_of(call(api, "GET", "/v1/runs", key=key))
    assert [r["run_id"] for r in everything["runs"]] == list(reversed(submitted))
    page = json_of(call(api, "GET", "/v1/runs?limit=1", key=key))
    assert [r["run_id"] for r in page["runs"]] == [submitted[-1]]
    assert page["next_cursor"]
    status, _, body = call(api, "GET", "/v1/runs?limit=0", key=key)
    assert status == 400, body


# ---- API Gateway's limits ------------------------------------------------------------------


def test_the_default_limits_are_api_gateways() -> None:
    assert GatewayLimits().max_body_bytes == MAX_BODY_BYTES == 10 * 1024 * 1024
    assert GatewayLimits().integration_timeout_s == INTEGRATION_TIMEOUT_S == 30.0


def test_a_body_over_the_limit_is_413_before_any_function_runs(serve: Serve) -> None:
    calls: list[dict[str, Any]] = []

    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(event)
        return {"statusCode": 200, "body": "ok"}

    local = serve(
        Gateway(api=api, public_routes=frozenset({("POST", "/upload")})),
        limits=GatewayLimits(max_body_bytes=1024),
    )
    headers = {"Content-Type": "application/json"}
    answer = call(local, "POST", "/upload", body=b"x" * 1025, headers=headers)
    assert answer[0] == 413
    assert json_of(answer) == {"message": "Request Entity Too Large"}
    assert calls == []
    # At the limit is fine.
    assert call(local, "POST", "/upload", body=b"x" * 1024, headers=headers)[0] == 200
    assert len(calls) == 1


def test_an_integration_slower_than_the_timeout_is_503(serve: Serve) -> None:
    release = threading.Event()
    entered = threading.Event()
    finished = threading.Event()

    def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
        entered.set()
        release.wait(30)
        finished.set()
        return {"statusCode": 200, "body": "late"}

    local = serve(
        Gateway(api=slow, public_routes=frozenset({("GET", "/slow")})),
        limits=GatewayLimits(integration_timeout_s=0.2),
    )
    try:
        answer = call(local, "GET", "/slow")
        assert answer[0] == 503
        assert json_of(answer) == {"message": "Service Unavailable"}
        assert entered.is_set()
        # The function itself goes on, as a Lambda invocation would.
        assert not finished.is_set()
    finally:
        release.set()
    assert finished.wait(5)


def test_an_integration_that_raises_is_500(serve: Serve) -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    local = serve(Gateway(api=broken, public_routes=frozenset({("GET", "/broken")})))
    answer = call(local, "GET", "/broken")
    assert answer[0] == 500
    assert json_of(answer) == {"message": "Internal Server Error"}


# ---- the event the API function receives ---------------------------------------------------


@pytest.fixture
def capture(serve: Serve) -> tuple[LocalGateway, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 201, "headers": {"x-seen": "yes"}, "body": "stored"}

    local = serve(Gateway(api=api, public_routes=frozenset({("POST", "/upload")})))
    return local, events


def test_a_binary_body_arrives_base64_encoded(
    capture: tuple[LocalGateway, list[dict[str, Any]]],
) -> None:
    local, events = capture
    payload = bytes(range(256))
    binary = {"Content-Type": "application/octet-stream"}
    status, headers, body = call(local, "POST", "/upload?name=a.bin", body=payload, headers=binary)
    assert (status, headers["x-seen"], body) == (201, "yes", b"stored")
    (event,) = events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert event["rawPath"] == "/upload"
    assert event["rawQueryString"] == "name=a.bin"
    assert event["queryStringParameters"] == {"name": "a.bin"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
    assert event["headers"]["content-type"] == "application/octet-stream"


def test_a_text_body_arrives_as_text(
    capture: tuple[LocalGateway, list[dict[str, Any]]],
) -> None:
    local, events = capture
    text = json.dumps({"note": "héllo"}, ensure_ascii=False)
    call(
        local,
        "POST",
        "/upload",
        body=text.encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    (event,) = events
    assert event["isBase64Encoded"] is False
    assert event["body"] == text


def test_a_text_body_that_is_not_utf8_arrives_base64_encoded(
    capture: tuple[LocalGateway, list[dict[str, Any]]],
) -> None:
    local, events = capture
    call(local, "POST", "/upload", body=b"\xff\xfe", headers={"Content-Type": "text/plain"})
    (event,) = events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe"


# ---- /_local/ controls ---------------------------------------------------------------------


def test_local_paths_go_to_the_admin_handler(svc: Services, serve: Serve) -> None:
    seen: list[tuple[str, str, Any]] = []

    def admin(method: str, path: str, body: Any) -> tuple[int, Any]:
        seen.append((method, path, body))
        return 202, {"answered": path}

    local = serve(admin=admin)
    answer = call(local, "GET", "/_local/workers")
    assert answer[0] == 202
    assert json_of(answer) == {"answered": "/_local/workers"}
    posted = call(
        local,
        "POST",
        "/_local/schedules/hourly/fire",
        body=b'{"now": true}',
        headers={"Content-Type": "application/json"},
    )
    assert posted[0] == 202
    # No key needed: /_local/ is not the API, and the authorizer is never asked.
    assert seen == [
        ("GET", "/_local/workers", None),
        ("POST", "/_local/schedules/hourly/fire", {"now": True}),
    ]
    not_json = call(
        local, "POST", "/_local/x", body=b"{nope", headers={"Content-Type": "text/plain"}
    )
    assert not_json[0] == 400
    assert len(seen) == 2


def test_local_paths_are_404_without_an_admin_handler(api: LocalGateway) -> None:
    answer = call(api, "GET", "/_local/workers")
    assert answer[0] == 404
    assert json_of(answer) == {"message": "Not Found"}
