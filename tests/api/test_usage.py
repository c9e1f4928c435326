"""GET /v1/usage: tokens and cost of the caller's runs over a window, grouped by agent or
tenant, on the in-memory backend and on the AWS one (DynamoDB and SQS on moto)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from devstack.apigw import Gateway
from infra import constants as c
from shared.config import Settings
from shared.dal.local import deploy_assembly
from shared.ids import new_run_id
from shared.logic import service
from shared.logic import usage as usage_logic
from shared.logic.service import Services
from shared.models.events import Event, EventType
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import Run, RunPage, RunStatus, Usage
from shared.wiring import build_services
from tests.api.conftest import assert_error, memory_services, new_key

TRIAGE = {"agent": "ticket-triage", "input": "I was charged twice for my subscription"}
RESEARCH = {"agent": "researcher", "input": "durable agent runtimes"}
COUNTS = (
    "runs",
    "steps",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cost_usd",
)
TOKENS = COUNTS[2:6]
ZERO: dict[str, Any] = dict.fromkeys(COUNTS, 0)
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=["memory", "aws"])
def svc(request: pytest.FixtureRequest) -> Iterator[Services]:
    """Overrides conftest's ``svc``: every test here runs on both backends."""
    if request.param == "memory":
        yield memory_services()
        return
    cloud_assembly: Path = request.getfixturevalue("cloud_assembly")
    with mock_aws():
        out = deploy_assembly(cloud_assembly).outputs
        settings = Settings(
            table_name=out[c.OUTPUT_TABLE],
            bucket_name=out[c.OUTPUT_BUCKET],
            queue_url=out[c.OUTPUT_RUNS_QUEUE_URL],
            dlq_url=out[c.OUTPUT_DLQ_URL],
        )
        yield build_services(settings, backend="aws")


@pytest.fixture
def memory_gw(install: Any) -> tuple[Gateway, str]:
    """A gateway on the in-memory backend and a key, for tests that need no second backend."""
    svc = memory_services()
    gateway: Gateway = install(svc)
    return gateway, new_key(svc, "acme")


# ---- helpers -------------------------------------------------------------------------------


def work(svc: Services) -> list[str]:
    """A worker's loop over the runs queue (either backend) until it is empty."""

    async def loop() -> list[str]:
        seen: list[str] = []
        while messages := await svc.queue.receive(wait_s=0):
            for message in messages:
                run = await service.execute_run(svc, message.body.run_id)
                seen.append(run.status.value)
                await svc.queue.delete(message.receipt)
        return seen

    return asyncio.run(loop())


def seed(
    svc: Services,
    *,
    tenant: str = "acme",
    agent: str = "researcher",
    created_at: datetime,
    status: RunStatus = RunStatus.SUCCEEDED,
    steps: int = 1,
    usage: Usage | None = None,
) -> Run:
    """A run stored as it would be after executing, created at ``created_at``."""
    run = Run(
        run_id=new_run_id(),
        tenant=tenant,
        agent=agent,
        input="q",
        status=status,
        steps=steps,
        usage=usage or Usage(),
        created_at=created_at,
        updated_at=created_at,
    )
    first = JournalRecord(
        seq=1,
        kind=RecordKind.CREATED,
        at=created_at,
        events=[Event(seq=1, type=EventType.RUN_STATUS, at=created_at, data={"status": "queued"})],
    )
    asyncio.run(svc.journal.create_run(run, first))
    return run


def usage(n: int, cost: float) -> Usage:
    """Distinct counts per field, so a mixed-up field shows."""
    return Usage(
        input_tokens=1000 * n,
        output_tokens=100 * n,
        cache_read_input_tokens=10 * n,
        cache_creation_input_tokens=n,
        cost_usd=cost,
    )


def get_usage(gw: Gateway, key: str, **query: str) -> dict[str, Any]:
    response = gw.get("/v1/usage", key=key, query=query)
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"from", "to", "group_by", "groups", "total"}
    return body


def window(hours_back: float, hours_to: float = 0.0) -> dict[str, str]:
    return {
        "from": (NOW - timedelta(hours=hours_back)).isoformat(),
        "to": (NOW - timedelta(hours=hours_to)).isoformat(),
    }


