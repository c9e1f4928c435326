"""Every failure has one shape, the documented status and code, and leaks nothing."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest

from devstack.apigw import Gateway
from functions.api import errors
from shared.errors import JournalError, SwitchyardError
from shared.journal.memory import MemoryJournal
from shared.logic.service import Services
from shared.models.run import Run
from tests.api.conftest import assert_error, new_key

RESEARCH = {"agent": "researcher", "input": "q"}

# Every route that needs a tenant, with a body where it takes one.
AUTHENTICATED: list[tuple[str, str, Any]] = [
    ("POST", "/v1/runs", RESEARCH),
    ("GET", "/v1/runs", None),
    ("GET", "/v1/runs/run_X", None),
    ("GET", "/v1/runs/run_X/events", None),
    ("POST", "/v1/runs/run_X/cancel", None),
    ("POST", "/v1/runs/run_X/approval", {"decision": "approve"}),
    ("GET", "/v1/threads/t-1", None),
    ("GET", "/v1/agents", None),
    ("GET", "/v1/usage", None),
    ("GET", "/v1/pipelines", None),
    ("POST", "/v1/jobs", {}),
    ("GET", "/v1/jobs/job_1", None),
    ("POST", "/v1/jobs/job_1/approval", {"decision": "approve"}),
    ("POST", "/v1/jobs/job_1/cancel", None),
    ("GET", "/v1/no-such-route", None),
]


def _send(gw: Gateway, method: str, path: str, body: Any, **kwargs: Any) -> Any:
    if body is not None:
        kwargs["json_body"] = body
    return gw.request(method, path, **kwargs)


# ---- 400 -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["{not json", '{"agent": "researcher",', "\x00"])
def test_malformed_json_is_400(gw: Gateway, acme: str, body: str) -> None:
    response = gw.post(
        "/v1/runs", body=body, key=acme, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


def test_missing_body_is_400(gw: Gateway, acme: str) -> None:
    assert_error(gw.post("/v1/runs", key=acme), 400, "invalid_json")


def test_malformed_json_on_approval_is_400(gw: Gateway, acme: str) -> None:
    run_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    response = gw.post(f"/v1/runs/{run_id}/approval", body="{", key=acme)
    assert_error(response, 400, "invalid_json")


# ---- 401 -------------------------------------------------------------------------------


def test_no_authorization_header_never_reaches_the_api(gw: Gateway) -> None:
    response = gw.get("/v1/runs")
    assert response.status == 401
    assert response.json() == {"message": "Unauthorized"}  # API Gateway's own answer


@pytest.mark.parametrize(
    "key",
    ["sy_0123456789abcdef_" + "A" * 43, "not-a-key", "sy_short"],
)
def test_unknown_or_malformed_key_is_refused_by_the_authorizer(gw: Gateway, key: str) -> None:
    response = gw.get("/v1/runs", key=key)
    assert response.status == 403
    assert response.json() == {"message": "Forbidden"}


def test_revoked_key_is_refused(gw: Gateway, svc: Services) -> None:
    import asyncio

    from shared.logic.keys import create_key, revoke_key

    key, record = asyncio.run(create_key(svc.control, "acme"))
    assert gw.get("/v1/runs", key=key).status == 200
    asyncio.run(revoke_key(svc.control, record.key_id))
    assert gw.get("/v1/runs", key=key).status == 403


@pytest.mark.parametrize(("method", "path", "body"), AUTHENTICATED)
def test_a_request_without_tenant_context_is_401_on_every_route(
    gw: Gateway, method: str, path: str, body: Any
) -> None:
    """Defence in depth: a route deployed without the authorizer still refuses."""
    response = _send(gw, method, path, body, skip_authorizer=True)
    error = assert_error(response, 401, "unauthorized")
    assert error["details"] is None


def test_empty_tenant_in_context_is_401(gw: Gateway) -> None:
    from devstack.apigw import api_event
    from functions.api.handler import handler

    event = api_event("GET", "/v1/runs", authorizer={"tenant": "", "key_id": "k"})
    assert handler(event, None)["statusCode"] == 401


# ---- 404 -------------------------------------------------------------------------------


def test_unknown_route_is_404(gw: Gateway, acme: str) -> None:
    error = assert_error(gw.get("/v1/no-such-route", key=acme), 404, "not_found")
    assert "/v1/no-such-route" in error["message"]
    assert_error(gw.request("DELETE", "/v1/runs", key=acme), 404, "not_found")


def test_unknown_thread_is_404(gw: Gateway, acme: str) -> None:
    assert_error(gw.get("/v1/threads/never-used", key=acme), 404, "not_found")


# ---- 413 / 415 -------------------------------------------------------------------------


def test_body_over_one_megabyte_is_413(gw: Gateway, acme: str, svc: Services) -> None:
    big = {"agent": "researcher", "input": "x" * errors.MAX_BODY_BYTES}
    error = assert_error(gw.post("/v1/runs", json_body=big, key=acme), 413, "payload_too_large")
    assert error["details"] == {"limit_bytes": errors.MAX_BODY_BYTES}
    assert gw.get("/v1/runs", key=acme).json()["runs"] == []  # nothing was created


def test_body_just_under_the_limit_is_accepted(gw: Gateway, acme: str) -> None:
    overhead = len(json.dumps({"agent": "researcher", "input": ""}))
    body = {"agent": "researcher", "input": "x" * (errors.MAX_BODY_BYTES - overhead)}
    assert len(json.dumps(body)) == errors.MAX_BODY_BYTES
    assert gw.post("/v1/runs", json_body=body, key=acme).status == 202


def test_oversized_body_is_413_even_when_malformed_or_base64(gw: Gateway, acme: str) -> None:
    junk = b"{" * (errors.MAX_BODY_BYTES + 1)
    assert_error(gw.post("/v1/runs", body=junk, key=acme), 413, "payload_too_large")


def test_non_json_content_type_is_415(gw: Gateway, acme: str) -> None:
    response = gw.post(
        "/v1/runs",
        body="agent=researcher&input=q",
        key=acme,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(response, 415, "unsupported_media_type")


def test_json_content_type_with_charset_is_fine(gw: Gateway, acme: str) -> None:
    response = gw.post(
        "/v1/runs",
        body=json.dumps(RESEARCH),
        key=acme,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status == 202


# ---- 422 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**RESEARCH, "priority": "high"}, ["body", "priority"]),
        ({"input": "q"}, ["body", "agent"]),
        ({"agent": "researcher"}, ["body", "input"]),
        ({**RESEARCH, "budget": {"max_steps": 0}}, ["body", "budget", "max_steps"]),
        ({**RESEARCH, "budget": {"max_cost_usd": -1}}, ["body", "budget", "max_cost_usd"]),
        ({**RESEARCH, "budget": {"max_tokens": 5}}, ["body", "budget", "max_tokens"]),
        ({**RESEARCH, "mode": "eventually"}, ["body", "mode"]),
        ({**RESEARCH, "on_conflict": "shrug"}, ["body", "on_conflict"]),
        ({**RESEARCH, "thread_id": "has space"}, ["body", "thread_id"]),
        ({**RESEARCH, "webhook_url": "ftp://x"}, ["body", "webhook_url"]),
        ({**RESEARCH, "metadata": {"n": 1}}, ["body", "metadata", "n"]),
    ],
)
def test_invalid_body_is_422_with_its_location(
    gw: Gateway, acme: str, body: dict[str, Any], loc: list[Any]
) -> None:
    error = assert_error(gw.post("/v1/runs", json_body=body, key=acme), 422, "invalid_request")
    assert loc in [p["loc"] for p in error["details"]]
    for problem in error["details"]:
        assert set(problem) == {"loc", "type", "msg"}  # never the submitted input


def test_a_json_body_that_is_not_an_object_is_422(gw: Gateway, acme: str) -> None:
    assert_error(gw.post("/v1/runs", json_body=[1, 2], key=acme), 422, "invalid_request")


def test_unknown_agent_is_422_and_names_the_known_ones(gw: Gateway, acme: str) -> None:
    error = assert_error(
        gw.post("/v1/runs", json_body={"agent": "nobody", "input": "q"}, key=acme),
        422,
        "unknown_agent",
    )
    assert error["details"]["known"] == [
        "ops-assistant",
        "researcher",
        "section-summarizer",
        "ticket-triage",
    ]


# ---- 5xx: nothing leaks ----------------------------------------------------------------

SECRET = "sk-ant-api03-SUPERSECRETVALUE"


class _ExplodingJournal(MemoryJournal):
    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def get_run(self, run_id: str) -> Run:
        raise self.exc

    async def create_run(self, run: Any, first: Any) -> None:
        raise self.exc


def test_unexpected_error_is_500_without_details(
    svc: Services, install: Any, api_log: io.StringIO
) -> None:
    broken = dataclasses.replace(
        svc, journal=_ExplodingJournal(RuntimeError(f"db password {SECRET} in /srv/app.py"))
    )
    gw: Gateway = install(broken)
    key = new_key(broken, "acme")
    for response in (
        gw.get("/v1/runs/run_X", key=key),
        gw.post("/v1/runs", json_body=RESEARCH, key=key),
    ):
        error = assert_error(response, 500, "internal_error")
        assert error["message"] == "internal error"
        assert set(error["details"]) == {"request_id"}
        assert SECRET not in response.body
        assert "Traceback" not in response.body
        assert ".py" not in response.body
    logged = api_log.getvalue()
    assert "Traceback" in logged  # the cause is in the log...
    assert SECRET not in logged  # ...with secrets masked


def test_storage_trouble_is_503_and_retryable(svc: Services, install: Any) -> None:
    broken = dataclasses.replace(
        svc, journal=_ExplodingJournal(JournalError("DynamoDB throttled table arn:aws:..."))
    )
    gw: Gateway = install(broken)
    key = new_key(broken, "acme")
    response = gw.post("/v1/runs", json_body=RESEARCH, key=key, headers={"Idempotency-Key": "k"})
    error = assert_error(response, 503, "unavailable")
    assert set(error["details"]) == {"request_id"}
    assert response.headers["retry-after"] == "1"
    assert "arn:aws" not in response.body


def test_status_table_covers_every_documented_code() -> None:
    class RateLimited(SwitchyardError):
        code = "rate_limited"

    assert errors.from_switchyard(RateLimited("slow down"), None).status_code == 429
    expected = {
        "invalid_json": 400,
        "invalid_parameter": 400,
        "unauthorized": 401,
        "not_found": 404,
        "conflict": 409,
        "invalid_state": 409,
        "payload_too_large": 413,
        "unsupported_media_type": 415,
        "invalid_request": 422,
        "unknown_agent": 422,
        "unknown_pipeline": 422,
        "rate_limited": 429,
        "unavailable": 503,
        "pipeline_not_deployed": 503,
    }
    assert {code: errors.STATUS_BY_CODE[code] for code in expected} == expected
