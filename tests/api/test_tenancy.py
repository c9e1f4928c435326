"""Another tenant's runs and threads do not exist for you: 404, never 403."""

from __future__ import annotations

from devstack.apigw import Gateway
from shared.logic.service import Services
from tests.api.conftest import assert_error, run_worker


def test_a_second_tenant_sees_nothing_of_the_first(
    gw: Gateway, acme: str, globex: str, svc: Services
) -> None:
    paused = gw.post(
        "/v1/runs",
        json_body={"agent": "ops-assistant", "input": "checkout is slow", "thread_id": "shared"},
        key=acme,
    ).json()["run_id"]
    assert run_worker(svc) == ["awaiting_approval"]
    queued = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]

    for run_id in (paused, queued):
        assert_error(gw.get(f"/v1/runs/{run_id}", key=globex), 404, "not_found")
        assert_error(gw.get(f"/v1/runs/{run_id}/events", key=globex), 404, "not_found")
        assert_error(
            gw.get(f"/v1/runs/{run_id}/events", query={"wait": 1}, key=globex), 404, "not_found"
        )
        assert_error(gw.post(f"/v1/runs/{run_id}/cancel", key=globex), 404, "not_found")
        assert_error(
            gw.post(f"/v1/runs/{run_id}/approval", json_body={"decision": "approve"}, key=globex),
            404,
            "not_found",
        )
    assert_error(gw.get("/v1/threads/shared", key=globex), 404, "not_found")
    assert gw.get("/v1/runs", key=globex).json() == {"runs": [], "next_cursor": None}

    # Nothing the second tenant tried changed the first tenant's runs.
    assert gw.get(f"/v1/runs/{paused}", key=acme).json()["status"] == "awaiting_approval"
    queued_run = gw.get(f"/v1/runs/{queued}", key=acme).json()
    assert queued_run["status"] == "queued"
    assert queued_run["cancel_requested"] is False
    assert len(gw.get("/v1/runs", key=acme).json()["runs"]) == 2


def test_the_404_is_the_same_as_for_a_run_that_does_not_exist(
    gw: Gateway, acme: str, globex: str
) -> None:
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]
    theirs = gw.get(f"/v1/runs/{run_id}", key=globex).json()["error"]
    missing_id = run_id[:-1] + ("A" if run_id[-1] != "A" else "B")
    missing = gw.get(f"/v1/runs/{missing_id}", key=globex).json()["error"]
    assert theirs["code"] == missing["code"]
    assert theirs["details"] == missing["details"]
    assert theirs["message"].replace(run_id, "ID") == missing["message"].replace(missing_id, "ID")


def test_thread_ids_are_per_tenant(gw: Gateway, acme: str, globex: str, svc: Services) -> None:
    body = {"agent": "researcher", "input": "q", "thread_id": "support-1"}
    mine = gw.post("/v1/runs", json_body=body, key=acme)
    theirs = gw.post("/v1/runs", json_body=body, key=globex)  # not a busy thread for them
    assert mine.status == theirs.status == 202
    run_worker(svc)
    mine_thread = gw.get("/v1/threads/support-1", key=acme).json()
    theirs_thread = gw.get("/v1/threads/support-1", key=globex).json()
    assert [r["run_id"] for r in mine_thread["runs"]] == [mine.json()["run_id"]]
    assert [r["run_id"] for r in theirs_thread["runs"]] == [theirs.json()["run_id"]]


def test_the_tenant_comes_from_the_key_not_the_request(gw: Gateway, acme: str, globex: str) -> None:
    response = gw.post(
        "/v1/runs",
        json_body={"agent": "researcher", "input": "q"},
        key=globex,
        headers={"X-Tenant": "acme"},
    )
    run_id = response.json()["run_id"]
    assert gw.get(f"/v1/runs/{run_id}", key=globex).json()["tenant"] == "globex"
    assert gw.get(f"/v1/runs/{run_id}", key=acme).status == 404