def summed(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "steps": sum(r["steps"] for r in runs),
        **{name: sum(r["usage"][name] for r in runs) for name in TOKENS},
        "cost_usd": pytest.approx(sum(r["usage"]["cost_usd"] for r in runs)),
    }


# ---- aggregation ---------------------------------------------------------------------------


def test_usage_by_agent_sums_the_tenants_runs(gw: Gateway, acme: str, svc: Services) -> None:
    triage = [gw.post("/v1/runs", json_body=TRIAGE, key=acme).json() for _ in range(2)]
    assert [r["status"] for r in triage] == ["succeeded", "succeeded"]
    research_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    assert work(svc) == ["succeeded"]
    queued = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()  # never executed
    assert queued["status"] == "queued"
    runs = [gw.get(f"/v1/runs/{r}", key=acme).json() for r in (research_id, queued["run_id"])]
    runs += triage

    body = get_usage(gw, acme, group_by="agent")

    assert body["group_by"] == "agent"
    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == {"researcher", "ticket-triage"}
    for name, group in groups.items():
        assert set(group) == {"key", *COUNTS}
        assert group == {"key": name, **summed([r for r in runs if r["agent"] == name])}
    assert groups["researcher"]["runs"] == 2  # the queued run counts, with nothing used
    assert groups["ticket-triage"]["steps"] == 2
    assert body["total"] == summed(runs)
    assert set(body["total"]) == set(COUNTS)
    assert body["total"]["input_tokens"] > 0
    assert body["total"]["cost_usd"] > 0
    costs = [(-g["cost_usd"], g["key"]) for g in body["groups"]]
    assert costs == sorted(costs)


def test_groups_are_sorted_by_cost_then_key_with_exact_sums(
    gw: Gateway, acme: str, svc: Services
) -> None:
    at = NOW - timedelta(hours=1)
    seed(svc, agent="researcher", created_at=at, steps=4, usage=usage(1, 0.25))
    seed(svc, agent="researcher", created_at=at, steps=2, usage=usage(2, 0.5))
    seed(svc, agent="ticket-triage", created_at=at, steps=1, usage=usage(3, 0.125))
    seed(svc, agent="ops-assistant", created_at=at, steps=1, usage=usage(4, 0.125))

    body = get_usage(gw, acme, group_by="agent", **window(2))

    assert body["groups"] == [
        {
            "key": "researcher",
            "runs": 2,
            "steps": 6,
            "input_tokens": 3000,
            "output_tokens": 300,
            "cache_read_input_tokens": 30,
            "cache_creation_input_tokens": 3,
            "cost_usd": 0.75,
        },
        # equal cost: by key
        {"key": "ops-assistant", "runs": 1, "steps": 1, **usage(4, 0.125).model_dump()},
        {"key": "ticket-triage", "runs": 1, "steps": 1, **usage(3, 0.125).model_dump()},
    ]
    assert body["total"] == {"runs": 4, "steps": 8, **usage(10, 1.0).model_dump()}


def test_group_by_tenant_is_one_group_the_callers(gw: Gateway, acme: str, svc: Services) -> None:
    at = NOW - timedelta(minutes=5)
    seed(svc, agent="researcher", created_at=at, usage=usage(1, 0.5))
    seed(svc, agent="ticket-triage", created_at=at, usage=usage(2, 0.25))

    body = get_usage(gw, acme, group_by="tenant")

    assert body["group_by"] == "tenant"
    total = {"runs": 2, "steps": 2, **usage(3, 0.75).model_dump()}
    assert body["groups"] == [{"key": "acme", **total}]
    assert body["total"] == total


def test_running_runs_count_what_their_journal_holds_so_far(
    gw: Gateway, acme: str, svc: Services
) -> None:
    at = NOW - timedelta(minutes=5)
    run = seed(svc, created_at=at, status=RunStatus.RUNNING, steps=0)  # item: nothing yet
    step = JournalRecord(
        seq=2,
        kind=RecordKind.MODEL,
        at=at,
        step=1,
        model="claude-sonnet-4-5",
        response={"content": [{"type": "text", "text": "thinking"}]},
        usage=usage(5, 0.5),
    )
    asyncio.run(svc.journal.append(run.run_id, step))

    body = get_usage(gw, acme)

    assert body["total"] == {"runs": 1, "steps": 1, **usage(5, 0.5).model_dump()}


