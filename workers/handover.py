"""A deadline that has not passed until the worker drains, then has already passed.

``execute_run(..., deadline=...)`` makes the runtime hand a run back at its first step boundary
past the deadline: pending tool results journaled, lease released, status ``queued``. A worker
wants that on SIGTERM, at a moment nobody knows when the run starts, so each execution gets
the process's ``HandoverDeadline``: a ``float`` that compares as +inf until ``trigger()`` and
as -inf after it. The runtime compares ``time.monotonic() >= deadline``; because this class
subclasses ``float`` and overrides the reflected comparison, Python asks it first, so the
runtime sees the switch at its next boundary without any change to its API.
"""

from __future__ import annotations

import math
from typing import Self


class HandoverDeadline(float):
    _passed: bool

    def __new__(cls) -> Self:
        deadline = super().__new__(cls, math.inf)
        deadline._passed = False
        return deadline

    def trigger(self) -> None:
        """From now on the deadline has passed: every run stops at its next boundary."""
        self._passed = True

    @property
    def passed(self) -> bool:
        return self._passed

    def _now_value(self) -> float:
        return -math.inf if self._passed else math.inf

    def __lt__(self, other: float, /) -> bool:
        return self._now_value() < other

    def __le__(self, other: float, /) -> bool:
        return self._now_value() <= other

    def __gt__(self, other: float, /) -> bool:
        return self._now_value() > other

    def __ge__(self, other: float, /) -> bool:
        return self._now_value() >= other

    def __repr__(self) -> str:
        return f"HandoverDeadline(passed={self._passed})"


__all__ = ["HandoverDeadline"]
