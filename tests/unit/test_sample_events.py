"""Every sample event under tests/events/ goes through the real handler it is for, on
in-memory Services, so the samples cannot rot: a sample whose shape a handler no longer
accepts fails here (README.md in that directory says which handler each one is for).

The API Gateway samples are also compared, key by key, with what ``devstack.apigw`` builds
today for the same request (the events the local gateway and the contract tests send).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import functions.dlq.handler as dlq_function
import functions.triggers as trigger_functions
from devstack.apigw import Gateway, api_event, authorizer_event
from devstack.stack_settings import DEV_TENANT, LOCAL_STACK_SETTINGS
from functions.api.app import set_services
from functions.api.handler import handler as api_handler
from functions.authorizer.handler import handler as authorizer_handler
from functions.authorizer.handler import set_store
from functions.triggers import s3 as s3_trigger
from functions.triggers import schedule as schedule_trigger
from shared.config import Settings
from shared.logic.keys import create_key
from shared.logic.service import Services
from shared.logic.triggers import TriggerRules
from shared.models.run import RunStatus
from shared.queue.base import RunMessage
from shared.queue.memory import MemoryQueue
from shared.wiring import build_services

EVENTS = Path(__file__).resolve().parent.parent / "events"
SAMPLES = sorted(p.name for p in EVENTS.glob("*.json"))

# The rules the trigger samples were written for: the acme-inbox invoices rule and the
# nightly-digest schedule (as in tests/triggers), and the local stack's own schedules.
TRIGGER_RULES: dict[str, Any] = {
    "s3": [
        {
            "name": "invoices",
            "bucket": "acme-inbox",
            "prefix": "invoices/",
            "suffix": ".pdf",
            "agent": "researcher",
            "tenant": "acme",
            "input": {"task": "extract the totals"},
        }
    ],
    "schedules": [
        {
            "name": "nightly-digest",
            "expression": "cron(0 6 * * ? *)",
            "agent": "ops-assistant",
            "tenant": "acme",
            "input": "Summarise yesterday's incidents",
        },
        *LOCAL_STACK_SETTINGS["triggers"]["schedules"],
    ],
}


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def body(result: dict[str, Any]) -> Any:
    return json.loads(result["body"])


@pytest.fixture
def svc() -> Iterator[Services]:
    """In-memory Services behind every handler (as tests/api/conftest.py installs them)."""
    services = build_services(Settings(), backend="memory")
    set_services(services)
    set_store(services.control)
    trigger_functions.configure(services, TriggerRules.model_validate(TRIGGER_RULES))
    yield services
    set_services(None)
    set_store(None)
    trigger_functions.configure(None)
    dlq_function.configure(None)


def queued(svc: Services) -> list[str]:
    """Run ids on the in-memory runs queue (left there)."""
    assert isinstance(svc.queue, MemoryQueue)

    async def peek() -> list[str]:
        assert isinstance(svc.queue, MemoryQueue)
        messages = await svc.queue.receive(wait_s=0)
        for message in messages:
            await svc.queue.change_visibility(message.receipt, 0)
        return [m.body.run_id for m in messages]

    return asyncio.run(peek())


def key_tree(value: Any) -> Any:
    """The shape of a JSON value: its keys, recursively (values dropped)."""
    if isinstance(value, dict):
        return {k: key_tree(v) for k, v in value.items()}
    return type(value).__name__


def regenerated(event: dict[str, Any]) -> dict[str, Any]:
    """What devstack.apigw builds today for the sample's request."""
    http = event["requestContext"]["http"]
    return api_event(
        http["method"],
        event["rawPath"],
        headers=event["headers"],
        body=event.get("body"),
        raw_query=event["rawQueryString"],
        authorizer=(event["requestContext"].get("authorizer") or {}).get("lambda"),
    )


def dev_key(svc: Services) -> tuple[str, str]:
    key, record = asyncio.run(create_key(svc.control, DEV_TENANT, "sample events"))
    return key, record.key_id


def with_key(event: dict[str, Any], key: str) -> dict[str, Any]:
    event["headers"]["authorization"] = f"Bearer {key}"
    if "identitySource" in event:
        event["identitySource"] = [f"Bearer {key}"]
    return event


# ---- one check per sample ----------------------------------------------------------------------


def check_post_runs(svc: Services, event: dict[str, Any]) -> None:
    assert key_tree(event) == key_tree(regenerated(event))
    assert event["requestContext"]["authorizer"]["lambda"]["tenant"] == DEV_TENANT
    result = api_handler(event, None)
    assert result["statusCode"] in (200, 202), result
    answer = body(result)
    assert answer["status"] == "queued"
    assert answer["shape"] == "async"
    run = asyncio.run(svc.journal.get_run(answer["run_id"]))
    assert run.tenant == DEV_TENANT
    assert run.agent == json.loads(event["body"])["agent"]
    assert queued(svc) == [run.run_id]


def check_get_run(svc: Services, event: dict[str, Any]) -> None:
    assert key_tree(event) == key_tree(regenerated(event))
    # The sample names a run that does not exist here: the API's 404.
    missing = api_handler(event, None)
    assert missing["statusCode"] == 404, missing
    assert body(missing)["error"]["code"] == "not_found"
    # The same event for a run the sample POST created: the run.
    created = body(api_handler(load("apigw_v2_post_runs.json"), None))
    path = f"/v1/runs/{created['run_id']}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    found = api_handler(event, None)
    assert found["statusCode"] == 200, found
    assert body(found)["run_id"] == created["run_id"]
    assert body(found)["status"] == RunStatus.QUEUED.value


