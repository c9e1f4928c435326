"""Health, the OpenAPI document, the agent list, and how the handler builds its Services."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.apigw import Gateway, api_event
from functions.api import app as api_app
from functions.api.handler import handler
from tests.api.conftest import assert_error

# Every route of DESIGN §5, as (method, OpenAPI path).
ROUTES = {
    ("post", "/v1/runs"),
    ("get", "/v1/runs"),
    ("get", "/v1/runs/{run_id}"),
    ("get", "/v1/runs/{run_id}/events"),
    ("post", "/v1/runs/{run_id}/cancel"),
    ("post", "/v1/runs/{run_id}/approval"),
    ("get", "/v1/threads/{thread_id}"),
    ("get", "/v1/agents"),
    ("get", "/v1/health"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/usage"),
    ("get", "/v1/pipelines"),
    ("post", "/v1/jobs"),
    ("get", "/v1/jobs/{job_id}"),
    ("post", "/v1/jobs/{job_id}/approval"),
    ("post", "/v1/jobs/{job_id}/cancel"),
}
PUBLIC = {("get", "/v1/health"), ("get", "/v1/openapi.json")}


def test_health_needs_no_key(gw: Gateway) -> None:
    response = gw.get("/v1/health")
    assert response.status == 200
    assert response.json()["status"] == "ok"


def test_health_builds_no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    api_app.set_services(None)
    monkeypatch.setenv("SWITCHYARD_BACKEND", "not-a-backend")  # would fail if built
    assert handler(api_event("GET", "/v1/health"), None)["statusCode"] == 200


def test_openapi_lists_every_route_with_its_security(gw: Gateway) -> None:
    response = gw.get("/v1/openapi.json")
    assert response.status == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    operations = {
        (method, path): op for path, item in doc["paths"].items() for method, op in item.items()
    }
    assert set(operations) == ROUTES
    for route, op in operations.items():
        assert op.get("security") == (None if route in PUBLIC else [{"apiKey": []}]), route
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_openapi_documents_bodies_parameters_and_errors(gw: Gateway) -> None:
    doc = gw.get("/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"RunCreate", "ApprovalBody", "RunView", "RunAccepted", "ErrorResponse"} <= set(schemas)
    assert set(schemas["RunCreate"]["properties"]) >= {
        "agent",
        "input",
        "thread_id",
        "mode",
        "metadata",
        "webhook_url",
        "budget",
        "on_conflict",
    }
    submit = doc["paths"]["/v1/runs"]["post"]
    assert {"200", "202", "400", "409", "413", "422"} <= set(submit["responses"])
    headers = [p["name"] for p in submit["parameters"] if p["in"] == "header"]
    assert headers == ["idempotency-key"]
    listing = doc["paths"]["/v1/runs"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "status",
        "agent",
        "thread_id",
        "limit",
        "cursor",
    }
    events = doc["paths"]["/v1/runs/{run_id}/events"]["get"]
    wait = next(p for p in events["parameters"] if p["name"] == "wait")
    assert wait["schema"]["maximum"] == 20


def test_agents_lists_each_agent_with_its_tools_schemas(gw: Gateway, acme: str) -> None:
    response = gw.get("/v1/agents", key=acme)
    assert response.status == 200
    agents = {a["name"]: a for a in response.json()["agents"]}
    assert set(agents) == {"ops-assistant", "researcher", "section-summarizer", "ticket-triage"}
    restart = next(t for t in agents["ops-assistant"]["tools"] if t["name"] == "restart_service")
    assert restart["requires_approval"] is True
    assert restart["side_effect"] is True
    assert restart["input_schema"]["properties"]["service"]["enum"] == [
        "checkout",
        "search",
        "billing",
    ]
    assert agents["ticket-triage"]["shape"] == "sync"


def test_services_are_built_once_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, install: Any
) -> None:
    api_app.set_services(None)
    monkeypatch.setenv("SWITCHYARD_BACKEND", "memory")
    event = api_event("GET", "/v1/agents", authorizer={"tenant": "acme", "key_id": "k"})
    assert handler(event, None)["statusCode"] == 200
    built = api_app.get_services()
    assert handler(event, None)["statusCode"] == 200
    assert api_app.get_services() is built


def test_a_bad_backend_setting_is_a_500_that_says_nothing(
    monkeypatch: pytest.MonkeyPatch, install: Any
) -> None:
    api_app.set_services(None)
    monkeypatch.setenv("SWITCHYARD_BACKEND", "cassandra")
    event = api_event("GET", "/v1/agents", authorizer={"tenant": "acme", "key_id": "k"})
    result = handler(event, None)
    assert result["statusCode"] == 500
    assert "cassandra" not in result["body"]
    assert '"code":"internal_error"' in result["body"]


def test_error_shape_helper_rejects_other_shapes(gw: Gateway) -> None:
    with pytest.raises(AssertionError):
        assert_error(gw.get("/v1/runs"), 401, "unauthorized")  # the gateway's own body
