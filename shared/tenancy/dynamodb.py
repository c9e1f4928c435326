"""The DynamoDB control store: API keys, idempotency records and threads.

The items live in the journal's single table (layout in ``shared.dal.schema``), one item per
partition, with datetimes as ISO strings:

- ``APIKEY#{key_id}`` / ``KEY``: ``put_key`` is one PutItem conditional on the key_id being
  new; ``revoke_key`` one UpdateItem that keeps the first revocation time
  (``if_not_exists``), conditional on the key existing.
- ``IDEM#{tenant}#{sha256(key)}`` / ``IDEM``: ``claim_idempotency`` is one PutItem conditional
  on no live record; a failed condition returns the stored record with the error (no second
  read). A record lives 24 hours (``expires_at``); one past that which TTL has not deleted yet
  counts as gone and is replaced.
- ``THREAD#{tenant}#{thread_id}`` / ``THREAD``: ``runs`` (run ids in submission order) and
  ``finished`` (how many of them have finished; ``runs[finished]`` is the active run).
  ``add_thread_run`` is one UpdateItem (``list_append``, creating the thread), with
  ``only_if_idle`` conditional on ``finished = size(runs)``: DynamoDB applies it atomically,
  so of concurrent adds to an idle thread exactly one wins. ``finish_thread_run`` reads the
  thread, then advances ``finished`` by one UpdateItem conditional on ``finished`` not having
  moved meanwhile; a lost race reads again (and then, usually, finds nothing left to do).
  Every thread write moves its ``expires_at`` to ``retention_days`` after the write, like
  the runs it lists.

API keys have no TTL: they live until deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter

from shared.config import Settings
from shared.dal.dynamodb import ConditionFailedError, RunTable
from shared.dal.schema import (
    API_KEY_SK,
    IDEMPOTENCY_SK,
    PK,
    SK,
    THREAD_SK,
    TTL_ATTRIBUTE,
    api_key_pk,
    idempotency_pk,
    thread_pk,
)
from shared.errors import ConflictError, NotFoundError
from shared.journal.dynamodb import DAY_S, BlockingCalls
from shared.tenancy.base import ApiKeyRecord, IdempotencyRecord, ThreadRecord

M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_TTL_S = DAY_S
DEFAULT_MAX_WORKERS = 8

_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)

_ADD_RUN = (
    "SET #runs = list_append(if_not_exists(#runs, :none), :run),"
    " #finished = if_not_exists(#finished, :zero),"
    " #created_at = if_not_exists(#created_at, :at),"
    " #updated_at = :at, #tenant = :tenant, #thread_id = :thread_id, #expires = :expires"
)
_ADD_RUN_NAMES = {
    "#runs": "runs",
    "#finished": "finished",
    "#created_at": "created_at",
    "#updated_at": "updated_at",
    "#tenant": "tenant",
    "#thread_id": "thread_id",
    "#expires": TTL_ATTRIBUTE,
}
_IDLE = "attribute_not_exists(#pk) OR #finished = size(#runs)"
# An idempotent retry re-adding its own run must not append it twice (or be refused).
_NEW_RUN = "NOT contains(#runs, :run_id)"


class DynamoControlStore:
    """``ControlStore`` on the Switchyard table (``RunTable``)."""

    def __init__(
        self,
        table: RunTable,
        *,
        retention_days: int = 30,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
    ) -> None:
        self.table = table
        self.retention_days = retention_days
        self._io = BlockingCalls(executor, max_workers=max_workers, thread_name_prefix="control")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> DynamoControlStore:
        """The store on the deployment's table, with a default boto3 client whose connection
        pool matches the thread pool."""
        table = RunTable(
            settings.table_name, region=settings.region, max_pool_connections=max_workers
        )
        return cls(table, retention_days=settings.retention_days, max_workers=max_workers)

    def close(self) -> None:
        """Stop the thread pool (if this store created it)."""
        self._io.close()

    # ---- API keys --------------------------------------------------------------------------

    async def put_key(self, record: ApiKeyRecord) -> None:
        await self._io(self._put_key, record)

    async def get_key(self, key_id: str) -> ApiKeyRecord | None:
        item = await self._io(self.table.get, _api_key(key_id))
        return _model(ApiKeyRecord, item) if item is not None else None

    async def revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord:
        return await self._io(self._revoke_key, key_id, at)

    # ---- idempotency -----------------------------------------------------------------------

    async def claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        return await self._io(self._claim_idempotency, record)

    # ---- threads ---------------------------------------------------------------------------

    async def get_thread(self, tenant: str, thread_id: str) -> ThreadRecord | None:
        item = await self._io(self.table.get, _thread(tenant, thread_id))
        return _model(ThreadRecord, item) if item is not None else None

    async def add_thread_run(
        self, tenant: str, thread_id: str, run_id: str, *, only_if_idle: bool, at: datetime
    ) -> ThreadRecord:
        return await self._io(self._add_thread_run, tenant, thread_id, run_id, only_if_idle, at)

    async def finish_thread_run(
        self, tenant: str, thread_id: str, run_id: str, at: datetime
    ) -> ThreadRecord:
        return await self._io(self._finish_thread_run, tenant, thread_id, run_id, at)

    # ---- blocking implementations (run in the executor) -------------------------------------

    def _put_key(self, record: ApiKeyRecord) -> None:
        item = {**_api_key(record.key_id), **_fields(record)}
        try:
            self.table.put(item, condition="attribute_not_exists(#pk)", names={"#pk": PK})
        except ConditionFailedError as exc:
            raise ConflictError(f"key {record.key_id} exists") from exc

    def _revoke_key(self, key_id: str, at: datetime) -> ApiKeyRecord:
        try:
            item = self.table.update(
                _api_key(key_id),
                update="SET #revoked = if_not_exists(#revoked, :at)",
                condition="attribute_exists(#pk)",
                names={"#revoked": "revoked_at", "#pk": PK},
                values={":at": _iso(at)},
            )
        except ConditionFailedError as exc:
            raise NotFoundError(f"no key {key_id}") from exc
        return _model(ApiKeyRecord, item)

    def _claim_idempotency(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        key = _idempotency(record.tenant, record.key)
        now = int(record.created_at.timestamp())
        item = {**key, **_fields(record), TTL_ATTRIBUTE: now + IDEMPOTENCY_TTL_S}
        while True:
            try:
                self.table.put(
                    item,
                    condition="attribute_not_exists(#pk) OR #expires <= :now",
                    names={"#pk": PK, "#expires": TTL_ATTRIBUTE},
                    values={":now": now},
                    return_failed_item=True,
                )
                return None
            except ConditionFailedError as exc:
                existing = exc.item if exc.item is not None else self.table.get(key)
                if existing is not None:
                    return _model(IdempotencyRecord, existing)
            # Deleted (by TTL) between the failed put and the read: claim it again.

    def _add_thread_run(
        self, tenant: str, thread_id: str, run_id: str, only_if_idle: bool, at: datetime
    ) -> ThreadRecord:
        key = _thread(tenant, thread_id)
        names = dict(_ADD_RUN_NAMES)
        if only_if_idle:
            names["#pk"] = PK
        values = {
            ":none": [],
            ":run": [run_id],
            ":zero": 0,
            ":at": _iso(at),
            ":tenant": tenant,
            ":thread_id": thread_id,
            ":expires": self._expires_at(at),
            ":run_id": run_id,
        }
        condition = f"({_NEW_RUN}) AND ({_IDLE})" if only_if_idle else _NEW_RUN
        while True:
            try:
                item = self.table.update(
                    key,
                    update=_ADD_RUN,
                    condition=condition,
                    names=names,
                    values=values,
                    return_failed_item=True,
                )
                return _model(ThreadRecord, item)
            except ConditionFailedError as exc:
                old = exc.item if exc.item is not None else self.table.get(key)
                busy = _model(ThreadRecord, old) if old is not None else None
                if busy is not None and run_id in busy.runs:
                    return busy
                if busy is not None and busy.busy:
                    raise ConflictError(
                        f"thread {thread_id} has a run in progress",
                        details={"active_run_id": busy.active},
                    ) from exc
            # The thread went idle between the failed write and the read: try again.

    def _finish_thread_run(
        self, tenant: str, thread_id: str, run_id: str, at: datetime
    ) -> ThreadRecord:
        key = _thread(tenant, thread_id)
        while True:
            item = self.table.get(key)
            if item is None:
                raise NotFoundError(f"no thread {thread_id}")
            thread = _model(ThreadRecord, item)
            if thread.active != run_id:
                return thread  # already finished (or not its turn): nothing to do
            try:
                updated = self.table.update(
                    key,
                    update="SET #finished = :next, #updated_at = :at, #expires = :expires",
                    condition="#finished = :current",
                    names={
                        "#finished": "finished",
                        "#updated_at": "updated_at",
                        "#expires": TTL_ATTRIBUTE,
                    },
                    values={
                        ":next": thread.finished + 1,
                        ":current": thread.finished,
                        ":at": _iso(at),
                        ":expires": self._expires_at(at),
                    },
                )
                return _model(ThreadRecord, updated)
            except ConditionFailedError:
                continue  # another writer advanced the thread meanwhile: look again

    # ---- helpers ---------------------------------------------------------------------------

    def _expires_at(self, at: datetime) -> int:
        return int(at.timestamp()) + self.retention_days * DAY_S


def _api_key(key_id: str) -> dict[str, str]:
    return {PK: api_key_pk(key_id), SK: API_KEY_SK}


def _idempotency(tenant: str, key: str) -> dict[str, str]:
    return {PK: idempotency_pk(tenant, key), SK: IDEMPOTENCY_SK}


def _thread(tenant: str, thread_id: str) -> dict[str, str]:
    return {PK: thread_pk(tenant, thread_id), SK: THREAD_SK}


def _iso(at: datetime) -> str:
    """A datetime as the models serialize it."""
    return str(_DATETIME.dump_python(at, mode="json"))


def _fields(record: BaseModel) -> dict[str, Any]:
    return {k: v for k, v in record.model_dump(mode="json").items() if v is not None}


def _model(cls: type[M], item: Mapping[str, Any]) -> M:
    return cls.model_validate({name: item[name] for name in cls.model_fields if name in item})


__all__ = ["IDEMPOTENCY_TTL_S", "DynamoControlStore"]
