"""The DynamoDB + S3 journal backend.

Layout (see ``shared.dal.schema``): the run item ``RUN#{run_id}`` / ``RUN`` and one item per
journal record ``RUN#{run_id}`` / ``J#{seq:012d}``.

Writes and their cost:

- ``create_run``: one TransactWriteItems (the run item and the first record, each conditional
  on not existing yet).
- ``append``: one PutItem conditional on ``attribute_not_exists(pk)``; a writer whose seq is
  taken gets ``JournalConflictError`` (fencing by sequence).
- ``update_run`` / ``acquire_lease`` / ``renew_lease`` / ``release_lease``: one conditional
  UpdateItem each, the patch applied in the same write as the lease change.
- Payloads that would make an item too big cost one S3 PutObject more (never a failure).

Reads: ``list_runs`` queries the ``by_tenant`` index newest first. The status, agent and
thread_id filters apply to the items each Query page returns (DynamoDB reads them either way),
and pages are read until ``limit`` runs match (plus one, to know whether a next page exists)
or the tenant's index is exhausted. The cursor is the index position of the page's last run.

Payload encoding: a record's body is its JSON, zlib-compressed when that is smaller, stored as
a Binary attribute inside a small map ``{"enc": "raw"|"zlib", "data": <bytes>}``. When the
stored bytes exceed ``overflow_threshold_bytes`` they go to S3 under their content hash and
the map holds ``{"enc", "blob": "blobs/<sha256>", "size"}`` instead. The run item's free-form
fields (input, output, error, pending_approval, metadata, budget) are encoded the same way,
each within its share of the threshold (``RUN_FIELD_SHARES``), so that all of them together
stay under the threshold and the run item can never exceed DynamoDB's 400 KB, whatever
combination of big fields a run ends up with.

Every write sets ``expires_at`` (TTL, epoch seconds) to now + ``retention_days``.

The blocking boto3 calls run in a dedicated thread pool (``max_workers``, default 32), not in
asyncio's default executor (a handful of threads on a small machine), because a worker holds
hundreds of runs whose heartbeats and appends must not queue behind each other.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from shared.config import Settings
from shared.dal.dynamodb import ConditionFailedError, Item, Put, RunTable
from shared.dal.s3 import BlobStore
from shared.dal.schema import (
    BY_TENANT,
    BY_TENANT_PROJECTION,
    CREATED,
    PK,
    RECORD_SK_MAX,
    RECORD_SK_MIN,
    RUN_SK,
    SK,
    TENANT_PK,
    TTL_ATTRIBUTE,
    created_key,
    record_sk,
    run_pk,
    tenant_pk,
)
from shared.errors import (
    JournalConflictError,
    JournalError,
    LeaseHeldError,
    LeaseLostError,
    RunExistsError,
    RunNotFoundError,
    RunStateConflictError,
    ValidationFailedError,
)
from shared.journal.base import RunPatch
from shared.journal.events import events_after
from shared.journal.memory import decode_cursor, encode_cursor
from shared.models.events import Event
from shared.models.journal import JournalRecord
from shared.models.run import Lease, Run, RunPage, RunStatus, RunSummary

P = ParamSpec("P")
T = TypeVar("T")

LEASE_OWNER = "lease_owner"
LEASE_EXPIRES_MS = "lease_expires_ms"
LEASE_FENCE = "lease_fence"
BODY = "body"
SEQ = "seq"
NEXT_SEQ = "next_seq"

DAY_S = 86_400
DEFAULT_MAX_WORKERS = 32
DEFAULT_BLOB_CACHE_BYTES = 32 * 1024 * 1024
# Index items a filtered list_runs reads per Query page, at least (unfiltered: limit + 1).
DEFAULT_LIST_PAGE_ITEMS = 100
# The time part of the index sort key ``created`` (see ``shared.dal.schema.created_key``).
_CREATED_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_SORT_KEY_MAX_BYTES = 1024

# Free-form run fields and the share of the overflow threshold each may keep inline.
RUN_FIELD_SHARES: Mapping[str, float] = {
    "input": 0.3,
    "output": 0.3,
    "pending_approval": 0.2,
    "error": 0.1,
    "metadata": 0.05,
    "budget": 0.05,
}
# Fields a patch may clear (None): the run model's fields whose default is None.
_NULLABLE = frozenset(
    name
    for name, info in Run.model_fields.items()
    if not info.is_required() and info.default is None and info.default_factory is None
)


class BlockingCalls:
    """Runs blocking (boto3) calls off the event loop, in a thread pool of their own.

    ``await calls(fn, *args)`` runs ``fn`` in ``executor`` (one is created, and owned, when
    none is given). Shared by the DynamoDB backends (journal, control store).
    """

    def __init__(
        self,
        executor: Executor | None = None,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        thread_name_prefix: str = "dynamodb",
    ) -> None:
        self._owns_executor = executor is None
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix=thread_name_prefix
        )

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the thread pool (if this object created it)."""
        if self._owns_executor:
            self._executor.shutdown(wait=True)