# ---- tenant isolation ----------------------------------------------------------------------


def test_another_tenant_sees_none_of_it(gw: Gateway, acme: str, globex: str, svc: Services) -> None:
    assert gw.post("/v1/runs", json_body=TRIAGE, key=acme).json()["status"] == "succeeded"
    seed(svc, agent="researcher", created_at=NOW - timedelta(hours=1), usage=usage(1, 0.5))
    assert get_usage(gw, acme)["total"]["runs"] == 2

    for group_by in ("agent", "tenant"):
        body = get_usage(gw, globex, group_by=group_by)
        assert body["groups"] == []
        assert body["total"] == ZERO

    seed(svc, tenant="globex", agent="researcher", created_at=NOW, usage=usage(7, 0.125))
    mine = get_usage(gw, globex, group_by="tenant")
    assert mine["groups"] == [
        {"key": "globex", "runs": 1, "steps": 1, **usage(7, 0.125).model_dump()}
    ]
    assert get_usage(gw, acme, group_by="tenant")["groups"][0]["key"] == "acme"
    assert get_usage(gw, acme)["total"]["runs"] == 2


# ---- the window ----------------------------------------------------------------------------


def test_from_and_to_select_by_creation_time_half_open(
    gw: Gateway, acme: str, svc: Services
) -> None:
    start, end = NOW - timedelta(days=3), NOW - timedelta(days=1)
    seed(svc, created_at=start - timedelta(microseconds=1), usage=usage(1, 1.0))  # before
    seed(svc, created_at=start, usage=usage(2, 0.25))  # first instant: in
    seed(svc, created_at=end - timedelta(microseconds=1), usage=usage(4, 0.125))  # in
    seed(svc, created_at=end, usage=usage(8, 2.0))  # last instant is excluded
    seed(svc, created_at=NOW - timedelta(hours=1), usage=usage(16, 4.0))  # newer

    body = get_usage(gw, acme, **{"from": start.isoformat(), "to": end.isoformat()})

    assert body["from"] == start.isoformat().replace("+00:00", "Z")
    assert body["to"] == end.isoformat().replace("+00:00", "Z")
    assert body["total"] == {"runs": 2, "steps": 2, **usage(6, 0.375).model_dump()}
    # The default window is the last 24 hours: only the newest run.
    default = get_usage(gw, acme)
    assert default["total"] == {"runs": 1, "steps": 1, **usage(16, 4.0).model_dump()}


def test_the_report_pages_through_the_index_and_stops_at_from(
    gw: Gateway, acme: str, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_logic, "PAGE_SIZE", 2)
    for hours in range(1, 8):  # 1..7 hours ago, newest first: pages [1 2] [3 4] [5 6] [7]
        seed(svc, created_at=NOW - timedelta(hours=hours), usage=usage(hours, 0.125))
    pages: list[int] = []
    reads: list[str] = []
    list_runs, get_run = svc.journal.list_runs, svc.journal.get_run

    async def counting_list_runs(tenant: str, **kwargs: Any) -> RunPage:
        page = await list_runs(tenant, **kwargs)
        pages.append(len(page.runs))
        return page

    async def counting_get_run(run_id: str) -> Run:
        reads.append(run_id)
        return await get_run(run_id)

    monkeypatch.setattr(svc.journal, "list_runs", counting_list_runs)
    monkeypatch.setattr(svc.journal, "get_run", counting_get_run)

    body = get_usage(gw, acme, **window(5, 2.5))  # 3, 4 and 5 hours ago

    assert body["total"] == {"runs": 3, "steps": 3, **usage(3 + 4 + 5, 0.375).model_dump()}
    assert pages == [2, 2, 2]  # the run 6 hours ago ends it: [7] is never read
    assert len(reads) == 3  # only the runs in the window


def test_defaults_are_the_last_24_hours_by_agent(memory_gw: tuple[Gateway, str]) -> None:
    gw, key = memory_gw
    before = datetime.now(UTC)
    body = get_usage(gw, key)
    after = datetime.now(UTC)
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert body["group_by"] == "agent"
    assert before <= end <= after
    assert end - start == timedelta(hours=24)
    assert body["groups"] == []
    assert body["total"] == ZERO


