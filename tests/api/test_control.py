"""Cancel, approval and threads (double-texting policies) through the API."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.apigw import Gateway
from shared.logic.service import Services
from tests.api.conftest import assert_error, queued_run_ids, run_worker

OPS = {"agent": "ops-assistant", "input": "checkout is slow"}
RESEARCH = {"agent": "researcher", "input": "q"}


def _paused_run(gw: Gateway, key: str, svc: Services) -> str:
    run_id: str = gw.post("/v1/runs", json_body=OPS, key=key).json()["run_id"]
    assert run_worker(svc) == ["awaiting_approval"]
    return run_id


def _event_types(gw: Gateway, key: str, run_id: str) -> list[str]:
    page = gw.get(f"/v1/runs/{run_id}/events", query={"limit": 500}, key=key).json()
    return [e["type"] for e in page["events"]]


# ---- cancel ----------------------------------------------------------------------------


def test_cancel_a_queued_run_stops_it_at_its_first_boundary(
    gw: Gateway, acme: str, svc: Services
) -> None:
    run_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    response = gw.post(f"/v1/runs/{run_id}/cancel", key=acme)
    assert response.status == 202
    assert response.json()["cancel_requested"] is True
    assert response.json()["status"] == "queued"  # cooperative: the worker ends it
    assert run_worker(svc) == ["cancelled"]
    run = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    assert run["status"] == "cancelled"
    assert run["steps"] == 0


def test_cancel_a_finished_run_is_409(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    run_worker(svc)
    error = assert_error(gw.post(f"/v1/runs/{run_id}/cancel", key=acme), 409, "invalid_state")
    assert error["details"] == {"status": "succeeded"}


def test_cancel_twice_is_409_once_cancelled(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    assert gw.post(f"/v1/runs/{run_id}/cancel", key=acme).status == 202
    assert gw.post(f"/v1/runs/{run_id}/cancel", key=acme).status == 202  # not yet stopped
    run_worker(svc)
    assert_error(gw.post(f"/v1/runs/{run_id}/cancel", key=acme), 409, "invalid_state")


def test_cancel_a_paused_run_wakes_a_worker_to_end_it(
    gw: Gateway, acme: str, svc: Services
) -> None:
    run_id = _paused_run(gw, acme, svc)
    assert queued_run_ids(svc) == []  # a paused run holds no message
    assert gw.post(f"/v1/runs/{run_id}/cancel", key=acme).status == 202
    assert queued_run_ids(svc) == [run_id]
    assert run_worker(svc) == ["cancelled"]


def test_cancel_unknown_run_is_404(gw: Gateway, acme: str) -> None:
    assert_error(gw.post("/v1/runs/run_NOPE/cancel", key=acme), 404, "not_found")


# ---- approval --------------------------------------------------------------------------


def test_approve_resumes_the_run(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = _paused_run(gw, acme, svc)
    paused = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    assert paused["status"] == "awaiting_approval"
    [call] = paused["pending_approval"]["calls"]
    assert call["name"] == "restart_service"
    response = gw.post(
        f"/v1/runs/{run_id}/approval",
        json_body={"decision": "approve", "comment": "go ahead"},
        key=acme,
    )
    assert response.status == 202
    assert response.json()["status"] == "queued"
    assert queued_run_ids(svc) == [run_id]
    assert run_worker(svc) == ["succeeded"]
    assert "approval.decided" in _event_types(gw, acme, run_id)
    done = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    assert done["status"] == "succeeded"
    assert "restarted" in str(done["output"])


def test_reject_resumes_without_running_the_tool(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = _paused_run(gw, acme, svc)
    response = gw.post(f"/v1/runs/{run_id}/approval", json_body={"decision": "reject"}, key=acme)
    assert response.status == 202
    run_worker(svc)
    page = gw.get(f"/v1/runs/{run_id}/events", query={"limit": 500}, key=acme).json()
    decided = [e for e in page["events"] if e["type"] == "approval.decided"]
    assert decided[0]["data"]["decision"] == "reject"
    restarts = [
        e
        for e in page["events"]
        if e["type"] == "tool.completed"
        and e["data"]["name"] == "restart_service"
        and not e["data"]["is_error"]
    ]
    assert restarts == []


def test_approve_with_edited_input(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = _paused_run(gw, acme, svc)
    response = gw.post(
        f"/v1/runs/{run_id}/approval",
        json_body={
            "decision": "approve",
            "edited_input": {"service": "search", "reason": "edited by a human"},
        },
        key=acme,
    )
    assert response.status == 202
    run_worker(svc)
    done = gw.get(f"/v1/runs/{run_id}", key=acme).json()
    assert done["status"] == "succeeded"
    assert "search" in str(done["output"])


def test_approval_on_a_run_not_awaiting_it_is_409(gw: Gateway, acme: str, svc: Services) -> None:
    paused = _paused_run(gw, acme, svc)
    queued = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    error = assert_error(
        gw.post(f"/v1/runs/{queued}/approval", json_body={"decision": "approve"}, key=acme),
        409,
        "invalid_state",
    )
    assert error["details"] == {"status": "queued"}
    body = {"decision": "approve"}
    assert gw.post(f"/v1/runs/{paused}/approval", json_body=body, key=acme).status == 202
    assert_error(  # decided already: a second decision conflicts
        gw.post(f"/v1/runs/{paused}/approval", json_body=body, key=acme), 409, "invalid_state"
    )


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "maybe"},
        {},
        {"decision": "approve", "note": "x"},
        {"decision": "approve", "edited_input": "x"},
    ],
)
def test_invalid_approval_body_is_422(
    gw: Gateway, acme: str, svc: Services, body: dict[str, Any]
) -> None:
    run_id = _paused_run(gw, acme, svc)
    response = gw.post(f"/v1/runs/{run_id}/approval", json_body=body, key=acme)
    assert_error(response, 422, "invalid_request")
    assert gw.get(f"/v1/runs/{run_id}", key=acme).json()["status"] == "awaiting_approval"


# ---- threads ---------------------------------------------------------------------------


def test_reject_policy_refuses_a_busy_thread_with_409(gw: Gateway, acme: str) -> None:
    first = gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme).json()
    error = assert_error(
        gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme),
        409,
        "conflict",
    )
    assert error["details"] == {"active_run_id": first["run_id"]}


def test_enqueue_policy_runs_after_the_active_run_and_sees_its_history(
    gw: Gateway, acme: str, svc: Services
) -> None:
    first = gw.post(
        "/v1/runs",
        json_body={"agent": "researcher", "input": "first", "thread_id": "t-1"},
        key=acme,
    ).json()["run_id"]
    second_response = gw.post(
        "/v1/runs",
        json_body={
            "agent": "researcher",
            "input": "second",
            "thread_id": "t-1",
            "on_conflict": "enqueue",
        },
        key=acme,
    )
    assert second_response.status == 202
    second = second_response.json()["run_id"]
    thread = gw.get("/v1/threads/t-1", key=acme).json()
    assert thread["active_run_id"] == first
    assert [r["run_id"] for r in thread["runs"]] == [first, second]
    run_worker(svc)
    thread = gw.get("/v1/threads/t-1", key=acme).json()
    assert thread["active_run_id"] is None
    assert [r["status"] for r in thread["runs"]] == ["succeeded", "succeeded"]
    user_turns = [m["content"] for m in thread["messages"] if m["role"] == "user"]
    assert user_turns[0] == "first"
    assert "second" in str(user_turns)


def test_interrupt_policy_cancels_the_active_run(gw: Gateway, acme: str, svc: Services) -> None:
    first = gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme).json()
    second = gw.post(
        "/v1/runs",
        json_body={**RESEARCH, "thread_id": "t-1", "on_conflict": "interrupt"},
        key=acme,
    )
    assert second.status == 202
    assert gw.get(f"/v1/runs/{first['run_id']}", key=acme).json()["cancel_requested"] is True
    run_worker(svc)
    assert gw.get(f"/v1/runs/{first['run_id']}", key=acme).json()["status"] == "cancelled"
    assert gw.get(f"/v1/runs/{second.json()['run_id']}", key=acme).json()["status"] == "succeeded"


def test_a_sync_run_on_a_thread_answers_200(gw: Gateway, acme: str) -> None:
    body = {"agent": "ticket-triage", "input": "refund please", "thread_id": "t-9"}
    response = gw.post("/v1/runs", json_body=body, key=acme)
    assert response.status == 200
    assert response.json()["thread_id"] == "t-9"
    again = gw.post("/v1/runs", json_body=body, key=acme)  # the thread is idle again
    assert again.status == 200
    thread = gw.get("/v1/threads/t-9", key=acme).json()
    assert len(thread["runs"]) == 2
    assert thread["active_run_id"] is None
