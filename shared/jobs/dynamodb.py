"""The DynamoDB job store: job items and stage attempts in the journal's single table.

Layout (``shared.dal.schema``), one partition per job, none of it carrying the ``by_tenant``
index keys (so no job item ever appears in the tenant's run list):

- ``JOB#{job_id}`` / ``JOB``: the job item;
- ``JOB#{job_id}`` / ``ATTEMPT#{stage}#{attempt_id}``: one item per stage attempt.

Datetimes are ISO strings; the free-form values (a job's ``input`` and ``output``, an
attempt's ``output``, ``data`` and ``decision``) are JSON strings, because they can be any
JSON and DynamoDB's number type would not give back a float as it was written. A JSON value
above ``MAX_JSON_BYTES`` is refused with ``JobStoreError`` (Step Functions caps its payloads
at 256 KB, so a stage never hands over one that big), and so is an item that would exceed
DynamoDB's 400 KB (an attempt whose ``data`` and ``output`` are both near that cap): checked
before a put, reported by DynamoDB for an update.

Writes and their cost:

- ``create_job`` / ``put_attempt``: one PutItem conditional on the key being new.
- ``finish_job``: one UpdateItem conditional on the job not being finished; a failed
  condition returns the job as it stood (``ReturnValuesOnConditionCheckFailure=ALL_OLD``),
  or nothing when there is no such job.
- ``update_attempt``: one UpdateItem of the patch's non-None fields, conditional on the
  attempt existing (and on ``expected_status``); a failed condition tells a missing attempt
  (no item returned) from one in another status (the item as it stood), without a read.

Reads: ``get_job`` / ``get_attempt`` one GetItem; ``attempts`` one Query of the job's
partition for the sort keys that begin with ``ATTEMPT#`` (every page), as the range
``ATTEMPT#`` .. ``ATTEMPT$``, sorted by start time, then attempt id.

Every write sets ``expires_at`` (TTL, epoch seconds) to now + ``retention_days``, like the
runs. Storage failures are ``JobStoreError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from pydantic import BaseModel, TypeAdapter

from shared.config import Settings
from shared.dal.dynamodb import ConditionFailedError, Item, RunTable, item_size
from shared.dal.schema import ATTEMPT_PREFIX, JOB_SK, PK, SK, TTL_ATTRIBUTE, attempt_sk, job_pk
from shared.errors import (
    JobExistsError,
    JobNotFoundError,
    JobStateConflictError,
    JobStoreError,
    JournalError,
)
from shared.jobs.memory import attempt_order
from shared.journal.dynamodb import DAY_S, BlockingCalls
from shared.models.job import AttemptPatch, AttemptStatus, Job, JobError, JobStatus, StageAttempt

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

DEFAULT_MAX_WORKERS = 8
# The largest JSON value an item keeps (bytes, UTF-8). Step Functions' payload limit is 256 KB.
MAX_JSON_BYTES = 300_000
# DynamoDB's item limit (400 KB, 409,600 bytes), with room to spare.
MAX_ITEM_BYTES = 400_000

# Free-form fields stored as JSON strings.
JOB_JSON_FIELDS = ("input", "output")
ATTEMPT_JSON_FIELDS = ("output", "data", "decision")

_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_NOT_FINISHED = "#status IN (:running, :awaiting)"
# Every sort key that begins with ``ATTEMPT#`` (and no other: ``ATTEMPT$`` is never a key),
# as the inclusive range ``RunTable.query`` takes.
_ATTEMPT_KEYS = (ATTEMPT_PREFIX, ATTEMPT_PREFIX[:-1] + chr(ord(ATTEMPT_PREFIX[-1]) + 1))


class DynamoJobStore:
    """``JobStore`` on the Switchyard table (``RunTable``)."""

    def __init__(
        self,
        table: RunTable,
        *,
        executor: Executor | None = None,
        max_workers: int = DEFAULT_MAX_WORKERS,
        retention_days: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table = table
        self.retention_days = retention_days
        self._clock = clock
        self._io = BlockingCalls(executor, max_workers=max_workers, thread_name_prefix="jobs")

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_workers: int = DEFAULT_MAX_WORKERS
    ) -> DynamoJobStore:
        """The store on the deployment's table, with a default boto3 client whose connection
        pool matches the thread pool."""
        table = RunTable(
            settings.table_name, region=settings.region, max_pool_connections=max_workers
        )
        return cls(table, retention_days=settings.retention_days, max_workers=max_workers)

    def close(self) -> None:
        """Stop the thread pool (if this store created it)."""
        self._io.close()

    # ---- the JobStore protocol ---------------------------------------------------------------

    async def create_job(self, job: Job) -> None:
        await self._call(self._create_job, job)

    async def get_job(self, job_id: str) -> Job:
        item = await self._call(self.table.get, _job_key(job_id))
        if item is None:
            raise JobNotFoundError(f"job {job_id} not found")
        return _job(item)

    async def finish_job(
        self,
        job_id: str,
        *,
        status: JobStatus,
        output: Any = None,
        error: JobError | None = None,
        at: datetime,
    ) -> Job:
        if not status.is_terminal:
            raise JobStoreError(
                f"a job can only finish as succeeded, failed or cancelled, not {status}"
            )
        return await self._call(self._finish_job, job_id, status, output, error, at)

    async def put_attempt(self, attempt: StageAttempt) -> bool:
        return await self._call(self._put_attempt, attempt)

    async def get_attempt(self, job_id: str, stage: str, attempt_id: str) -> StageAttempt | None:
        item = await self._call(self.table.get, _attempt_key(job_id, stage, attempt_id))
        return _attempt(item) if item is not None else None

    async def update_attempt(
        self,
        job_id: str,
        stage: str,
        attempt_id: str,
        patch: AttemptPatch,
        *,
        expected_status: AttemptStatus | None = None,
    ) -> StageAttempt:
        return await self._call(
            self._update_attempt, job_id, stage, attempt_id, patch, expected_status
        )

    async def attempts(self, job_id: str) -> list[StageAttempt]:
        items = await self._call(self._query_attempts, job_id)
        return sorted((_attempt(item) for item in items), key=attempt_order)

    # ---- blocking implementations (run in the executor) --------------------------------------

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await self._io(fn, *args, **kwargs)
        except JobStoreError:
            raise
        except JournalError as exc:  # RunTable's errors, as the job store's
            if _too_big(exc):
                raise JobStoreError(
                    "the item would exceed DynamoDB's 400 KB limit (its JSON values together"
                    " are too big)",
                    details=exc.details,
                ) from exc
            raise JobStoreError(f"job store: {exc.message}", details=exc.details) from exc

    def _create_job(self, job: Job) -> None:
        item = {
            **_job_key(job.job_id),
            **_fields(job, JOB_JSON_FIELDS),
            TTL_ATTRIBUTE: self._expires_at(),
        }
        _check_size(item, f"job {job.job_id}")
        try:
            self.table.put(item, condition="attribute_not_exists(#pk)", names={"#pk": PK})
        except ConditionFailedError as exc:
            raise JobExistsError(f"job {job.job_id} already exists") from exc

    def _finish_job(
        self,
        job_id: str,
        status: JobStatus,
        output: Any,
        error: JobError | None,
        at: datetime,
    ) -> Job:
        sets: dict[str, Any] = {
            "status": status.value,
            "updated_at": _iso(at),
            "finished_at": _iso(at),
        }
        if output is not None:
            sets["output"] = _encode(_jsonable(output, "the job's output"), "the job's output")
        if error is not None:
            sets["error"] = error.model_dump(mode="json", exclude_none=True)
        update, names, values = _set_expression(sets, self._expires_at())
        values[":running"] = JobStatus.RUNNING.value
        values[":awaiting"] = JobStatus.AWAITING_APPROVAL.value
        key = _job_key(job_id)
        try:
            item = self.table.update(
                key,
                update=update,
                condition=_NOT_FINISHED,
                names=names,
                values=values,
                return_failed_item=True,
            )
        except ConditionFailedError as exc:
            # The failed condition returns the item as it stood: none means there is none.
            if exc.item is None:
                raise JobNotFoundError(f"job {job_id} not found") from exc
            return _job(exc.item)  # finished already: its first end stands
        return _job(item)

    def _put_attempt(self, attempt: StageAttempt) -> bool:
        item = {
            **_attempt_key(attempt.job_id, attempt.stage, attempt.attempt_id),
            **_fields(attempt, ATTEMPT_JSON_FIELDS),
            TTL_ATTRIBUTE: self._expires_at(),
        }
        _check_size(item, f"attempt {attempt.attempt_id} of {attempt.stage}")
        try:
            self.table.put(item, condition="attribute_not_exists(#pk)", names={"#pk": PK})
        except ConditionFailedError:
            return False
        return True

    def _update_attempt(
        self,
        job_id: str,
        stage: str,
        attempt_id: str,
        patch: AttemptPatch,
        expected_status: AttemptStatus | None,
    ) -> StageAttempt:
        sets = _fields(patch, ATTEMPT_JSON_FIELDS)
        update, names, values = _set_expression(sets, self._expires_at())
        names["#pk"] = PK
        condition = "attribute_exists(#pk)"
        if expected_status is not None:
            names["#status"] = "status"  # the same placeholder as the patch's own status
            values[":expected"] = expected_status.value
            condition += " AND #status = :expected"
        key = _attempt_key(job_id, stage, attempt_id)
        try:
            item = self.table.update(
                key,
                update=update,
                condition=condition,
                names=names,
                values=values,
                return_failed_item=True,
            )
        except ConditionFailedError as exc:
            if exc.item is None:  # no item as it stood: there is none
                raise JobNotFoundError(
                    f"job {job_id} has no attempt {attempt_id} of {stage}"
                ) from exc
            current = str(exc.item.get("status", ""))
            raise JobStateConflictError(
                f"attempt {attempt_id} of {stage} is {current},"
                f" not {expected_status.value if expected_status else '?'}",
                details={"status": current},
            ) from exc
        return _attempt(item)

    def _query_attempts(self, job_id: str) -> list[Item]:
        return self.table.query(PK, job_pk(job_id), sort_name=SK, between=_ATTEMPT_KEYS)

    # ---- helpers -----------------------------------------------------------------------------

    def _expires_at(self) -> int:
        return int(self._clock()) + self.retention_days * DAY_S


def _job_key(job_id: str) -> dict[str, str]:
    return {PK: job_pk(job_id), SK: JOB_SK}


def _attempt_key(job_id: str, stage: str, attempt_id: str) -> dict[str, str]:
    return {PK: job_pk(job_id), SK: attempt_sk(stage, attempt_id)}


def _iso(at: datetime) -> str:
    """A datetime as the models serialize it."""
    return str(_ANY.dump_python(at, mode="json"))


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as the models serialize it (datetimes as ISO strings, tuples as lists...)."""
    try:
        return _ANY.dump_python(value, mode="json")
    except ValueError as exc:
        raise JobStoreError(f"cannot store {what}: {exc}") from exc