def test_timestamps_without_offset_are_utc_and_offsets_are_converted(
    memory_gw: tuple[Gateway, str],
) -> None:
    gw, key = memory_gw
    body = get_usage(gw, key, **{"from": "2026-01-01T00:00:00", "to": "2026-01-01T12:00:00+02:00"})
    assert body["from"] == "2026-01-01T00:00:00Z"
    assert body["to"] == "2026-01-01T10:00:00Z"
    only_from = get_usage(gw, key, **{"from": (NOW - timedelta(hours=3)).isoformat()})
    assert datetime.fromisoformat(only_from["to"]) >= NOW  # to defaults to now


# ---- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "name", "says"),
    [
        ({"from": "yesterday"}, "from", "datetime"),
        ({"to": "2026-13-01T00:00:00Z"}, "to", "datetime"),
        ({"from": ""}, "from", "datetime"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from", "before"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from", "before"),
        ({"from": "2999-01-01T00:00:00Z"}, "from", "before"),  # to defaults to now
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:01Z"}, "from", "31 days"),
        ({"to": "2026-01-01T00:00:00Z", "from": "2025-01-01T00:00:00Z"}, "from", "31 days"),
        ({"group_by": "model"}, "group_by", "agent"),
        ({"group_by": ""}, "group_by", "agent"),
    ],
)
def test_a_bad_query_is_400_invalid_parameter(
    memory_gw: tuple[Gateway, str], query: dict[str, str], name: str, says: str
) -> None:
    gw, key = memory_gw
    error = assert_error(gw.get("/v1/usage", key=key, query=query), 400, "invalid_parameter")
    assert error["message"] == f"invalid parameter: {name}"
    [problem] = error["details"]
    assert problem["loc"][0] == "query"
    assert problem["loc"][-1] == name
    assert says in problem["msg"]
    for value in query.values():
        if value:
            assert value not in str(error)  # never the value sent


def test_exactly_31_days_is_allowed(memory_gw: tuple[Gateway, str]) -> None:
    gw, key = memory_gw
    body = get_usage(gw, key, **{"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"})
    assert body["total"] == ZERO


def test_too_many_runs_to_read_is_422_not_a_partial_answer(
    gw: Gateway, acme: str, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_logic, "MAX_RUNS", 3)
    monkeypatch.setattr(usage_logic, "PAGE_SIZE", 2)
    for hours in range(5):  # 0.5, 1.5, 2.5, 3.5 and 4.5 hours ago
        seed(svc, created_at=NOW - timedelta(hours=hours, minutes=30))
    error = assert_error(gw.get("/v1/usage", key=acme, query=window(4)), 422, "invalid_request")
    assert error["details"] == {"max_runs": 3}
    # Runs newer than the window count too: they are read on the way to it.
    assert_error(gw.get("/v1/usage", key=acme, query=window(6, 3)), 422, "invalid_request")
    assert get_usage(gw, acme, **window(2))["total"]["runs"] == 2


# ---- the contract --------------------------------------------------------------------------


def test_openapi_documents_the_route_and_its_models(memory_gw: tuple[Gateway, str]) -> None:
    gw, _ = memory_gw
    doc = gw.get("/v1/openapi.json").json()
    op = doc["paths"]["/v1/usage"]["get"]
    assert op["security"] == [{"apiKey": []}]
    assert {p["name"] for p in op["parameters"]} == {"group_by", "from", "to"}
    assert all(p["in"] == "query" and not p["required"] for p in op["parameters"])
    ok = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/UsageReport"}
    assert {"400", "401", "422"} <= set(op["responses"])
    schemas = doc["components"]["schemas"]
    assert set(schemas["UsageReport"]["properties"]) == {
        "from",
        "to",
        "group_by",
        "groups",
        "total",
    }
    assert set(schemas["UsageGroup"]["properties"]) == {"key", *COUNTS}
    assert set(schemas["UsageTotals"]["properties"]) == set(COUNTS)
    assert schemas["GroupBy"]["enum"] == ["agent", "tenant"]
