"""What the runtime reports as a run progresses (logs, metrics, traces hang off this).

The runtime calls these hooks; ``shared.observability.PowertoolsObserver`` turns them into
structured logs and EMF metrics. Keeping it an interface keeps Powertools out of the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from shared.models.run import Run, Usage


class RunObserver(Protocol):
    def run_started(self, run: Run, *, step: int, resumed: bool) -> None: ...

    def step_completed(
        self, run: Run, *, step: int, model: str, latency_ms: float, usage: Usage
    ) -> None: ...

    def tool_completed(
        self, run: Run, *, step: int, name: str, latency_ms: float, is_error: bool
    ) -> None: ...

    def run_stopped(self, run: Run) -> None:
        """An execution returned: ``run`` as stored (finished, paused or handed back)."""

    def span(
        self, name: str, **annotations: str | int | float | bool
    ) -> contextlib.AbstractContextManager[None]: ...

    # The gateway's (``shared.gateway.GatewayObserver``): not per run, per model call.
    def throttled(self, model: str, wait_s: float, reason: str) -> None: ...

    def fell_back(self, model: str, to_model: str, reason: str) -> None: ...


class NullObserver:
    def run_started(self, run: Run, *, step: int, resumed: bool) -> None:
        return None

    def step_completed(
        self, run: Run, *, step: int, model: str, latency_ms: float, usage: Usage
    ) -> None:
        return None

    def tool_completed(
        self, run: Run, *, step: int, name: str, latency_ms: float, is_error: bool
    ) -> None:
        return None

    def run_stopped(self, run: Run) -> None:
        return None

    @contextlib.contextmanager
    def span(self, name: str, **annotations: str | int | float | bool) -> Iterator[None]:
        yield

    def throttled(self, model: str, wait_s: float, reason: str) -> None:
        return None

    def fell_back(self, model: str, to_model: str, reason: str) -> None:
        return None


class UsageSink(Protocol):
    """Where the runtime counts what each step used (``shared.usage.UsageRecorder``)."""

    def record(
        self,
        *,
        tenant: str,
        agent: str,
        usage: Usage,
        at: datetime,
        steps: int = 1,
        runs: int = 0,
    ) -> None: ...

    async def flush(self, *, force: bool = False) -> None:
        """Write what was recorded when due (``force``: now). Never raises."""

    async def spent_today(self, tenant: str) -> float: ...


class NullUsage:
    def record(
        self,
        *,
        tenant: str,
        agent: str,
        usage: Usage,
        at: datetime,
        steps: int = 1,
        runs: int = 0,
    ) -> None:
        return None

    async def flush(self, *, force: bool = False) -> None:
        return None

    async def spent_today(self, tenant: str) -> float:
        return 0.0
