"""The journal interface every backend implements (and the conformance suite checks).

Writes by the runtime that executes a run are fenced twice: records are appended with a
condition that their seq does not exist yet, and run updates carry the writer's lease, so a
stale worker fails its next write and stops.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from shared.models.events import Event
from shared.models.journal import JournalRecord
from shared.models.run import Lease, Run, RunError, RunPage, RunStatus, Usage


class RunPatch(BaseModel):
    """Fields of the run item a writer may change. Only the fields set are written."""

    model_config = ConfigDict(frozen=True)

    status: RunStatus | None = None
    steps: int | None = None
    usage: Usage | None = None
    output: Any = None
    error: RunError | None = None
    pending_approval: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None
    cancel_requested: bool | None = None
    paused_s: float | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class Journal(Protocol):
    async def create_run(self, run: Run, first: JournalRecord) -> None:
        """Store a new run with its first record. ``RunExistsError`` if the id is taken."""

    async def get_run(self, run_id: str) -> Run:
        """The run item. ``RunNotFoundError`` if there is none."""

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether a cancel was asked for: the runtime's check at every step boundary, so
        it may read a replica a moment behind (eventually consistent, half the cost).
        ``RunNotFoundError`` if there is no such run."""

    async def append(self, run_id: str, record: JournalRecord) -> None:
        """Append ``record`` at ``record.seq``; ``JournalConflictError`` if that seq exists."""

    async def records(self, run_id: str, *, after_seq: int = 0) -> list[JournalRecord]:
        """Every record with ``seq > after_seq``, in order."""

    async def events(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Event]:
        """Events with ``seq > after`` in order, at most ``limit``."""

    async def update_run(
        self,
        run_id: str,
        patch: RunPatch,
        *,
        lease: Lease | None,
        expected_status: RunStatus | None = None,
    ) -> Run:
        """Apply ``patch``. With a lease, only while that lease is current (``LeaseLostError``);
        with ``expected_status``, only while the run has it (``RunStateConflictError``)."""

    async def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, patch: RunPatch | None = None
    ) -> Lease:
        """Take the run if it has no live lease (or ``owner`` holds it), applying ``patch`` in
        the same write. ``LeaseHeldError`` if another owner's lease is live."""

    async def renew_lease(self, lease: Lease, ttl_s: float) -> tuple[Lease, Run]:
        """Extend our lease; returns it with the run as now stored. ``LeaseLostError``."""

    async def release_lease(self, lease: Lease, patch: RunPatch | None = None) -> Run:
        """Give the run up (optionally applying ``patch`` in the same write)."""

    async def list_runs(
        self,
        tenant: str,
        *,
        status: RunStatus | None = None,
        agent: str | None = None,
        thread_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> RunPage:
        """The tenant's runs, newest first, filtered; ``cursor`` is the previous page's
        ``next_cursor`` (opaque). A malformed cursor raises ``ValidationFailedError``."""
