"""In-memory control store (reference backend)."""

from __future__ import annotations

import threading
from datetime import datetime

from shared.errors import ConflictError, NotFoundError
from shared.tenancy.base import ApiKeyRecord, IdempotencyRecord, ThreadRecord


class MemoryControlStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, ApiKeyRecord] = {}
        self._idem: dict[tuple[str, str], IdempotencyRecord] = {}
        self._threads: dict[tuple[str, str], ThreadRecord] = {}

    async def put_key(self, record: ApiKeyRecord) -> None:
        with self._lock:
            if record.key_id in self._keys:
                raise ConflictError(f"key {record.key_id} exists")
            self._keys[record.key_id] = record

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._lock:
            return self._keys.get(key_id)

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord:
        with self._lock:
            record = self._keys.get(key_id)
            if record is None:
                raise NotFoundError(f"no key {key_id}")
            if record.revoked_at is None:
                record = record.model_copy(update={"revoked_at": at})
                self._keys[key_id] = record
            return record

    async def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            existing = self._idem.get((record.tenant, record.key))
            if existing is not None:
                return existing
            self._idem[record.tenant, record.key] = record
            return None

    async def get_thread(self, tenant: str, thread_id: str) -> ThreadRecord | None:
        with self._lock:
            return self._threads.get((tenant, thread_id))

    async def add_thread_run(
        self, tenant: str, thread_id: str, run_id: str, *, only_if_idle: bool, at: datetime
    ) -> ThreadRecord:
        with self._lock:
            thread = self._threads.get((tenant, thread_id)) or ThreadRecord(
                thread_id=thread_id, tenant=tenant, created_at=at, updated_at=at
            )
            if run_id in thread.runs:
                return thread  # an idempotent retry: already added
            if only_if_idle and thread.busy:
                raise ConflictError(
                    f"thread {thread_id} has a run in progress",
                    details={"active_run_id": thread.active},
                )
            thread = thread.model_copy(update={"runs": [*thread.runs, run_id], "updated_at": at})
            self._threads[tenant, thread_id] = thread
            return thread

    async def finish_thread_run(
        self, tenant: str, thread_id: str, run_id: str, at: datetime
    ) -> ThreadRecord:
        with self._lock:
            thread = self._threads.get((tenant, thread_id))
            if thread is None:
                raise NotFoundError(f"no thread {thread_id}")
            if thread.active == run_id:
                thread = thread.model_copy(
                    update={"finished": thread.finished + 1, "updated_at": at}
                )
                self._threads[tenant, thread_id] = thread
            return thread
