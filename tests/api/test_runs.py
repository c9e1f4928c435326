"""POST /v1/runs (shapes, promotion, idempotency), GET /v1/runs/{id}, GET /v1/runs."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.apigw import Gateway
from shared.config import Settings
from shared.logic.service import Services
from shared.wiring import build_services
from tests.api.conftest import (
    assert_error,
    new_key,
    queued_run_ids,
    run_worker,
)

TRIAGE = {"agent": "ticket-triage", "input": "I was charged twice for my subscription"}
RESEARCH = {"agent": "researcher", "input": "durable agent runtimes"}


def test_sync_agent_answers_200_with_the_finished_run(
    gw: Gateway, acme: str, svc: Services
) -> None:
    response = gw.post("/v1/runs", json_body=TRIAGE, key=acme)
    assert response.status == 200
    run = response.json()
    assert run["status"] == "succeeded"
    assert run["shape"] == "sync"
    assert run["output"] == "billing"
    assert run["steps"] == 1
    assert run["usage"]["input_tokens"] > 0
    assert run["cost_usd"] == run["usage"]["cost_usd"] > 0
    assert response.headers["location"] == f"/v1/runs/{run['run_id']}"
    assert queued_run_ids(svc) == []  # executed inline, nothing for the workers


def test_async_agent_answers_202_at_once_and_is_on_the_queue(
    gw: Gateway, acme: str, svc: Services
) -> None:
    response = gw.post("/v1/runs", json_body=RESEARCH, key=acme)
    assert response.status == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["shape"] == "async"
    assert body["promoted"] is False
    run_id = body["run_id"]
    assert body["links"] == {"self": f"/v1/runs/{run_id}", "events": f"/v1/runs/{run_id}/events"}
    assert queued_run_ids(svc) == [run_id]
    assert run_worker(svc) == ["succeeded"]
    done = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    assert done["status"] == "succeeded"
    assert done["steps"] == 4
    assert done["output"]


def test_mode_overrides_the_agents_preferred_shape(gw: Gateway, acme: str, svc: Services) -> None:
    queued = gw.post("/v1/runs", json_body={**TRIAGE, "mode": "async"}, key=acme)
    assert queued.status == 202
    assert queued_run_ids(svc) == [queued.json()["run_id"]]
    inline = gw.post("/v1/runs", json_body={**RESEARCH, "mode": "sync"}, key=acme)
    assert inline.status == 200
    assert inline.json()["status"] == "succeeded"
    assert inline.json()["shape"] == "sync"


def test_sync_run_past_its_budget_is_promoted_202_and_queued(install: Any) -> None:
    # Each offline model call takes 300 ms; the request's budget runs out after 500 ms: the
    # first step fits with 200 ms to spare (a loaded machine's overhead), the fourth cannot.
    svc = build_services(Settings(sync_soft_budget_s=0.5), backend="memory", offline_latency_s=0.3)
    gw: Gateway = install(svc)
    key = new_key(svc, "acme")
    response = gw.post("/v1/runs", json_body={**RESEARCH, "mode": "sync"}, key=key)
    assert response.status == 202
    body = response.json()
    assert body["promoted"] is True
    assert body["shape"] == "sync"
    assert body["status"] == "queued"
    assert queued_run_ids(svc) == [body["run_id"]]
    events = gw.get(f"/v1/runs/{body['run_id']}/events", key=key).json()["events"]
    inline_steps = [e for e in events if e["type"] == "step.completed"]
    assert 1 <= len(inline_steps) < 4  # some steps inline, the rest left to a worker
    assert run_worker(svc) == ["succeeded"]
    done = gw.get(f"/v1/runs/{body['run_id']}", key=key).json()
    assert done["status"] == "succeeded"
    assert done["steps"] == 4


def test_get_run_shows_the_documented_fields(gw: Gateway, acme: str) -> None:
    run_id = gw.post(
        "/v1/runs",
        json_body={**RESEARCH, "metadata": {"ticket": "T-1"}, "budget": {"max_steps": 3}},
        key=acme,
    ).json()["run_id"]
    run = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    for field in (
        "status",
        "agent",
        "thread_id",
        "steps",
        "usage",
        "cost_usd",
        "output",
        "error",
        "pending_approval",
    ):
        assert field in run
    assert run["metadata"] == {"ticket": "T-1"}
    assert run["budget"] == {"max_steps": 3.0}
    assert run["input"] == RESEARCH["input"]


def test_unknown_run_is_404(gw: Gateway, acme: str) -> None:
    assert_error(gw.get("/v1/runs/run_01AAAAAAAAAAAAAAAAAAAAAAAA", key=acme), 404, "not_found")
    assert_error(gw.get("/v1/runs/no%20such%20run", key=acme), 404, "not_found")


# ---- idempotency -----------------------------------------------------------------------


def test_same_key_same_body_returns_the_same_async_run(
    gw: Gateway, acme: str, svc: Services
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers=headers)
    again = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers=headers)
    assert first.status == again.status == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert queued_run_ids(svc) == [first.json()["run_id"]]  # enqueued once
    run_worker(svc)
    after = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers=headers)
    assert after.status == 202  # still the async answer, now showing the final status
    assert after.json()["run_id"] == first.json()["run_id"]
    assert after.json()["status"] == "succeeded"
    listed = gw.get("/v1/runs", key=acme).json()["runs"]
    assert [r["run_id"] for r in listed] == [first.json()["run_id"]]


def test_same_key_same_body_returns_the_same_finished_sync_run(gw: Gateway, acme: str) -> None:
    headers = {"Idempotency-Key": "triage-7"}
    first = gw.post("/v1/runs", json_body=TRIAGE, key=acme, headers=headers)
    again = gw.post("/v1/runs", json_body=TRIAGE, key=acme, headers=headers)
    assert first.status == again.status == 200
    assert again.json() == first.json()


def test_same_key_different_body_is_409(gw: Gateway, acme: str) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers=headers)
    clash = gw.post(
        "/v1/runs", json_body={**RESEARCH, "input": "something else"}, key=acme, headers=headers
    )
    error = assert_error(clash, 409, "conflict")
    assert error["details"] == {"run_id": first.json()["run_id"]}


def test_idempotency_keys_are_per_tenant(gw: Gateway, acme: str, globex: str) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    mine = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers=headers)
    theirs = gw.post(
        "/v1/runs", json_body={**RESEARCH, "input": "other"}, key=globex, headers=headers
    )
    assert mine.status == theirs.status == 202
    assert mine.json()["run_id"] != theirs.json()["run_id"]


def test_no_idempotency_key_means_a_new_run_each_time(gw: Gateway, acme: str) -> None:
    one = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    two = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    assert one != two


@pytest.mark.parametrize("value", ["has space", "x" * 256, "ünïcode"])
def test_malformed_idempotency_key_is_400(gw: Gateway, acme: str, value: str) -> None:
    response = gw.post("/v1/runs", json_body=RESEARCH, key=acme, headers={"Idempotency-Key": value})
    assert_error(response, 400, "invalid_parameter")


# ---- list ------------------------------------------------------------------------------


def test_list_is_newest_first_paginated_and_filtered(gw: Gateway, acme: str) -> None:
    ids = [
        gw.post("/v1/runs", json_body={**RESEARCH, "input": f"q{i}"}, key=acme).json()["run_id"]
        for i in range(5)
    ]
    triage = gw.post("/v1/runs", json_body=TRIAGE, key=acme).json()["run_id"]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query: dict[str, Any] = {"limit": 2, "agent": "researcher"}
        if cursor:
            query["cursor"] = cursor
        page = gw.get("/v1/runs", query=query, key=acme).json()
        seen += [r["run_id"] for r in page["runs"]]
        assert len(page["runs"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    done = gw.get("/v1/runs", query={"status": "succeeded"}, key=acme).json()["runs"]
    assert [r["run_id"] for r in done] == [triage]
    summary = done[0]
    assert set(summary) >= {"run_id", "agent", "status", "shape", "created_at"}


def test_list_filters_by_thread(gw: Gateway, acme: str) -> None:
    on_thread = gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme)
    gw.post("/v1/runs", json_body=RESEARCH, key=acme)
    runs = gw.get("/v1/runs", query={"thread_id": "t-1"}, key=acme).json()["runs"]
    assert [r["run_id"] for r in runs] == [on_thread.json()["run_id"]]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "abc"}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"agent": ""}, "agent"),
    ],
)
def test_bad_list_parameters_are_400(
    gw: Gateway, acme: str, query: dict[str, Any], param: str
) -> None:
    error = assert_error(gw.get("/v1/runs", query=query, key=acme), 400, "invalid_parameter")
    assert error["details"][0]["loc"] == ["query", param]


@pytest.mark.parametrize("cursor", ["!!!", "bm90IGpzb24", "WzFd"])
def test_malformed_cursor_is_422(gw: Gateway, acme: str, cursor: str) -> None:
    assert_error(gw.get("/v1/runs", query={"cursor": cursor}, key=acme), 422, "invalid_request")
