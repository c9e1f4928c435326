"""The local scheduler: firing a schedule (on demand and from its loop, on an injected clock)
invokes its target function with the target's Input, the scheduled time filled in."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from devstack.scheduler import Scheduler, UnknownSchedule
from devstack.topology import LocalFunction, Schedule

T0 = datetime(2025, 3, 14, 10, 0, 0, tzinfo=UTC)
TARGET = LocalFunction(logical_id="ScheduleFunction", handler="functions.triggers.schedule.handler")
OTHER = LocalFunction(logical_id="OtherFunction", handler="functions.other.handler")


def schedule(
    name: str,
    expression: str,
    *,
    function: LocalFunction = TARGET,
    enabled: bool = True,
) -> Schedule:
    payload = json.dumps({"rule": name, "time": "<aws.scheduler.scheduled-time>"})
    return Schedule(name, expression, payload, function, enabled)


class RecordingFunctions:
    """Stands in for the stack's functions: records each invocation; ``invoked`` is set on
    the first."""

    def __init__(self) -> None:
        self.calls: list[tuple[LocalFunction, dict[str, Any]]] = []
        self.invoked = threading.Event()

    def invoke(self, fn: LocalFunction, event: dict[str, Any]) -> Any:
        self.calls.append((fn, event))
        self.invoked.set()
        return {"started": event.get("rule")}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ---- fire ----------------------------------------------------------------------------------


def test_fire_invokes_the_target_with_the_scheduled_time() -> None:
    functions = RecordingFunctions()
    lines: list[str] = []
    scheduler = Scheduler(
        [schedule("hourly", "rate(1 hour)"), schedule("other", "rate(1 day)", function=OTHER)],
        functions,
        report=lines.append,
        clock=Clock(T0),
    )
    answer = scheduler.fire("hourly", datetime(2025, 3, 14, 10, 17, 30, 123456, tzinfo=UTC))
    assert answer == {"started": "hourly"}
    assert functions.calls == [(TARGET, {"rule": "hourly", "time": "2025-03-14T10:17:30Z"})]
    assert lines == ["schedule hourly fired at 2025-03-14T10:17:30Z: {'started': 'hourly'}"]


def test_fire_without_a_time_uses_the_clock() -> None:
    functions = RecordingFunctions()
    clock = Clock(T0)
    scheduler = Scheduler([schedule("hourly", "rate(1 hour)")], functions, clock=clock)
    clock.now = T0 + timedelta(minutes=7, seconds=5)
    scheduler.fire("hourly")
    assert functions.calls == [(TARGET, {"rule": "hourly", "time": "2025-03-14T10:07:05Z"})]


def test_fire_reports_the_time_in_utc() -> None:
    functions = RecordingFunctions()
    scheduler = Scheduler([schedule("hourly", "rate(1 hour)")], functions, clock=Clock(T0))
    scheduler.fire("hourly", datetime(2025, 3, 14, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert functions.calls[0][1]["time"] == "2025-03-14T10:00:00Z"


def test_a_disabled_schedule_can_still_be_fired_on_demand() -> None:
    functions = RecordingFunctions()
    off = schedule("off", "rate(1 hour)", function=OTHER, enabled=False)
    scheduler = Scheduler([off], functions, clock=Clock(T0))
    scheduler.fire("off")
    assert [fn for fn, _ in functions.calls] == [OTHER]


def test_firing_an_unknown_schedule_raises() -> None:
    functions = RecordingFunctions()
    scheduler = Scheduler([schedule("hourly", "rate(1 hour)")], functions, clock=Clock(T0))
    with pytest.raises(UnknownSchedule):
        scheduler.fire("nightly")
    with pytest.raises(KeyError):  # what callers that only know KeyError catch
        scheduler.fire("")
    assert functions.calls == []


# ---- describe ------------------------------------------------------------------------------


def test_describe_lists_each_schedule_with_its_next_fire() -> None:
    clock = Clock(T0)
    scheduler = Scheduler(
        [
            schedule("every-minute", "rate(1 minute)"),
            schedule("morning", "cron(0 6 * * ? *)", function=OTHER),
            schedule("off", "rate(1 hour)", enabled=False),
            schedule("month-end", "cron(0 0 L * ? *)"),
        ],
        RecordingFunctions(),
        clock=clock,
    )
    clock.now = T0 + timedelta(seconds=90)
    assert scheduler.describe() == [
        {
            "name": "every-minute",
            "expression": "rate(1 minute)",
            "enabled": True,
            "next_fire": "2025-03-14T10:02:00Z",  # on the grid of the scheduler's start
            "function": TARGET.handler,
        },
        {
            "name": "morning",
            "expression": "cron(0 6 * * ? *)",
            "enabled": True,
            "next_fire": "2025-03-15T06:00:00Z",
            "function": OTHER.handler,
        },
        {
            "name": "off",
            "expression": "rate(1 hour)",
            "enabled": False,
            "next_fire": None,
            "function": TARGET.handler,
        },
        {
            "name": "month-end",
            "expression": "cron(0 0 L * ? *)",
            "enabled": True,
            "next_fire": None,  # fired on demand only
            "function": TARGET.handler,
        },
    ]


# ---- the loop ------------------------------------------------------------------------------
# The loop waits on ``_stop`` for real time (up to the next fire, at most 60 s): advancing an
# injected clock does not wake it. So these tests set the clock before ``start``: whatever is
# due by then fires at once, and the loop then waits for the next fire until ``stop``.


def test_the_loop_fires_a_due_schedule_at_its_time() -> None:
    functions = RecordingFunctions()
    clock = Clock(T0)
    scheduler = Scheduler(
        [
            schedule("every-minute", "rate(1 minute)"),
            schedule("off", "rate(1 minute)", function=OTHER, enabled=False),
        ],
        functions,
        clock=clock,
    )
    clock.now = T0 + timedelta(seconds=61)  # the first fire (T0 + 60 s) is due
    scheduler.start()
    try:
        assert functions.invoked.wait(5), "the due schedule did not fire"
    finally:
        scheduler.stop()
        scheduler.join(5)
    assert not scheduler._thread.is_alive()
    # Once, at its scheduled time (not the clock's); the next (T0 + 120 s) is not due yet; the
    # disabled schedule never fires.
    assert functions.calls == [(TARGET, {"rule": "every-minute", "time": "2025-03-14T10:01:00Z"})]


def test_the_loop_ends_when_nothing_can_fire() -> None:
    functions = RecordingFunctions()
    scheduler = Scheduler(
        [
            schedule("month-end", "cron(0 0 L * ? *)"),
            schedule("off", "rate(1 minute)", enabled=False),
        ],
        functions,
        clock=Clock(T0 + timedelta(days=365)),
    )
    scheduler.start()
    scheduler.join(5)  # no stop: it returns by itself
    assert not scheduler._thread.is_alive()
    assert functions.calls == []
