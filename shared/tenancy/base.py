"""The control store: API keys, idempotency records and threads.

One interface with an in-memory reference and a DynamoDB backend (same single table as the
journal), checked by one conformance suite. Keys are stored hashed, never in plaintext.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class ApiKeyRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    key_id: str
    tenant: str
    name: str = ""
    key_hash: str  # sha256 hex of the whole key; the key itself is never stored
    created_at: datetime
    revoked_at: datetime | None = None


class IdempotencyRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant: str
    key: str
    body_hash: str
    run_id: str
    created_at: datetime


class ThreadRecord(BaseModel):
    """Runs of a thread in submission order; ``runs[finished]`` is the one allowed to run.

    Runs on one thread never execute concurrently: a run may start only when every earlier
    run of its thread has finished (``finished`` counts them).
    """

    model_config = ConfigDict(frozen=True)

    thread_id: str
    tenant: str
    runs: list[str] = Field(default_factory=list)
    finished: int = 0
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> str | None:
        return self.runs[self.finished] if self.finished < len(self.runs) else None

    @property
    def busy(self) -> bool:
        return self.finished < len(self.runs)


class ControlStore(Protocol):
    # ---- API keys --------------------------------------------------------------------------
    async def put_key(self, record: ApiKeyRecord) -> None:
        """Store a new key record. ``ConflictError`` if the key_id exists."""

    async def get_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord:
        """Mark revoked (idempotent). ``NotFoundError`` if unknown."""

    # ---- idempotency -----------------------------------------------------------------------
    async def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Store ``record`` unless (tenant, key) exists; return the existing one if it does.
        Records are kept for at least 24 hours (the DynamoDB backend expires them after)."""

    # ---- threads ---------------------------------------------------------------------------
    # Thread ids are per tenant: two tenants may use the same id without ever meeting.
    async def get_thread(self, tenant: str, thread_id: str) -> ThreadRecord | None: ...

    async def add_thread_run(
        self, tenant: str, thread_id: str, run_id: str, *, only_if_idle: bool, at: datetime
    ) -> ThreadRecord:
        """Append ``run_id`` (creating the thread). ``ConflictError`` if ``only_if_idle`` and
        an earlier run has not finished. Adding a run already on the thread returns the thread
        unchanged (a retried submit must neither duplicate nor refuse its own run)."""

    async def finish_thread_run(
        self, tenant: str, thread_id: str, run_id: str, at: datetime
    ) -> ThreadRecord:
        """Mark the active run finished, letting the next one start. No-op if ``run_id`` is
        not the active run (already advanced: finishing is idempotent). ``NotFoundError`` for
        an unknown thread."""
