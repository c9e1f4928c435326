"""GET /v1/runs/{id}/events: the cursor never skips or repeats; ``wait`` long-polls."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from devstack.apigw import Gateway, GatewayResponse
from shared.journal.memory import MemoryJournal
from shared.logic.service import Services
from shared.models.events import Event
from tests.api.conftest import assert_error, memory_services, new_key, run_worker

TERMINAL = {"succeeded", "failed", "cancelled"}


class SignallingJournal(MemoryJournal):
    """Tells the test when a reader found nothing new (the long poll is then waiting)."""

    def __init__(self) -> None:
        super().__init__()
        self.found_nothing = threading.Event()

    async def events(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Event]:
        found = await super().events(run_id, after=after, limit=limit)
        if not found:
            self.found_nothing.set()
        return found


def _with_signalling_journal(**settings: Any) -> tuple[Services, SignallingJournal]:
    journal = SignallingJournal()
    return dataclasses.replace(memory_services(**settings), journal=journal), journal


def _is_final(event: dict[str, Any]) -> bool:
    return event["type"] == "run.status" and event["data"].get("status") in TERMINAL


def test_events_have_the_documented_shape(gw: Gateway, acme: str, svc: Services) -> None:
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]
    page = gw.get(f"/v1/runs/{run_id}/events", key=acme).json()
    assert set(page) == {"events", "next_after"}
    assert page["events"] == [
        {
            "seq": 1,
            "type": "run.status",
            "at": page["events"][0]["at"],
            "data": {"status": "queued", "agent": "researcher"},
        }
    ]
    assert page["next_after"] == 1
    empty = gw.get(f"/v1/runs/{run_id}/events", query={"after": 1}, key=acme).json()
    assert empty == {"events": [], "next_after": 1}  # the cursor stays put
    run_worker(svc)
    rest = gw.get(f"/v1/runs/{run_id}/events", query={"after": 1}, key=acme).json()
    assert rest["events"][0]["seq"] == 2
    assert rest["next_after"] == rest["events"][-1]["seq"]
    assert _is_final(rest["events"][-1])


def test_polling_while_a_worker_runs_never_skips_or_repeats(install: Any) -> None:
    svc = dataclasses.replace(
        memory_services(), make_provider=_slow_provider_factory(latency_s=0.02)
    )
    gw: Gateway = install(svc)
    key = new_key(svc, "acme")
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=key).json()[
        "run_id"
    ]
    worker = threading.Thread(target=run_worker, args=(svc,))
    worker.start()
    seen: list[int] = []
    after = 0
    try:
        for _ in range(500):
            page = gw.get(
                f"/v1/runs/{run_id}/events",
                query={"after": after, "wait": 5, "limit": 2},
                key=key,
            ).json()
            assert len(page["events"]) <= 2
            seen += [e["seq"] for e in page["events"]]
            after = page["next_after"]
            if page["events"] and _is_final(page["events"][-1]):
                break
    finally:
        worker.join(timeout=30)
    everything = gw.get(f"/v1/runs/{run_id}/events", query={"limit": 500}, key=key).json()
    assert seen == list(range(1, len(seen) + 1))  # no gap, no repeat, in order
    assert seen == [e["seq"] for e in everything["events"]]
    assert len(seen) > 8


def _slow_provider_factory(*, latency_s: float) -> Any:
    from shared.providers.offline import OfflineProvider

    return lambda: OfflineProvider(latency_s=latency_s)


def test_wait_holds_until_the_worker_produces_an_event(install: Any) -> None:
    svc, journal = _with_signalling_journal()
    gw: Gateway = install(svc)
    key = new_key(svc, "acme")
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=key).json()[
        "run_id"
    ]
    journal.found_nothing.clear()
    result: dict[str, Any] = {}

    def poll() -> None:
        started = time.monotonic()
        result["response"] = gw.get(
            f"/v1/runs/{run_id}/events", query={"after": 1, "wait": 15}, key=key
        )
        result["elapsed"] = time.monotonic() - started

    poller = threading.Thread(target=poll)
    poller.start()
    assert journal.found_nothing.wait(timeout=10)  # the poll is holding: nothing after seq 1
    assert "response" not in result
    run_worker(svc)
    poller.join(timeout=20)
    response: GatewayResponse = result["response"]
    assert response.status == 200
    events = response.json()["events"]
    assert events
    assert events[0]["seq"] == 2
    assert result["elapsed"] < 15  # answered when the events came, not at the deadline


def test_wait_with_nothing_new_returns_empty_after_the_wait(
    gw: Gateway, acme: str, svc: Services
) -> None:
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]
    started = time.monotonic()
    page = gw.get(f"/v1/runs/{run_id}/events", query={"after": 1, "wait": 0.3}, key=acme).json()
    assert time.monotonic() - started >= 0.3
    assert page == {"events": [], "next_after": 1}


def test_wait_returns_at_once_when_events_exist(gw: Gateway, acme: str) -> None:
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]
    started = time.monotonic()
    page = gw.get(f"/v1/runs/{run_id}/events", query={"wait": 15}, key=acme).json()
    assert time.monotonic() - started < 5
    assert [e["seq"] for e in page["events"]] == [1]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"wait": 21}, "wait"),
        ({"wait": -1}, "wait"),
        ({"wait": "soon"}, "wait"),
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
    ],
)
def test_bad_event_parameters_are_400(
    gw: Gateway, acme: str, query: dict[str, Any], param: str
) -> None:
    run_id = gw.post("/v1/runs", json_body={"agent": "researcher", "input": "q"}, key=acme).json()[
        "run_id"
    ]
    response = gw.get(f"/v1/runs/{run_id}/events", query=query, key=acme)
    error = assert_error(response, 400, "invalid_parameter")
    assert error["details"][0]["loc"] == ["query", param]


def test_events_of_an_unknown_run_are_404(gw: Gateway, acme: str) -> None:
    assert_error(gw.get("/v1/runs/run_NOPE/events", key=acme), 404, "not_found")