class DynamoJournal:
    """``Journal`` on one DynamoDB table (``RunTable``) with S3 overflow (``BlobStore``)."""

    def __init__(
        self,
        table: RunTable,
        blobs: BlobStore,
        *,
        overflow_threshold_bytes: int = 350_000,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        blob_cache_bytes: int = DEFAULT_BLOB_CACHE_BYTES,
        list_page_items: int = DEFAULT_LIST_PAGE_ITEMS,
    ) -> None:
        if overflow_threshold_bytes <= 0:
            raise ValueError("overflow_threshold_bytes must be positive")
        if list_page_items <= 0:
            raise ValueError("list_page_items must be positive")
        self.table = table
        self.blobs = blobs
        self.overflow_threshold_bytes = overflow_threshold_bytes
        self.retention_days = retention_days
        self._clock = clock
        self._io = BlockingCalls(executor, max_workers=max_workers, thread_name_prefix="journal")
        self._cache = _BlobCache(blob_cache_bytes)
        self.list_page_items = list_page_items

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        clock: Callable[[], float] = time.time,
    ) -> DynamoJournal:
        """The journal on the deployment's table and bucket, with default boto3 clients whose
        connection pools match the thread pool."""
        table = RunTable(
            settings.table_name, region=settings.region, max_pool_connections=max_workers
        )
        blobs = BlobStore(
            settings.bucket_name, region=settings.region, max_pool_connections=max_workers
        )
        return cls(
            table,
            blobs,
            overflow_threshold_bytes=settings.overflow_threshold_bytes,
            retention_days=settings.retention_days,
            clock=clock,
            max_workers=max_workers,
        )

    def close(self) -> None:
        """Stop the thread pool (if this journal created it)."""
        self._io.close()

    # ---- the Journal protocol --------------------------------------------------------------

    async def create_run(self, run: Run, first: JournalRecord) -> None:
        await self._io(self._create_run, run, first)

    async def get_run(self, run_id: str) -> Run:
        return await self._io(self._get_run, run_id)

    async def cancel_requested(self, run_id: str) -> bool:
        return await self._io(self._cancel_requested, run_id)

    async def append(self, run_id: str, record: JournalRecord) -> None:
        await self._io(self._append, run_id, record)

    async def records(self, run_id: str, *, after_seq: int = 0) -> list[JournalRecord]:
        return await self._io(self._records, run_id, after_seq)

    async def events(self, run_id: str, *, after: int = 0, limit: int = 100) -> list[Event]:
        if limit <= 0:
            return []
        return await self._io(self._events, run_id, after, limit)

    async def update_run(
        self,
        run_id: str,
        patch: RunPatch,
        *,
        lease: Lease | None,
        expected_status: RunStatus | None = None,
    ) -> Run:
        return await self._io(self._update_run, run_id, patch, lease, expected_status)

    async def acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, patch: RunPatch | None = None
    ) -> Lease:
        return await self._io(self._acquire_lease, run_id, owner, ttl_s, patch)

    async def renew_lease(self, lease: Lease, ttl_s: float) -> tuple[Lease, Run]:
        return await self._io(self._renew_lease, lease, ttl_s)

    async def release_lease(self, lease: Lease, patch: RunPatch | None = None) -> Run:
        return await self._io(self._release_lease, lease, patch)

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
        after = _created_from_cursor(cursor) if cursor else None
        if limit <= 0:
            return RunPage(runs=[])
        wanted: dict[str, str] = {}
        if status is not None:
            wanted["status"] = status.value
        if agent is not None:
            wanted["agent"] = agent
        if thread_id is not None:
            wanted["thread_id"] = thread_id
        return await self._io(self._list_runs, tenant, wanted, limit, after)

    # ---- blocking implementations (run in the executor) -------------------------------------

    def _create_run(self, run: Run, first: JournalRecord) -> None:
        expires_at = self._expires_at()
        item: Item = {
            PK: run_pk(run.run_id),
            SK: RUN_SK,
            TENANT_PK: tenant_pk(run.tenant),
            CREATED: created_key(run.created_at, run.run_id),
            LEASE_FENCE: 0,
            TTL_ATTRIBUTE: expires_at,
        }
        for name, value in run.model_dump(mode="json").items():
            if value is None:
                continue
            item[name] = self._encode_field(name, value) if name in RUN_FIELD_SHARES else value
        new = "attribute_not_exists(#pk)"
        names = {"#pk": PK}
        try:
            self.table.transact_put(
                [
                    Put(item, condition=new, names=names),
                    Put(self._record_item(run.run_id, first, expires_at), new, names),
                ]
            )
        except ConditionFailedError as exc:
            raise RunExistsError(f"run {run.run_id} already exists") from exc

    def _get_run(self, run_id: str) -> Run:
        item = self.table.get(_run_key(run_id))
        if item is None:
            raise RunNotFoundError(f"run {run_id} not found")
        return self._run_from_item(item)

    def _cancel_requested(self, run_id: str) -> bool:
        item = self.table.get(_run_key(run_id), consistent=False)
        if item is None:
            raise RunNotFoundError(f"run {run_id} not found")
        return bool(item.get("cancel_requested"))

    def _append(self, run_id: str, record: JournalRecord) -> None:
        try:
            self.table.put(
                self._record_item(run_id, record, self._expires_at()),
                condition="attribute_not_exists(#pk)",
                names={"#pk": PK},
            )
        except ConditionFailedError as exc:
            raise JournalConflictError(
                f"run {run_id}: seq {record.seq} is already journaled",
                details={"seq": record.seq},
            ) from exc

    def _records(self, run_id: str, after_seq: int) -> list[JournalRecord]:
        items = self.table.query(
            PK,
            run_pk(run_id),
            sort_name=SK,
            between=(record_sk(after_seq + 1), RECORD_SK_MAX),
        )
        if not items:
            self._require_run(run_id)
        return [self._record_from_item(i) for i in items]

    def _events(self, run_id: str, after: int, limit: int) -> list[Event]:
        pk = run_pk(run_id)
        # The record holding event after+1 is the last one whose seq is <= after+1 (only its
        # keys travel back). A poll that is up to date then reads nothing more.
        holder = self.table.query(
            PK,
            pk,
            sort_name=SK,
            between=(RECORD_SK_MIN, record_sk(after + 1)),
            forward=False,
            max_items=1,
            attributes=(SK, SEQ, NEXT_SEQ),
        )
        if not holder:
            start = RECORD_SK_MIN
        elif int(holder[0].get(NEXT_SEQ, after + 2)) > after + 1:
            start = holder[0][SK]  # it still holds events past the cursor
        else:
            start = record_sk(int(holder[0][SEQ]) + 1)
        out: list[Event] = []
        start_key: Item | None = None
        first_page = True
        while len(out) < limit:
            items, start_key = self.table.query_page(
                PK,
                pk,
                sort_name=SK,
                between=(start, RECORD_SK_MAX),
                limit=min(limit, 100),
                start_key=start_key,
            )
            if first_page and not items and not holder:
                self._require_run(run_id)
            first_page = False
            records = [self._record_from_item(i) for i in items]
            out.extend(events_after(records, after, limit - len(out)))
            if start_key is None:
                break
        return out

    def _update_run(
        self,
        run_id: str,
        patch: RunPatch,
        lease: Lease | None,
        expected_status: RunStatus | None,
    ) -> Run:
        expr = _Expression()
        self._apply_patch(expr, patch)
        expr.set(TTL_ATTRIBUTE, self._expires_at())
        conditions = [f"attribute_exists({expr.name(PK)})"]
        if lease is not None:
            conditions.append(_lease_condition(expr, lease))
        if expected_status is not None:
            conditions.append(f"{expr.name('status')} = {expr.value(expected_status.value)}")
        try:
            item = self.table.update(
                _run_key(run_id),
                update=expr.update_expression(),
                condition=" AND ".join(conditions),
                names=expr.names,
                values=expr.values,
                return_failed_item=True,
            )
        except ConditionFailedError as exc:
            old = self._failed_item(run_id, exc)
            if lease is not None:
                _check_lease(run_id, old, lease)
            if expected_status is not None and old.get("status") != expected_status.value:
                status = old.get("status")
                raise RunStateConflictError(
                    f"run {run_id} is {status}, not {expected_status.value}",
                    details={"status": status},
                ) from exc
            raise JournalError(f"run {run_id}: conditional update failed, retry") from exc
        return self._run_from_item(item)

    def _acquire_lease(
        self, run_id: str, owner: str, ttl_s: float, patch: RunPatch | None
    ) -> Lease:
        now = self._now_ms()
        expires_at_ms = now + int(ttl_s * 1000)
        expr = _Expression()
        if patch is not None:
            self._apply_patch(expr, patch)
        expr.set(LEASE_OWNER, owner)
        expr.set(LEASE_EXPIRES_MS, expires_at_ms)
        fence = expr.name(LEASE_FENCE)
        expr.sets.append(f"{fence} = if_not_exists({fence}, {expr.value(0)}) + {expr.value(1)}")
        expr.set(TTL_ATTRIBUTE, self._expires_at())
        owner_name, owner_value = expr.name(LEASE_OWNER), expr.value(owner)
        condition = (
            f"attribute_exists({expr.name(PK)}) AND (attribute_not_exists({owner_name})"
            f" OR {owner_name} = {owner_value}"
            f" OR {expr.name(LEASE_EXPIRES_MS)} <= {expr.value(now)})"
        )
        try:
            item = self.table.update(
                _run_key(run_id),
                update=expr.update_expression(),
                condition=condition,
                names=expr.names,
                values=expr.values,
                return_values="UPDATED_NEW",
                return_failed_item=True,
            )
        except ConditionFailedError as exc:
            old = self._failed_item(run_id, exc)
            raise LeaseHeldError(
                f"run {run_id} is leased by another worker",
                details={"expires_at_ms": old.get(LEASE_EXPIRES_MS)},
            ) from exc
        return Lease(
            run_id=run_id, owner=owner, fence=int(item[LEASE_FENCE]), expires_at_ms=expires_at_ms
        )

    def _renew_lease(self, lease: Lease, ttl_s: float) -> tuple[Lease, Run]:
        expires_at_ms = self._now_ms() + int(ttl_s * 1000)
        expr = _Expression()
        expr.set(LEASE_EXPIRES_MS, expires_at_ms)
        expr.set(TTL_ATTRIBUTE, self._expires_at())
        item = self._leased_update(lease, expr)
        return lease.model_copy(update={"expires_at_ms": expires_at_ms}), self._run_from_item(item)

    def _release_lease(self, lease: Lease, patch: RunPatch | None) -> Run:
        expr = _Expression()
        if patch is not None:
            self._apply_patch(expr, patch)
        expr.remove(LEASE_OWNER)
        expr.remove(LEASE_EXPIRES_MS)
        expr.set(TTL_ATTRIBUTE, self._expires_at())
        return self._run_from_item(self._leased_update(lease, expr))

    def _leased_update(self, lease: Lease, expr: _Expression) -> Item:
        condition = f"attribute_exists({expr.name(PK)}) AND {_lease_condition(expr, lease)}"
        try:
            return self.table.update(
                _run_key(lease.run_id),
                update=expr.update_expression(),
                condition=condition,
                names=expr.names,
                values=expr.values,
                return_failed_item=True,
            )
        except ConditionFailedError as exc:
            _check_lease(lease.run_id, self._failed_item(lease.run_id, exc), lease)
            raise JournalError(f"run {lease.run_id}: conditional update failed, retry") from exc

    def _list_runs(
        self, tenant: str, wanted: Mapping[str, str], limit: int, after: str | None
    ) -> RunPage:
        partition = tenant_pk(tenant)
        start_key: Item | None = None
        if after is not None:
            # The index position of the previous page's last run: the index keys and the
            # table keys of its run item.
            run_id = after.partition("#")[2]
            start_key = {PK: run_pk(run_id), SK: RUN_SK, TENANT_PK: partition, CREATED: after}
        page_items = limit + 1 if not wanted else max(limit + 1, self.list_page_items)
        found: list[Item] = []  # up to limit + 1 matches: the extra one says "there is more"
        while len(found) <= limit:
            items, start_key = self.table.query_page(
                TENANT_PK,
                partition,
                index=BY_TENANT,
                forward=False,
                limit=page_items,
                start_key=start_key,
            )
            for item in items:
                if all(item.get(name) == value for name, value in wanted.items()):
                    found.append(item)
                    if len(found) > limit:
                        break
            if start_key is None:
                break
        page = found[:limit]
        next_cursor = None
        if len(found) > limit:
            time_part, _, run_id = str(page[-1][CREATED]).partition("#")
            next_cursor = encode_cursor((time_part, run_id))
        return RunPage(
            runs=[
                RunSummary.model_validate({n: i[n] for n in BY_TENANT_PROJECTION if n in i})
                for i in page
            ],
            next_cursor=next_cursor,
        )

    # ---- helpers ---------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _expires_at(self) -> int:
        return int(self._clock()) + self.retention_days * DAY_S

    def _require_run(self, run_id: str) -> None:
        if self.table.get(_run_key(run_id)) is None:
            raise RunNotFoundError(f"run {run_id} not found")

    def _failed_item(self, run_id: str, exc: ConditionFailedError) -> Item:
        """The run item that made a condition fail; ``RunNotFoundError`` if there is none."""
        old = exc.item if exc.item is not None else self.table.get(_run_key(run_id))
        if old is None:
            raise RunNotFoundError(f"run {run_id} not found") from exc
        return old

    def _apply_patch(self, expr: _Expression, patch: RunPatch) -> None:
        for name, value in patch.changes().items():
            if value is None:
                if name not in _NULLABLE:
                    raise ValueError(f"run field {name!r} cannot be cleared")
                expr.remove(name)
            elif name in RUN_FIELD_SHARES:
                expr.set(name, self._encode_field(name, value))
            else:
                expr.set(name, value)

    def _record_item(self, run_id: str, record: JournalRecord, expires_at: int) -> Item:
        body = record.to_json().encode("utf-8")
        return {
            PK: run_pk(run_id),
            SK: record_sk(record.seq),
            SEQ: record.seq,
            NEXT_SEQ: record.next_seq,
            "kind": record.kind.value,
            BODY: self._encode(body, self.overflow_threshold_bytes),
            TTL_ATTRIBUTE: expires_at,
        }

    def _record_from_item(self, item: Item) -> JournalRecord:
        return JournalRecord.model_validate_json(self._decode(item[BODY]))

    def _run_from_item(self, item: Item) -> Run:
        data: dict[str, Any] = {}
        for name in Run.model_fields:
            if name not in item:
                continue
            value = item[name]
            data[name] = json.loads(self._decode(value)) if name in RUN_FIELD_SHARES else value
        return Run.model_validate(data)

    def _encode_field(self, name: str, value: Any) -> dict[str, Any]:
        raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self._encode(raw, int(self.overflow_threshold_bytes * RUN_FIELD_SHARES[name]))

    def _encode(self, raw: bytes, inline_limit: int) -> dict[str, Any]:
        packed = zlib.compress(raw, 6) if len(raw) > 64 else raw
        enc, body = ("zlib", packed) if len(packed) < len(raw) else ("raw", raw)
        if len(body) <= inline_limit:
            return {"enc": enc, "data": body}
        key = self.blobs.put(body)
        self._cache.put(key, body)
        return {"enc": enc, "blob": key, "size": len(body)}

    def _decode(self, payload: Mapping[str, Any]) -> bytes:
        if "data" in payload:
            body = bytes(payload["data"])
        else:
            key = str(payload["blob"])
            cached = self._cache.get(key)
            if cached is None:
                cached = self.blobs.get(key)
                self._cache.put(key, cached)
            body = cached
        enc = payload.get("enc", "raw")
        if enc == "zlib":
            return zlib.decompress(body)
        if enc == "raw":
            return body
        raise JournalError(f"unknown payload encoding {enc!r}")