def check_authorizer_request(svc: Services, event: dict[str, Any]) -> None:
    request = load("apigw_v2_post_runs.json")
    del request["requestContext"]["authorizer"]
    assert key_tree(event) == key_tree(authorizer_event(regenerated(request)))
    # The sample's key is well-formed but was never created: denied.
    assert authorizer_handler(event, None) == {"isAuthorized": False}
    key, key_id = dev_key(svc)
    verdict = authorizer_handler(with_key(event, key), None)
    assert verdict == {"isAuthorized": True, "context": {"tenant": DEV_TENANT, "key_id": key_id}}
    # And the whole gateway path with that key: authorizer, then the API function.
    answer = Gateway().dispatch(with_key(request, key))
    assert answer.status == 202, answer.body


def check_sqs_runs_message(svc: Services, event: dict[str, Any]) -> None:
    (record,) = event["Records"]
    message = RunMessage.model_validate_json(record["body"])
    # Byte for byte what the API puts on the runs queue (shared.dal.sqs).
    assert record["body"] == message.model_dump_json(exclude_defaults=True)
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    parsed = dlq_function.queue_message(record)
    assert parsed.body == message
    assert parsed.receive_count == 1
    assert parsed.message_id == record["messageId"]


def check_sqs_dead_letter(svc: Services, event: dict[str, Any]) -> None:
    (record,) = event["Records"]
    assert dlq_function.queue_message(record).receive_count == 6
    created = body(api_handler(load("apigw_v2_post_runs.json"), None))
    record["body"] = record["body"].replace("RUN_ID", created["run_id"])
    assert RunMessage.model_validate_json(record["body"]).run_id == created["run_id"]
    sink = MemoryQueue()
    dlq_function.configure(svc, dlq=sink)
    response = dlq_function.handler(event)
    assert response == {"batchItemFailures": [], "settled": {record["messageId"]: "kept"}}
    run = asyncio.run(svc.journal.get_run(created["run_id"]))
    assert run.status is RunStatus.FAILED


def check_scheduler_payload(svc: Services, event: dict[str, Any]) -> None:
    # The Scheduler target's input (infra.constructs.triggers.schedule_payload), time filled.
    assert set(event) == {"rule", "time"}
    rule, fired_at = schedule_trigger.parse_event(event)
    assert rule in {s["name"] for s in LOCAL_STACK_SETTINGS["triggers"]["schedules"]}
    assert fired_at == datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    response = schedule_trigger.handler(event)
    assert response["rule"] == rule
    assert response["status"] == "queued"
    run = asyncio.run(svc.journal.get_run(response["run_id"]))
    assert run.tenant == DEV_TENANT


def check_eventbridge_scheduled(svc: Services, event: dict[str, Any]) -> None:
    assert schedule_trigger.parse_event(event) == (
        "nightly-digest",
        datetime(2025, 3, 1, 6, 0, tzinfo=UTC),
    )
    response = schedule_trigger.handler(event)
    assert response["rule"] == "nightly-digest"
    assert response["status"] == "queued"


def check_s3_put(svc: Services, event: dict[str, Any]) -> None:
    (run_id,) = s3_trigger.handler(event)["runs"]
    run = asyncio.run(svc.journal.get_run(run_id))
    assert run.input["key"] == "invoices/2025/ACME Corp, March + April.pdf"  # URL-decoded


def check_s3_test_event(svc: Services, event: dict[str, Any]) -> None:
    assert event["Event"] == "s3:TestEvent"
    assert s3_trigger.handler(event) == {"runs": []}


def check_sqs_s3_put(svc: Services, event: dict[str, Any]) -> None:
    response = s3_trigger.handler(event)
    assert response["batchItemFailures"] == []
    assert len(response["runs"]) == 1  # the test event starts nothing, the put one run


CHECKS: dict[str, Callable[[Services, dict[str, Any]], None]] = {
    "apigw_v2_post_runs.json": check_post_runs,
    "apigw_v2_get_run.json": check_get_run,
    "apigw_v2_authorizer_request.json": check_authorizer_request,
    "sqs_runs_message.json": check_sqs_runs_message,
    "sqs_dead_letter.json": check_sqs_dead_letter,
    "eventbridge_scheduler_payload.json": check_scheduler_payload,
    "eventbridge_scheduled.json": check_eventbridge_scheduled,
    "s3_put.json": check_s3_put,
    "s3_test_event.json": check_s3_test_event,
    "sqs_s3_put.json": check_sqs_s3_put,
}


def test_every_sample_has_a_check_and_a_readme_entry() -> None:
    assert set(SAMPLES) == set(CHECKS), "add a check (and a README line) for each sample"
    readme = (EVENTS / "README.md").read_text()
    assert [name for name in SAMPLES if f"`{name}`" not in readme] == []


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_event_is_answered_by_its_handler(name: str, svc: Services) -> None:
    CHECKS[name](svc, load(name))
