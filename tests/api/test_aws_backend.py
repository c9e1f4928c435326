"""The key routes again on the AWS backend: DynamoDB journal and control store, S3, SQS, all on
moto in-process, created by deploying the synthesized CDK stack into moto's CloudFormation
(``cloud_assembly``, shared/dal/local.py), so the table, bucket and queues are the ones
``cdk deploy`` creates."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("shared.dal.sqs", reason="the SQS run queue is not there yet")
pytest.importorskip("shared.tenancy.dynamodb", reason="the DynamoDB control store is not there yet")

from moto import mock_aws

from devstack.apigw import Gateway
from infra import constants as c
from shared.config import Settings
from shared.dal.local import deploy_assembly
from shared.logic import service
from shared.logic.service import Services
from shared.models.run import RunStatus
from shared.wiring import build_services
from tests.api.conftest import assert_error, new_key

RESEARCH = {"agent": "researcher", "input": "durable agent runtimes"}


@pytest.fixture
def aws_svc(cloud_assembly: Path) -> Iterator[Services]:
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
def aws_gw(aws_svc: Services, install: Any) -> Gateway:
    gateway: Gateway = install(aws_svc)
    return gateway


async def _work(svc: Services) -> list[str]:
    """A worker's loop over the SQS queue until it is empty."""
    seen: list[str] = []
    while True:
        messages = await svc.queue.receive(wait_s=0)
        if not messages:
            return seen
        for message in messages:
            run = await service.execute_run(svc, message.body.run_id)
            seen.append(run.status.value)
            if run.status is not RunStatus.QUEUED:
                await svc.queue.delete(message.receipt)


def _queued(svc: Services) -> list[str]:
    async def peek() -> list[str]:
        messages = await svc.queue.receive(wait_s=0)
        for message in messages:
            await svc.queue.change_visibility(message.receipt, 0)
        return [m.body.run_id for m in messages]

    return asyncio.run(peek())


def test_async_submit_lands_on_sqs_and_runs_to_completion(
    aws_gw: Gateway, aws_svc: Services
) -> None:
    key = new_key(aws_svc, "acme")
    submitted = aws_gw.post("/v1/runs", json_body=RESEARCH, key=key)
    assert submitted.status == 202
    run_id = submitted.json()["run_id"]
    assert _queued(aws_svc) == [run_id]
    assert asyncio.run(_work(aws_svc)) == ["succeeded"]
    run = aws_gw.get(f"/v1/runs/{run_id}", key=key).json()
    assert run["status"] == "succeeded"
    assert run["steps"] == 4
    events = aws_gw.get(f"/v1/runs/{run_id}/events", query={"limit": 500}, key=key).json()
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert events["events"][-1]["data"]["status"] == "succeeded"
    listed = aws_gw.get("/v1/runs", key=key).json()["runs"]
    assert [r["run_id"] for r in listed] == [run_id]


def test_sync_submit_answers_200(aws_gw: Gateway, aws_svc: Services) -> None:
    key = new_key(aws_svc, "acme")
    response = aws_gw.post(
        "/v1/runs", json_body={"agent": "ticket-triage", "input": "charged twice"}, key=key
    )
    assert response.status == 200
    assert response.json()["output"] == "billing"
    assert _queued(aws_svc) == []


def test_idempotency_on_dynamodb(aws_gw: Gateway, aws_svc: Services) -> None:
    key = new_key(aws_svc, "acme")
    headers = {"Idempotency-Key": "order-42"}
    first = aws_gw.post("/v1/runs", json_body=RESEARCH, key=key, headers=headers)
    again = aws_gw.post("/v1/runs", json_body=RESEARCH, key=key, headers=headers)
    assert first.status == again.status == 202
    assert again.json()["run_id"] == first.json()["run_id"]
    assert _queued(aws_svc) == [first.json()["run_id"]]
    clash = aws_gw.post(
        "/v1/runs", json_body={**RESEARCH, "input": "other"}, key=key, headers=headers
    )
    assert_error(clash, 409, "conflict")


def test_tenant_isolation_and_threads_on_dynamodb(aws_gw: Gateway, aws_svc: Services) -> None:
    acme, globex = new_key(aws_svc, "acme"), new_key(aws_svc, "globex")
    run_id = aws_gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme).json()[
        "run_id"
    ]
    assert_error(aws_gw.get(f"/v1/runs/{run_id}", key=globex), 404, "not_found")
    assert_error(aws_gw.post(f"/v1/runs/{run_id}/cancel", key=globex), 404, "not_found")
    assert_error(aws_gw.get("/v1/threads/t-1", key=globex), 404, "not_found")
    busy = aws_gw.post("/v1/runs", json_body={**RESEARCH, "thread_id": "t-1"}, key=acme)
    assert_error(busy, 409, "conflict")
    assert aws_gw.post(f"/v1/runs/{run_id}/cancel", key=acme).status == 202
    assert asyncio.run(_work(aws_svc)) == ["cancelled"]
    assert_error(aws_gw.post(f"/v1/runs/{run_id}/cancel", key=acme), 409, "invalid_state")
    thread = aws_gw.get("/v1/threads/t-1", key=acme).json()
    assert thread["active_run_id"] is None
    assert [r["run_id"] for r in thread["runs"]] == [run_id]


def test_the_authorizer_checks_keys_in_dynamodb(aws_gw: Gateway, aws_svc: Services) -> None:
    key = new_key(aws_svc, "acme")
    assert aws_gw.get("/v1/runs", key=key).status == 200
    assert aws_gw.get("/v1/runs", key=key[:-1] + ("A" if key[-1] != "A" else "B")).status == 403