def _encode(value: Any, what: str) -> str:
    """A JSON-ready value as its JSON string, refused when too big for an item."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))  # a lone surrogate fails here: DynamoDB refuses it
    except (TypeError, ValueError) as exc:
        raise JobStoreError(f"{what} cannot be stored as JSON: {exc}") from exc
    if size > MAX_JSON_BYTES:
        raise JobStoreError(
            f"{what} is {size} bytes of JSON; the job store keeps at most {MAX_JSON_BYTES}"
            " (Step Functions payloads stop at 256 KB)",
            details={"size": size, "limit": MAX_JSON_BYTES},
        )
    return text


def _check_size(item: Mapping[str, Any], what: str) -> None:
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise JobStoreError(
            f"{what} is {size} bytes, over DynamoDB's 400 KB item limit (its JSON values"
            " together are too big)",
            details={"size": size, "limit": MAX_ITEM_BYTES},
        )


def _too_big(exc: JournalError) -> bool:
    """DynamoDB refused a write for the item's size."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return details.get("aws_code") == "ValidationException" and "size" in exc.message.lower()


def _fields(model: BaseModel, json_fields: tuple[str, ...]) -> dict[str, Any]:
    """The model's non-None fields as item attributes (the free-form ones JSON-encoded)."""
    out: dict[str, Any] = {}
    name = type(model).__name__
    try:
        dumped = model.model_dump(mode="json")
    except ValueError as exc:  # pydantic's serialization error (a value JSON cannot hold)
        raise JobStoreError(f"cannot store the {name}: {exc}") from exc
    for key, value in dumped.items():
        if value is None:
            continue
        out[key] = _encode(value, f"the {name}'s {key}") if key in json_fields else value
    return out


def _set_expression(
    sets: Mapping[str, Any], expires_at: int
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``SET`` of every attribute in ``sets`` and the TTL."""
    names: dict[str, str] = {"#ttl": TTL_ATTRIBUTE}
    values: dict[str, Any] = {":ttl": expires_at}
    parts = ["#ttl = :ttl"]
    for attribute, value in sets.items():  # model field names: safe in a placeholder
        names[f"#{attribute}"] = attribute
        values[f":{attribute}"] = value
        parts.append(f"#{attribute} = :{attribute}")
    return "SET " + ", ".join(parts), names, values


def _decoded(cls: type[M], item: Mapping[str, Any], json_fields: tuple[str, ...]) -> M:
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        if name not in item:
            continue
        values[name] = json.loads(item[name]) if name in json_fields else item[name]
    return cls.model_validate(values)


def _job(item: Mapping[str, Any]) -> Job:
    return _decoded(Job, item, JOB_JSON_FIELDS)


def _attempt(item: Mapping[str, Any]) -> StageAttempt:
    return _decoded(StageAttempt, item, ATTEMPT_JSON_FIELDS)


__all__ = ["MAX_JSON_BYTES", "DynamoJobStore"]
