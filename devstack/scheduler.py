"""The template's EventBridge Scheduler schedules, fired locally (moto never fires them).

Each enabled schedule fires at its next time (``devstack.expressions``), invoking its target
function in this process with the target's Input, ``<aws.scheduler.scheduled-time>``
replaced by the fire time, as Scheduler does. ``fire`` fires one now, on demand (the local
stack's ``POST /_local/schedules/{name}/fire``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from devstack.expressions import next_fire
from devstack.invocation import Invoker
from devstack.topology import Schedule

logger = logging.getLogger("switchyard.devstack")

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


class UnknownSchedule(KeyError):
    pass


class Scheduler:
    def __init__(
        self,
        schedules: list[Schedule],
        functions: Invoker,
        *,
        report: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        """``clock`` and ``wait`` (sleep up to N seconds; True when stopped) are injectable so
        a test can move time instead of waiting for it."""
        self.schedules = {s.name: s for s in schedules}
        self.functions = functions
        self.report = report or (lambda line: None)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.started = self.clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wait = wait or self._stop.wait
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def describe(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [
            {
                "name": s.name,
                "expression": s.expression,
                "enabled": s.enabled,
                "next_fire": _iso(next_fire(s.expression, now, started=self.started))
                if s.enabled
                else None,
                "function": s.function.handler,
            }
            for s in self.schedules.values()
        ]

    def fire(self, name: str, at: datetime | None = None) -> Any:
        schedule = self.schedules.get(name)
        if schedule is None:
            raise UnknownSchedule(name)
        when = (at or self.clock()).astimezone(UTC).replace(microsecond=0)
        payload = json.loads(schedule.payload.replace(SCHEDULED_TIME, _iso(when) or ""))
        with self._lock:  # one firing at a time, as one schedule target would see them
            answer = self.functions.invoke(schedule.function, payload)
        self.report(f"schedule {name} fired at {_iso(when)}: {answer}")
        return answer

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        last = self.started
        while not self._stop.is_set():
            due = [
                (when, s)
                for s in self.schedules.values()
                if s.enabled
                and (when := next_fire(s.expression, last, started=self.started)) is not None
            ]
            if not due:
                return
            when, _ = min(due, key=lambda pair: pair[0])
            wait_s = (when - self.clock()).total_seconds()
            if wait_s > 0 and self._wait(min(wait_s, 60.0)):
                return
            if self.clock() < when:
                continue
            for fire_at, schedule in due:
                if fire_at <= when:
                    try:
                        self.fire(schedule.name, fire_at)
                    except Exception:
                        logger.exception("schedule %s", schedule.name)
            last = when


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None
