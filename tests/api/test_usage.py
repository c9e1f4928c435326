"""GET /v1/usage: the caller's usage counters over a window of whole UTC hours, grouped by
agent or tenant, on the in-memory backend and on the AWS one (DynamoDB and SQS on moto).

Usage reaches the counters through ``svc.usage`` (the recorder the runtime records each step
with, flushed here by force) or straight through its counters, at chosen hours.
"""

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
from shared.errors import UsageStoreError
from shared.logic import service
from shared.logic.service import Services
from shared.models.run import Usage
from shared.usage import HourUsage, UsageDelta, hour_ceil, hour_of
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
NOW = datetime.now(UTC)
THIS_HOUR = hour_of(NOW)


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


def usage(n: int, cost: float) -> Usage:
    """Distinct counts per field, so a mixed-up field shows."""
    return Usage(
        input_tokens=1000 * n,
        output_tokens=100 * n,
        cache_read_input_tokens=10 * n,
        cache_creation_input_tokens=n,
        cost_usd=cost,
    )


def counted(n: int, cost: float, *, runs: int, steps: int) -> dict[str, Any]:
    """The report's totals for ``usage(n, cost)`` over ``runs`` runs and ``steps`` steps."""
    return {"runs": runs, "steps": steps, **usage(n, cost).model_dump()}


def add(
    svc: Services,
    *,
    hour: datetime,
    n: int,
    cost: float,
    tenant: str = "acme",
    agent: str = "researcher",
    runs: int = 0,
    steps: int = 1,
) -> None:
    """Add to one hour counter, as flushes of any process would have."""
    delta = UsageDelta(
        tenant=tenant,
        agent=agent,
        hour=hour,
        runs=runs,
        steps=steps,
        **usage(n, cost).model_dump(),
    )
    asyncio.run(svc.usage.counters.add([delta]))


def record(
    svc: Services,
    *,
    n: int,
    cost: float,
    tenant: str = "acme",
    agent: str = "researcher",
    at: datetime | None = None,
    first: bool = False,
) -> None:
    """One model step as the runtime records it (``first``: the run's first step)."""
    svc.usage.record(
        tenant=tenant,
        agent=agent,
        usage=usage(n, cost),
        at=at or datetime.now(UTC),
        runs=1 if first else 0,
    )


def flush(svc: Services) -> None:
    asyncio.run(svc.usage.flush(force=True))


def get_usage(gw: Gateway, key: str, **query: str) -> dict[str, Any]:
    response = gw.get("/v1/usage", key=key, query=query)
    assert response.status == 200, response.body
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"from", "to", "group_by", "groups", "total"}
    return body


def window(start: datetime, end: datetime) -> dict[str, str]:
    return {"from": start.isoformat(), "to": end.isoformat()}


def z(at: datetime) -> str:
    """How the report writes a UTC time."""
    return at.isoformat().replace("+00:00", "Z")


def work(svc: Services) -> list[str]:
    """A worker's loop over the runs queue (either backend) until it is empty, then its
    drain's forced flush."""

    async def loop() -> list[str]:
        seen: list[str] = []
        while messages := await svc.queue.receive(wait_s=0):
            for message in messages:
                run = await service.execute_run(svc, message.body.run_id)
                seen.append(run.status.value)
                await svc.queue.delete(message.receipt)
        await svc.usage.flush(force=True)
        return seen

    return asyncio.run(loop())


# ---- aggregation ---------------------------------------------------------------------------


def test_recorded_steps_are_reported_once_flushed(gw: Gateway, acme: str, svc: Services) -> None:
    record(svc, n=1, cost=0.25, first=True)  # a researcher run: two steps
    record(svc, n=2, cost=0.5)
    record(svc, n=4, cost=0.125, agent="ticket-triage", first=True)
    assert get_usage(gw, acme)["total"] == ZERO  # buffered in this process, not yet written

    flush(svc)
    body = get_usage(gw, acme, group_by="agent")

    assert body["group_by"] == "agent"
    assert body["groups"] == [
        {"key": "researcher", **counted(3, 0.75, runs=1, steps=2)},
        {"key": "ticket-triage", **counted(4, 0.125, runs=1, steps=1)},
    ]
    assert body["total"] == counted(7, 0.875, runs=2, steps=3)