def _created_from_cursor(cursor: str) -> str:
    """The index sort key a ``list_runs`` cursor points at; ``ValidationFailedError`` if the
    cursor is not one this backend made."""
    time_part, run_id = decode_cursor(cursor)
    created = f"{time_part}#{run_id}"
    if (
        not _CREATED_TIME.fullmatch(time_part)
        or not run_id
        or len(created.encode("utf-8")) > _SORT_KEY_MAX_BYTES
    ):
        raise ValidationFailedError("malformed cursor", details={"cursor": cursor})
    return created


def _run_key(run_id: str) -> dict[str, str]:
    return {PK: run_pk(run_id), SK: RUN_SK}


def _lease_condition(expr: _Expression, lease: Lease) -> str:
    return (
        f"{expr.name(LEASE_OWNER)} = {expr.value(lease.owner)}"
        f" AND {expr.name(LEASE_FENCE)} = {expr.value(lease.fence)}"
    )


def _check_lease(run_id: str, old: Item, lease: Lease) -> None:
    if old.get(LEASE_OWNER) != lease.owner or old.get(LEASE_FENCE) != lease.fence:
        raise LeaseLostError(
            f"run {run_id}: lease of {lease.owner} (fence {lease.fence}) is no longer current"
        )


class _Expression:
    """Builds an UpdateExpression with placeholder names and values (many run attributes,
    like ``status``, ``input`` and ``output``, are DynamoDB reserved words)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self.sets: list[str] = []
        self.removes: list[str] = []
        self._placeholders: dict[str, str] = {}

    def name(self, attribute: str) -> str:
        placeholder = self._placeholders.get(attribute)
        if placeholder is None:
            placeholder = f"#n{len(self._placeholders)}"
            self._placeholders[attribute] = placeholder
            self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = value
        return placeholder

    def set(self, attribute: str, value: Any) -> None:
        self.sets.append(f"{self.name(attribute)} = {self.value(value)}")

    def remove(self, attribute: str) -> None:
        self.removes.append(self.name(attribute))

    def update_expression(self) -> str:
        parts = []
        if self.sets:
            parts.append("SET " + ", ".join(self.sets))
        if self.removes:
            parts.append("REMOVE " + ", ".join(self.removes))
        return " ".join(parts)


class _BlobCache:
    """A small LRU of blob bytes by content key. Blobs are immutable (the key is their hash),
    so a cached blob can never be stale; this spares repeated S3 reads of a big run input
    when the run item is read at every step boundary and heartbeat."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._entries.get(key)
            if data is not None:
                self._entries.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return
            self._entries[key] = data
            self._bytes += len(data)
            while self._bytes > self._max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted)


__all__ = ["RUN_FIELD_SHARES", "BlockingCalls", "DynamoJournal"]
