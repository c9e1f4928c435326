"""The in-memory reference backend.

Everything is stored serialized (JSON) and parsed back on read, so it behaves like a real
store: callers never share mutable objects with it, and anything that would not survive
serialization fails here first.
"""

from __future__ import annotations

import base64
import bisect
import json
import threading
import time
from collections.abc import Callable

from shared.errors import (
    JournalConflictError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    RunNotFoundError,
    RunStateConflictError,
    ValidationFailedError,
)
from shared.journal.base import RunPatch
from shared.journal.events import events_after
from shared.models.events import Event
from shared.models.journal import JournalRecord
from shared.models.run import Lease, Run, RunPage, RunStatus, RunSummary


class MemoryJournal:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._runs: dict[str, str] = {}
        self._leases: dict[str, Lease] = {}
        self._fences: dict[str, int] = {}
        self._seqs: dict[str, list[int]] = {}
        self._records: dict[str, dict[int, str]] = {}
        self.writes = 0  # write requests, for benchmarks

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def create_run(self, run: Run, first: JournalRecord) -> None:
        with self._lock:
            if run.run_id in self._runs:
                raise RunExistsError(f"run {run.run_id} already exists")
            self._runs[run.run_id] = run.model_dump_json()
            self._seqs[run.run_id] = [first.seq]
            self._records[run.run_id] = {first.seq: first.to_json()}
            self._fences[run.run_id] = 0
            self.writes += 1

    def _run(self, run_id: str) -> Run:
        raw = self._runs.get(run_id)
        if raw is None:
            raise RunNotFoundError(f"run {run_id} not found")
        return Run.model_validate_json(raw)

    async def get_run(self, run_id: str) -> Run:
        with self._lock:
            return self._run(run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        with self._lock:
            return self._run(run_id).cancel_requested

    async def append(self, run_id: str, record: JournalRecord) -> None:
        with self._lock:
            self._run(run_id)
            stored = self._records[run_id]
            if record.seq in stored:
                raise JournalConflictError(
                    f"run {run_id}: seq {record.seq} is already journaled",
                    details={"seq": record.seq},
                )
            stored[record.seq] = record.to_json()
            bisect.insort(self._seqs[run_id], record.seq)
            self.writes += 1

    async def records(self, run_id: str, *, after_seq: int = 0) -> list[JournalRecord]:
        with self._lock:
            self._run(run_id)
            seqs = self._seqs[run_id]
            start = bisect.bisect_right(seqs, after_seq)
            raw = [self._records[run_id][s] for s in seqs[start:]]
        return [JournalRecord.model_validate_json(r) for r in raw]

    async def events(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Event]:
        with self._lock:
            self._run(run_id)
            if limit <= 0:  # "at most limit": events_after would still return one event
                return []
            seqs = self._seqs[run_id]
            # The record holding event after+1 is the last one whose seq is <= after+1.
            start = max(0, bisect.bisect_right(seqs, after + 1) - 1)
            raw = [self._records[run_id][s] for s in seqs[start:]]
        return events_after((JournalRecord.model_validate_json(r) for r in raw), after, limit)

    def _check_lease(self, run_id: str, lease: Lease) -> None:
        current = self._leases.get(run_id)
        if current is None or current.fence != lease.fence or current.owner != lease.owner:
            raise LeaseLostError(
                f"run {run_id}: lease of {lease.owner} (fence {lease.fence}) is no longer current"
            )

    async def update_run(
        self,
        run_id: str,
        patch: RunPatch,
        *,
        lease: Lease | None,
        expected_status: RunStatus | None = None,
    ) -> Run:
        with self._lock:
            run = self._run(run_id)
            if lease is not None:
                self._check_lease(run_id, lease)
            if expected_status is not None and run.status is not expected_status:
                raise RunStateConflictError(
                    f"run {run_id} is {run.status.value}, not {expected_status.value}",
                    details={"status": run.status.value},
                )
            updated = _patched(run, patch)
            self._runs[run_id] = updated.model_dump_json()
            self.writes += 1
            return updated

    async def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, patch: RunPatch | None = None
    ) -> Lease:
        with self._lock:
            run = self._run(run_id)
            now = self._now_ms()
            current = self._leases.get(run_id)
            if current is not None and current.owner != owner and current.expires_at_ms > now:
                raise LeaseHeldError(
                    f"run {run_id} is leased by another worker",
                    details={"expires_at_ms": current.expires_at_ms},
                )
            fence = self._fences[run_id] + 1
            self._fences[run_id] = fence
            lease = Lease(
                run_id=run_id, owner=owner, fence=fence, expires_at_ms=now + int(ttl_s * 1000)
            )
            self._leases[run_id] = lease
            if patch is not None:
                self._runs[run_id] = _patched(run, patch).model_dump_json()
            self.writes += 1
            return lease

    async def renew_lease(self, lease: Lease, ttl_s: float) -> tuple[Lease, Run]:
        with self._lock:
            run = self._run(lease.run_id)
            self._check_lease(lease.run_id, lease)
            renewed = lease.model_copy(update={"expires_at_ms": self._now_ms() + int(ttl_s * 1000)})
            self._leases[lease.run_id] = renewed
            self.writes += 1
            return renewed, run

    async def release_lease(self, lease: Lease, patch: RunPatch | None = None) -> Run:
        with self._lock:
            run = self._run(lease.run_id)
            self._check_lease(lease.run_id, lease)
            if patch is not None:
                run = _patched(run, patch)
                self._runs[lease.run_id] = run.model_dump_json()
            del self._leases[lease.run_id]
            self.writes += 1
            return run

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
        start = decode_cursor(cursor) if cursor else None
        with self._lock:
            runs = [Run.model_validate_json(raw) for raw in self._runs.values()]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        matching = [
            r
            for r in runs
            if r.tenant == tenant
            and (status is None or r.status is status)
            and (agent is None or r.agent == agent)
            and (thread_id is None or r.thread_id == thread_id)
            and (start is None or (r.created_at.isoformat(), r.run_id) < start)
        ]
        page = matching[:limit]
        more = len(matching) > limit
        last = page[-1] if page else None
        return RunPage(
            runs=[RunSummary.model_validate(r.model_dump()) for r in page],
            next_cursor=encode_cursor((last.created_at.isoformat(), last.run_id))
            if more and last
            else None,
        )


def encode_cursor(position: tuple[str, str]) -> str:
    raw = json.dumps(list(position)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, run_id = json.loads(base64.urlsafe_b64decode(padded))
        return str(created), str(run_id)
    except (ValueError, TypeError) as exc:
        raise ValidationFailedError("malformed cursor", details={"cursor": cursor}) from exc


def _patched(run: Run, patch: RunPatch) -> Run:
    return Run.model_validate({**run.model_dump(mode="json"), **patch.changes()})