def test_groups_are_sorted_by_cost_then_key_with_exact_sums(
    gw: Gateway, acme: str, svc: Services
) -> None:
    at = THIS_HOUR - timedelta(hours=1)
    add(svc, hour=at, agent="researcher", n=1, cost=0.25, runs=1, steps=4)
    add(svc, hour=at - timedelta(hours=1), agent="researcher", n=2, cost=0.5, runs=1, steps=2)
    add(svc, hour=at, agent="ticket-triage", n=3, cost=0.125, runs=1)
    add(svc, hour=at, agent="ops-assistant", n=4, cost=0.125, runs=1)

    body = get_usage(
        gw, acme, group_by="agent", **window(at - timedelta(hours=1), at + timedelta(hours=1))
    )

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
        {"key": "ops-assistant", **counted(4, 0.125, runs=1, steps=1)},
        {"key": "ticket-triage", **counted(3, 0.125, runs=1, steps=1)},
    ]
    assert body["total"] == counted(10, 1.0, runs=4, steps=8)


def test_sums_of_many_hours_are_exact(gw: Gateway, acme: str, svc: Services) -> None:
    for hours_back in range(1, 31):  # 0.1 dollars an hour: a float running sum would drift
        add(svc, hour=THIS_HOUR - timedelta(hours=hours_back), n=1, cost=0.1)
    body = get_usage(gw, acme, **window(THIS_HOUR - timedelta(hours=30), THIS_HOUR))
    assert body["total"]["cost_usd"] == 3.0
    assert body["total"]["steps"] == 30


def test_group_by_tenant_is_one_group_the_callers(gw: Gateway, acme: str, svc: Services) -> None:
    add(svc, hour=THIS_HOUR, agent="researcher", n=1, cost=0.5, runs=1)
    add(svc, hour=THIS_HOUR, agent="ticket-triage", n=2, cost=0.25, runs=1)

    body = get_usage(gw, acme, group_by="tenant")

    assert body["group_by"] == "tenant"
    total = counted(3, 0.75, runs=2, steps=2)
    assert body["groups"] == [{"key": "acme", **total}]
    assert body["total"] == total


def test_a_run_counts_once_in_the_hour_of_its_first_call(
    gw: Gateway, acme: str, svc: Services
) -> None:
    start = THIS_HOUR - timedelta(hours=5)
    # A run whose first step is at 50 past, the next two in the hour after.
    record(svc, n=1, cost=0.25, at=start + timedelta(minutes=50), first=True)
    record(svc, n=2, cost=0.25, at=start + timedelta(minutes=70))
    record(svc, n=4, cost=0.25, at=start + timedelta(minutes=80))
    flush(svc)

    first_hour = get_usage(gw, acme, **window(start, start + timedelta(hours=1)))
    assert first_hour["total"] == counted(1, 0.25, runs=1, steps=1)
    next_hour = get_usage(
        gw, acme, **window(start + timedelta(hours=1), start + timedelta(hours=2))
    )
    # Steps of a run that started before the window count; the run itself does not.
    assert next_hour["groups"] == [{"key": "researcher", **counted(6, 0.5, runs=0, steps=2)}]
    both = get_usage(gw, acme, **window(start, start + timedelta(hours=2)))
    assert both["total"] == counted(7, 0.75, runs=1, steps=3)


# ---- tenant isolation ----------------------------------------------------------------------


def test_another_tenant_sees_none_of_it(gw: Gateway, acme: str, globex: str, svc: Services) -> None:
    record(svc, n=1, cost=0.5, first=True)
    flush(svc)
    add(svc, hour=THIS_HOUR - timedelta(hours=1), n=2, cost=0.25, runs=1)
    assert get_usage(gw, acme)["total"]["runs"] == 2

    for group_by in ("agent", "tenant"):
        body = get_usage(gw, globex, group_by=group_by)
        assert body["groups"] == []
        assert body["total"] == ZERO

    add(svc, tenant="globex", hour=THIS_HOUR, n=7, cost=0.125, runs=1)
    mine = get_usage(gw, globex, group_by="tenant")
    assert mine["groups"] == [{"key": "globex", **counted(7, 0.125, runs=1, steps=1)}]
    assert get_usage(gw, acme, group_by="tenant")["groups"][0]["key"] == "acme"
    assert get_usage(gw, acme)["total"]["runs"] == 2


# ---- the window ----------------------------------------------------------------------------


