"""Schedule trigger: an EventBridge rule or EventBridge Scheduler fires → one run.

The event names the trigger rule in one of two ways:

- a payload of our own: ``{"rule": "nightly-digest", "time": "2025-01-01T06:00:00Z"}``
  (Scheduler: ``"time": "<aws.scheduler.scheduled-time>"``); ``time`` is optional;
- EventBridge's own "Scheduled Event", whose ``resources`` hold the rule's ARN: the rule
  is found by the EventBridge rule's name, so name it after the trigger rule.

The fire time makes the run idempotent: a firing delivered twice starts one run. Without a
time in the event the current minute is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from functions import run_sync
from functions.triggers import Container, container
from shared.errors import ValidationFailedError
from shared.logic.triggers import start_from_schedule
from shared.models.run import Run


def _rule_from_arn(arn: str) -> str:
    # arn:aws:events:region:account:rule/[bus/]name, arn:aws:scheduler:...:schedule/group/name
    return arn.rsplit("/", 1)[-1] if "/" in arn else ""


def _time(value: Any) -> datetime:
    if not value:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationFailedError(f"unreadable fire time {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_event(event: Mapping[str, Any]) -> tuple[str, datetime]:
    """The trigger rule's name and the fire time."""
    if isinstance(event.get("rule"), str) and event["rule"]:
        when = event.get("time") or event.get("scheduled_time") or event.get("fired_at")
        return event["rule"], _time(when)
    if event.get("detail-type") == "Scheduled Event":
        resources = event.get("resources") or []
        names = [_rule_from_arn(str(r)) for r in resources]
        if names and names[0]:
            return names[0], _time(event.get("time"))
    raise ValidationFailedError(
        'not a schedule event: expected {"rule": name} or an EventBridge "Scheduled Event"'
    )


async def handle(c: Container, event: Mapping[str, Any]) -> dict[str, Any]:
    rule, fired_at = parse_event(event)
    started = await start_from_schedule(c.services, rule, fired_at, rules=c.rules)
    if isinstance(started, Run):
        return {"rule": rule, "run_id": started.run_id, "status": started.status.value}
    return {"rule": rule, "job_id": started.job_id, "status": started.status.value}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    c = container()
    return run_sync(handle(c, event))
