"""The schedule trigger through its Lambda handler."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

import functions.triggers as trigger_functions
from functions import run_sync
from functions.triggers.schedule import handler, parse_event
from shared.config import Settings
from shared.errors import NotFoundError, ValidationFailedError
from shared.logic.service import Services
from shared.logic.triggers import TriggerRules, start_from_schedule
from shared.models.run import Run, RunStatus
from shared.wiring import build_services
from tests.triggers.conftest import load_event


def test_eventbridge_scheduled_event_starts_the_named_rule(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    response = handler(load_event("eventbridge_scheduled.json"))

    run = run_sync(services.journal.get_run(response["run_id"]))
    assert response == {"rule": "nightly-digest", "run_id": run.run_id, "status": "queued"}
    assert run.agent == "ops-assistant"
    assert run.tenant == "acme"
    assert run.input == "Summarise yesterday's incidents"
    assert run.status is RunStatus.QUEUED
    assert run.metadata == {
        "trigger": "schedule",
        "trigger_rule": "nightly-digest",
        "fired_at": "2025-03-01T06:00:00+00:00",
    }
    assert run.idempotency_key == "schedule:nightly-digest:2025-03-01T06:00:00Z"


def test_a_firing_delivered_twice_starts_one_run(services: Services, rules: TriggerRules) -> None:
    trigger_functions.configure(services, rules)
    payload = {"rule": "hourly-check", "time": "2025-03-01T07:00:00Z"}
    first = handler(payload)
    second = handler(dict(payload))
    later = handler({"rule": "hourly-check", "time": "2025-03-01T08:00:00Z"})

    assert first["run_id"] == second["run_id"]
    assert later["run_id"] != first["run_id"]
    page = run_sync(services.journal.list_runs("default"))
    assert len(page.runs) == 2
    assert services.queue.depth() == 2  # type: ignore[attr-defined]


def test_without_a_time_the_current_minute_is_the_fire_time(
    services: Services, rules: TriggerRules
) -> None:
    trigger_functions.configure(services, rules)
    response = handler({"rule": "hourly-check"})
    run = run_sync(services.journal.get_run(response["run_id"]))
    fired = datetime.fromisoformat(run.metadata["fired_at"])
    assert fired.second == 0
    assert abs((datetime.now(UTC) - fired).total_seconds()) < 120


def test_unknown_rules_and_other_events_are_errors(services: Services, rules: TriggerRules) -> None:
    trigger_functions.configure(services, rules)
    with pytest.raises(NotFoundError, match="no schedule rule named 'weekly'"):
        handler({"rule": "weekly"})
    with pytest.raises(ValidationFailedError, match="not a schedule event"):
        handler({"detail-type": "Object Created", "resources": []})
    with pytest.raises(ValidationFailedError, match="unreadable fire time"):
        handler({"rule": "hourly-check", "time": "yesterday"})


def test_parse_event_shapes() -> None:
    event = load_event("eventbridge_scheduled.json")
    event["resources"] = ["arn:aws:events:us-east-1:123456789012:rule/custom-bus/nightly-digest"]
    assert parse_event(event) == ("nightly-digest", datetime(2025, 3, 1, 6, tzinfo=UTC))
    scheduler = {"rule": "x", "time": "2025-03-01T06:00:00+02:00"}
    assert parse_event(scheduler)[1] == datetime(2025, 3, 1, 4, tzinfo=UTC)


async def test_start_from_schedule_reads_rules_from_settings(
    services: Services, rules: TriggerRules
) -> None:
    settings = services.settings.model_copy(update={"triggers_json": rules.model_dump_json()})
    svc = dataclasses.replace(services, settings=settings)
    at = datetime(2025, 3, 1, 6, 0, 0, 123456)  # naive: taken as UTC, sub-seconds dropped
    run = await start_from_schedule(svc, "nightly-digest", at)
    again = await start_from_schedule(svc, "nightly-digest", at.replace(microsecond=0))
    assert isinstance(run, Run)
    assert isinstance(again, Run)
    assert run.run_id == again.run_id
    assert run.metadata["fired_at"] == "2025-03-01T06:00:00+00:00"


async def test_a_schedule_rule_naming_a_pipeline_starts_one_job_per_fire_time() -> None:
    from shared.jobs.memory import MemoryWorkflows
    from shared.models.job import Job

    machine = "arn:aws:states:us-east-1:000000000000:stateMachine:switchyard-test-incident-response"
    rules = TriggerRules.model_validate(
        {
            "schedules": [
                {
                    "name": "checkout-check",
                    "expression": "rate(1 hour)",
                    "pipeline": "incident-response",
                    "tenant": "acme",
                    "input": {"service": "checkout", "reason": "hourly check"},
                }
            ]
        }
    )
    svc = build_services(Settings(pipeline_arns={"incident-response": machine}), backend="memory")
    at = datetime(2025, 3, 1, 6, 0, 0)
    job = await start_from_schedule(svc, "checkout-check", at, rules=rules)
    again = await start_from_schedule(svc, "checkout-check", at, rules=rules)
    later = await start_from_schedule(svc, "checkout-check", at.replace(hour=7), rules=rules)
    assert isinstance(job, Job)
    assert isinstance(again, Job)
    assert isinstance(later, Job)
    assert job.job_id == again.job_id != later.job_id
    assert job.tenant == "acme"
    assert job.metadata["trigger"] == "schedule"
    workflows = svc.workflows
    assert isinstance(workflows, MemoryWorkflows)
    assert len(workflows.executions) == 2
    assert workflows.inputs[job.execution_arn]["input"] == {
        "service": "checkout",
        "reason": "hourly check",
    }