def test_the_window_is_whole_utc_hours_from_rounded_down_to_rounded_up(
    gw: Gateway, acme: str, svc: Services
) -> None:
    base = THIS_HOUR - timedelta(days=2)
    for k, n in enumerate((1, 2, 4, 8, 16)):  # hours base .. base+4
        add(svc, hour=base + timedelta(hours=k), n=n, cost=0.125 * n)

    # 01:30 .. 03:10 past base: the hours 1, 2 and 3.
    start, end = base + timedelta(hours=1, minutes=30), base + timedelta(hours=3, minutes=10)
    body = get_usage(gw, acme, **window(start, end))
    assert (body["from"], body["to"]) == (
        z(base + timedelta(hours=1)),
        z(base + timedelta(hours=4)),
    )
    assert body["total"] == counted(14, 1.75, runs=0, steps=3)

    # On the hour: unchanged, and the end hour excluded.
    aligned = get_usage(gw, acme, **window(base + timedelta(hours=1), base + timedelta(hours=3)))
    assert (aligned["from"], aligned["to"]) == (
        z(base + timedelta(hours=1)),
        z(base + timedelta(hours=3)),
    )
    assert aligned["total"] == counted(6, 0.75, runs=0, steps=2)

    # A minute past the hour is enough to count that whole hour.
    tail = get_usage(
        gw, acme, **window(base + timedelta(hours=4), base + timedelta(hours=4, minutes=1))
    )
    assert tail["total"] == counted(16, 2.0, runs=0, steps=1)


def test_defaults_are_the_last_24_hours_by_agent_in_whole_hours(
    memory_gw: tuple[Gateway, str],
) -> None:
    gw, key = memory_gw
    before = datetime.now(UTC)
    body = get_usage(gw, key)
    after = datetime.now(UTC)
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert body["group_by"] == "agent"
    assert hour_ceil(before) <= end <= hour_ceil(after)
    assert hour_of(before - timedelta(hours=24)) <= start <= hour_of(after - timedelta(hours=24))
    assert start.minute == start.second == end.minute == end.second == 0
    assert body["groups"] == []
    assert body["total"] == ZERO


def test_timestamps_without_offset_are_utc_and_offsets_are_converted(
    memory_gw: tuple[Gateway, str],
) -> None:
    gw, key = memory_gw
    body = get_usage(gw, key, **{"from": "2026-01-01T00:00:00", "to": "2026-01-01T12:00:00+02:00"})
    assert body["from"] == "2026-01-01T00:00:00Z"
    assert body["to"] == "2026-01-01T10:00:00Z"
    # 12:00 at +05:30 is 06:30 UTC, rounded up; 03:00 at -04:00 is 07:00 UTC the day before.
    india = get_usage(
        gw, key, **{"from": "2025-12-31T03:00:00-04:00", "to": "2026-01-01T12:00:00+05:30"}
    )
    assert (india["from"], india["to"]) == ("2025-12-31T07:00:00Z", "2026-01-01T07:00:00Z")
    only_from = get_usage(gw, key, **{"from": (NOW - timedelta(hours=3)).isoformat()})
    assert datetime.fromisoformat(only_from["to"]) >= NOW  # to defaults to now, rounded up


# ---- refusals and failures -----------------------------------------------------------------


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


def test_counters_that_cannot_be_read_are_503_unavailable(
    gw: Gateway, acme: str, svc: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(tenant: str, start: datetime, end: datetime) -> list[HourUsage]:
        raise UsageStoreError("usage counters: DynamoDB Query failed")

    monkeypatch.setattr(svc.usage.counters, "hours", failing)
    response = gw.get("/v1/usage", key=acme)
    error = assert_error(response, 503, "unavailable")
    assert "DynamoDB" not in error["message"]
    assert response.headers["retry-after"] == "1"


# ---- the runtime's part --------------------------------------------------------------------


def test_runs_executed_through_the_api_are_counted(gw: Gateway, acme: str, svc: Services) -> None:
    triage = [gw.post("/v1/runs", json_body=TRIAGE, key=acme).json() for _ in range(2)]
    assert [r["status"] for r in triage] == ["succeeded", "succeeded"]
    research_id = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()["run_id"]
    assert work(svc) == ["succeeded"]
    queued = gw.post("/v1/runs", json_body=RESEARCH, key=acme).json()  # never executed
    assert queued["status"] == "queued"
    runs = [gw.get(f"/v1/runs/{research_id}", key=acme).json(), *triage]

    body = get_usage(gw, acme, group_by="agent")

    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == {"researcher", "ticket-triage"}
    for name, group in groups.items():
        mine = [r for r in runs if r["agent"] == name]
        assert group == {
            "key": name,
            "runs": len(mine),  # the queued run made no model call: not counted
            "steps": sum(r["steps"] for r in mine),
            **{t: sum(r["usage"][t] for r in mine) for t in TOKENS},
            "cost_usd": pytest.approx(sum(r["usage"]["cost_usd"] for r in mine)),
        }
    assert body["total"]["cost_usd"] > 0


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
    assert {"400", "401", "503"} <= set(op["responses"])
    # No report is refused for its size any more (422 is the framework's validation entry).
    assert "More runs" not in str(op["responses"])
    assert "rounded" in op["description"]
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
    assert "first model call" in schemas["UsageTotals"]["properties"]["runs"]["description"]
    assert schemas["GroupBy"]["enum"] == ["agent", "tenant"]
