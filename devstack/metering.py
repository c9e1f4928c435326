"""What the local stack's AWS calls add up to: the server-side request meter.

Every AWS call of the local stack, from whichever process makes it (the API function's
containers, the workers, the pipeline function, the pollers, Step Functions' own task
states), reaches the one moto server. ``devstack.motoserver.MeteringLayer`` hands each
request and its answer to a ``ServerMeter``, which keeps, per service and operation:

- requests, request and response body bytes, client (4xx) and server (5xx) errors. A 5xx is
  moto failing (AWS would not bill it; the SDK retries it and the retry is counted): it is
  counted as an error and nothing else;
- DynamoDB: the request units AWS would bill. Writes from the item images before and after
  the write, read from moto's table in this process: ``ceil(max(before, after) / 1 KB)``
  write units per item (twice that in a transaction), a failed conditional write the units
  of the item as it stood (at least one), plus the writes each global secondary index gets
  when the write changes an entry (a changed index key is a delete and a put). Reads from
  the items answered: ``ceil(size / 4 KB)`` read units (at least one; half when eventually
  consistent; a Query's items summed before rounding; transactions twice). A Query with a
  filter or a projection is counted on what it answered (AWS counts what it read): the
  stack's queries use neither on the table's items;
- SQS: billed requests (each 64 KB of a request's or an answer's payload is one request),
  messages, and empty receives (an idle poller's long poll: a fixed cost per poller, not a
  per-run one);
- S3: object bytes put and got.

Besides requests: Lambda invocations per function with their duration (counted where every
invocation passes, ``LocalFunctions``: the gateway's, the pollers', the scheduler's and Step
Functions' alike); Step Functions executions started (their state transitions are counted
from the execution history moto's interpreter records, when asked); storage kept: net bytes
of DynamoDB items (with DynamoDB's 100 bytes of per-item overhead) and index entries, and of
S3 objects put since the last reset.

A request whose User-Agent contains ``UNMETERED`` is not counted: observers (a benchmark
waiting for runs to finish, the meter reading execution histories) stay out of the figures.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from shared.dal.metering import (
    DYNAMODB_READS,
    DYNAMODB_WRITES,
    read_units,
    wire_item_size,
    write_units,
)

UNMETERED = "switchyard-unmetered"
SQS_CHUNK_BYTES = 64 * 1024
# DynamoDB bills storage as the items' raw size plus 100 bytes per item (and per index entry).
DYNAMODB_ITEM_OVERHEAD = 100

_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
_INVOKE = re.compile(r"^/2015-03-31/functions/[^/]+/invocations/?$")
# Signing names that differ from the boto3 client's name.
_SERVICE_NAMES = {"states": "stepfunctions", "execute-api": "apigateway"}
_FINISHED = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"}

WireItem = dict[str, Any]
History = Callable[[str], list[dict[str, Any]]]


# ---- which service and operation a request is ------------------------------------------------


@dataclass(frozen=True)
class Call:
    service: str
    operation: str
    region: str


def classify(environ: Mapping[str, Any], body: bytes) -> Call | None:
    """The service (the SigV4 credential scope's, as boto3 names it), the operation (JSON
    protocols: ``X-Amz-Target``; query protocols: ``Action``; S3: method, path and
    sub-resource) and region of a signed AWS request; None for anything else (moto's own
    ``/moto-api``, unsigned requests)."""
    query = str(environ.get("QUERY_STRING", ""))
    scope = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if scope is not None:
        region, service = scope.group(1), scope.group(2)
    else:  # a presigned URL carries its scope in the query
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0].split("/")
        if len(credential) != 5:
            return None
        region, service = credential[2], credential[3]
    service = _SERVICE_NAMES.get(service, service)
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    path = unquote(str(environ.get("PATH_INFO", "/")))
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return Call(service, str(target).rsplit(".", 1)[-1], region)
    action = parse_qs(query).get("Action")
    if not action and "x-www-form-urlencoded" in str(environ.get("CONTENT_TYPE", "")):
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
    if action:
        return Call(service, action[0], region)
    if service == "s3":
        return Call(service, s3_operation(method, path, query, environ), region)
    if service == "lambda" and method == "POST" and _INVOKE.match(path):
        return Call(service, "Invoke", region)
    return Call(service, f"{method} {path}", region)


def s3_operation(method: str, path: str, query: str, environ: Mapping[str, Any]) -> str:
    """The S3 operation of a path-style request (what boto3 sends to an IP endpoint)."""
    bucket, _, key = path.lstrip("/").partition("/")
    params = parse_qs(query, keep_blank_values=True)
    sub = next((p for p in params if p not in ("list-type", "prefix", "delimiter")), None)
    if not bucket:
        return "ListBuckets"
    if key:
        if method == "PUT":
            if "partNumber" in params and "uploadId" in params:
                return "UploadPart"
            if environ.get("HTTP_X_AMZ_COPY_SOURCE"):
                return "CopyObject"
            return "PutObjectTagging" if "tagging" in params else "PutObject"
        if method == "GET":
            if "uploadId" in params:
                return "ListParts"
            return "GetObjectTagging" if "tagging" in params else "GetObject"
        if method == "HEAD":
            return "HeadObject"
        if method == "DELETE":
            return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
        if method == "POST":
            if "uploads" in params:
                return "CreateMultipartUpload"
            return "CompleteMultipartUpload" if "uploadId" in params else "PostObject"
        return f"{method} object"
    if method == "GET":
        if params.get("list-type") == ["2"]:
            return "ListObjectsV2"
        return f"GetBucket{sub.title()}" if sub else "ListObjects"
    if method == "PUT":
        return f"PutBucket{sub.title()}" if sub else "CreateBucket"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "DELETE":
        return f"DeleteBucket{sub.title()}" if sub else "DeleteBucket"
    return f"{method} bucket"


# ---- DynamoDB items as the table holds them ---------------------------------------------------


@dataclass(frozen=True)
class IndexShape:
    """A global secondary index: its key attributes and what it projects."""

    name: str
    keys: tuple[str, ...]
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableShape:
    keys: tuple[str, ...]
    indexes: tuple[IndexShape, ...] = ()


class ItemImages(Protocol):
    """Read access to the tables' items as they stand (the server's own state)."""

    def shape(self, region: str, table: str) -> TableShape | None: ...

    def image(self, region: str, table: str, key: Mapping[str, Any]) -> WireItem | None: ...


class MotoImages:
    """``ItemImages`` on moto's DynamoDB backend in this process (moto 5.x). Every read is
    guarded: a table moto does not have, or a moto that changed its internals, reads as no
    image, and the write is then counted from its request alone."""

    def __init__(self, account: str | None = None) -> None:
        self._account = account
        self._shapes: dict[tuple[str, str], TableShape | None] = {}

    def _table(self, region: str, table: str) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self._account or DEFAULT_ACCOUNT_ID][region].get_table(table)

    def shape(self, region: str, table: str) -> TableShape | None:
        if (region, table) in self._shapes:
            return self._shapes[region, table]
        try:
            t = self._table(region, table)
            keys = tuple(k for k in (t.hash_key_attr, t.range_key_attr) if k)
            indexes = tuple(
                IndexShape(
                    name=str(i.name),
                    keys=tuple(i.schema_key_attrs),
                    projection=str((i.projection or {}).get("ProjectionType", "ALL")),
                    include=tuple((i.projection or {}).get("NonKeyAttributes", [])),
                )
                for i in t.global_indexes
            )
            shape: TableShape | None = TableShape(keys, indexes)
        except Exception:
            shape = None
        self._shapes[region, table] = shape
        return shape

    def image(self, region: str, table: str, key: Mapping[str, Any]) -> WireItem | None:
        shape = self.shape(region, table)
        if shape is None or not all(k in key for k in shape.keys):
            return None
        try:
            from moto.dynamodb.models.dynamo_type import DynamoType

            t = self._table(region, table)
            hash_key = DynamoType(dict(key[shape.keys[0]]))
            range_key = DynamoType(dict(key[shape.keys[1]])) if len(shape.keys) > 1 else None
            item = t.get_item(hash_key, range_key)
            if item is None:
                return None
            attributes: WireItem = json.loads(
                json.dumps(item.to_json()["Attributes"], default=_b64)
            )
            return attributes
        except Exception:
            return None


def _b64(value: Any) -> Any:
    import base64

    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def index_entry(shape: TableShape, index: IndexShape, item: WireItem | None) -> WireItem | None:
    """The entry ``item`` has in ``index`` (None: the item is not in the index)."""
    if item is None or not all(k in item for k in index.keys):
        return None
    if index.projection == "ALL":
        return item
    kept = set(shape.keys) | set(index.keys)
    if index.projection == "INCLUDE":
        kept |= set(index.include)
    return {k: v for k, v in item.items() if k in kept}


# ---- the ledger -------------------------------------------------------------------------------


@dataclass
class OperationStats:
    requests: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    client_errors: int = 0
    server_errors: int = 0
    # DynamoDB
    items: int = 0
    write_units: float = 0.0
    index_write_units: float = 0.0
    read_units: float = 0.0
    stored_bytes: int = 0
    conditional_failures: int = 0
    # SQS
    billed_requests: int = 0
    messages: int = 0
    empty_receives: int = 0
    # S3
    object_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The counters that apply (the base ones always, the others when not zero)."""
        base = ("requests", "request_bytes", "response_bytes", "client_errors", "server_errors")
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in base or value:
                out[f.name] = round(value, 2) if isinstance(value, float) else value
        return out


@dataclass
class FunctionStats:
    invocations: int = 0
    errors: int = 0
    duration_s: float = 0.0


@dataclass
class _Write:
    """One item a write request touches, with its image before the write."""

    table: str
    key: WireItem
    kind: str  # put | update | delete | check
    transactional: bool
    request_item: WireItem | None = None
    before: WireItem | None = None


@dataclass
class Ticket:
    """What ``begin`` learned about a request, for ``finish``."""

    call: Call
    body: bytes
    request: dict[str, Any] | None = None
    writes: list[_Write] = field(default_factory=list)
    decoded_bytes: int | None = None


class ServerMeter:
    """The counts (thread-safe). ``begin``/``finish`` around each request; ``invoked`` for
    each Lambda invocation; ``snapshot``/``reset`` to read them."""

    def __init__(self, images: ItemImages | None = None, history: History | None = None) -> None:
        self.images = images
        self.history = history
        self._lock = threading.Lock()
        self._reset_state()

    def _reset_state(self) -> None:
        self.since = time.time()
        self._ops: dict[tuple[str, str], OperationStats] = {}
        self._functions: dict[str, FunctionStats] = {}
        self._executions: dict[str, None] = {}
        self._item_bytes = 0
        self._items = 0
        self._index_bytes = 0
        self._index_entries = 0
        self._objects: dict[tuple[str, str], int] = {}
        self.meter_errors = 0

    def reset(self) -> None:
        with self._lock:
            self._reset_state()

    # ---- requests ----------------------------------------------------------------------------

    def begin(self, call: Call, body: bytes, headers: Mapping[str, str] | None = None) -> Ticket:
        ticket = Ticket(call, body)
        decoded = (headers or {}).get("x-amz-decoded-content-length")
        if decoded and decoded.isdigit():
            ticket.decoded_bytes = int(decoded)
        try:
            if call.service in ("dynamodb", "stepfunctions", "sqs") and body[:1] == b"{":
                ticket.request = json.loads(body)
            request = ticket.request
            if call.service == "dynamodb" and request and call.operation in DYNAMODB_WRITES:
                ticket.writes = self._targets(call, request)
                for w in ticket.writes:
                    w.before = self._image(call.region, w.table, w.key)
        except Exception:
            with self._lock:
                self.meter_errors += 1
        return ticket

    def finish(self, ticket: Ticket, status: int, response: bytes, path: str = "") -> None:
        try:
            self._finish(ticket, status, response, path)
        except Exception:
            with self._lock:
                self.meter_errors += 1

    def _finish(self, ticket: Ticket, status: int, response: bytes, path: str) -> None:
        call = ticket.call
        answer: dict[str, Any] | None = None
        if response[:1] == b"{" and call.service in ("dynamodb", "stepfunctions", "sqs"):
            try:
                answer = json.loads(response)
            except ValueError:
                answer = None
        stats = OperationStats(requests=1, request_bytes=len(ticket.body))
        stats.response_bytes = len(response)
        afters: list[WireItem | None] = []
        if status >= 500:
            stats.server_errors = 1
        else:
            if status >= 400:
                stats.client_errors = 1
            if call.service == "dynamodb":
                afters = self._dynamodb(stats, ticket, status, answer)
            elif call.service == "sqs":
                self._sqs(stats, ticket, response, answer)
            elif call.service == "s3":
                self._s3(stats, ticket, status, response)
        with self._lock:
            total = self._ops.setdefault((call.service, call.operation), OperationStats())
            for f in fields(stats):
                setattr(total, f.name, getattr(total, f.name) + getattr(stats, f.name))
            if status < 400:
                self._keep(ticket, afters, path)
                arn = (answer or {}).get("executionArn")
                if call.service == "stepfunctions" and call.operation == "StartExecution" and arn:
                    self._executions[str(arn)] = None

    def _dynamodb(
        self,
        stats: OperationStats,
        ticket: Ticket,
        status: int,
        answer: dict[str, Any] | None,
    ) -> list[WireItem | None]:
        call, request = ticket.call, ticket.request or {}
        error = str((answer or {}).get("__type", "")).rsplit("#", 1)[-1] if status >= 400 else ""
        if call.operation in DYNAMODB_WRITES:
            if status < 400:
                afters = [self._image(call.region, w.table, w.key) for w in ticket.writes]
                for w, after in zip(ticket.writes, afters, strict=True):
                    self._write_units(stats, call.region, w, after)
                return afters
            if error in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                # Failed conditions still consume the units of the item as it stood.
                stats.conditional_failures = 1
                for w in ticket.writes:
                    size = wire_item_size(w.before) if w.before else 0
                    stats.write_units += write_units(size) * (2 if w.transactional else 1)
            return []
        if call.operation in DYNAMODB_READS and status < 400 and answer is not None:
            self._read_units(stats, call, request, answer)
        return []

    def _write_units(
        self, stats: OperationStats, region: str, w: _Write, after: WireItem | None
    ) -> None:
        before_size = wire_item_size(w.before) if w.before else 0
        if after is not None:
            after_size = wire_item_size(after)
        elif w.kind == "put" and w.request_item is not None:
            after_size = wire_item_size(w.request_item)  # no image to read: the request's item
        else:
            after_size = 0
        factor = 2 if w.transactional else 1
        stats.write_units += write_units(max(before_size, after_size)) * factor
        if w.kind != "check":
            stats.items += 1
            stats.stored_bytes += after_size
        shape = self.images.shape(region, w.table) if self.images else None
        for index in shape.indexes if shape else ():
            old = index_entry(shape, index, w.before) if shape else None
            new = index_entry(shape, index, after) if shape else None
            if old == new:
                continue
            if old is not None and new is not None:
                same_key = all(old.get(k) == new.get(k) for k in index.keys)
                if same_key:
                    stats.index_write_units += write_units(wire_item_size(new))
                else:
                    stats.index_write_units += write_units(wire_item_size(old))
                    stats.index_write_units += write_units(wire_item_size(new))
            else:
                gone_or_new = new if new is not None else old
                assert gone_or_new is not None
                stats.index_write_units += write_units(wire_item_size(gone_or_new))

    def _read_units(
        self, stats: OperationStats, call: Call, request: dict[str, Any], answer: dict[str, Any]
    ) -> None:
        consistent = bool(request.get("ConsistentRead", False))
        if call.operation == "GetItem":
            item = answer.get("Item")
            size = wire_item_size(item) if item else 0
            if item and request.get("ProjectionExpression"):
                full = self._image(call.region, str(request.get("TableName")), request["Key"])
                size = wire_item_size(full) if full else size
            stats.items += 1 if item else 0
            stats.read_units += read_units(size, consistent=consistent)
        elif call.operation in ("Query", "Scan"):
            items = answer.get("Items", [])
            stats.items += len(items)
            size = sum(wire_item_size(i) for i in items)
            stats.read_units += read_units(size, consistent=consistent)
        elif call.operation == "BatchGetItem":
            asked = request.get("RequestItems", {})
            for table, items in answer.get("Responses", {}).items():
                strong = bool(asked.get(table, {}).get("ConsistentRead", False))
                for item in items:
                    stats.items += 1
                    stats.read_units += read_units(wire_item_size(item), consistent=strong)
        elif call.operation == "TransactGetItems":
            for entry in answer.get("Responses", []):
                item = entry.get("Item")
                stats.items += 1 if item else 0
                stats.read_units += 2 * read_units(wire_item_size(item) if item else 0)

    def _sqs(
        self,
        stats: OperationStats,
        ticket: Ticket,
        response: bytes,
        answer: dict[str, Any] | None,
    ) -> None:
        payload = max(len(ticket.body), len(response))
        stats.billed_requests = max(1, math.ceil(payload / SQS_CHUNK_BYTES))
        operation = ticket.call.operation
        request = ticket.request or {}
        if operation == "SendMessage":
            stats.messages = 1
        elif operation == "SendMessageBatch":
            stats.messages = len(request.get("Entries", []))
        elif operation == "ReceiveMessage":
            if answer is not None:
                received = len(answer.get("Messages", []) or [])
            else:  # the query protocol's XML answer
                received = response.count(b"<Message>")
            stats.messages = received
            stats.empty_receives = 0 if received else 1

    def _s3(self, stats: OperationStats, ticket: Ticket, status: int, response: bytes) -> None:
        if status >= 400:
            return
        if ticket.call.operation in ("PutObject", "UploadPart"):
            size = ticket.decoded_bytes if ticket.decoded_bytes is not None else len(ticket.body)
            stats.object_bytes = size
        elif ticket.call.operation == "GetObject":
            stats.object_bytes = len(response)

    def _keep(self, ticket: Ticket, afters: list[WireItem | None], path: str) -> None:
        """Storage bookkeeping and execution ARNs (under the lock)."""
        call = ticket.call
        if call.service == "dynamodb":
            for w, after in zip(ticket.writes, afters, strict=False):
                if w.kind == "check":
                    continue
                self._item_bytes += _stored(after) - _stored(w.before)
                self._items += (after is not None) - (w.before is not None)
                shape = self.images.shape(call.region, w.table) if self.images else None
                for index in shape.indexes if shape else ():
                    old = index_entry(shape, index, w.before) if shape else None
                    new = index_entry(shape, index, after) if shape else None
                    self._index_bytes += _stored(new) - _stored(old)
                    self._index_entries += (new is not None) - (old is not None)
        elif call.service == "s3" and path:
            bucket, _, key = unquote(path).lstrip("/").partition("/")
            if call.operation == "PutObject":
                size = (
                    ticket.decoded_bytes if ticket.decoded_bytes is not None else len(ticket.body)
                )
                self._objects[bucket, key] = size
            elif call.operation == "DeleteObject":
                self._objects.pop((bucket, key), None)

    def _image(self, region: str, table: str, key: Mapping[str, Any]) -> WireItem | None:
        return self.images.image(region, table, key) if self.images is not None else None

    def _targets(self, call: Call, request: dict[str, Any]) -> list[_Write]:
        op = call.operation
        if op == "PutItem":
            item = request.get("Item", {})
            return [self._write(call, request["TableName"], "put", item=item)]
        if op == "UpdateItem":
            return [self._write(call, request["TableName"], "update", key=request["Key"])]
        if op == "DeleteItem":
            return [self._write(call, request["TableName"], "delete", key=request["Key"])]
        targets: list[_Write] = []
        if op == "TransactWriteItems":
            for entry in request.get("TransactItems", []):
                for kind, name in (
                    ("put", "Put"),
                    ("update", "Update"),
                    ("delete", "Delete"),
                    ("check", "ConditionCheck"),
                ):
                    if name in entry:
                        part = entry[name]
                        targets.append(
                            self._write(
                                call,
                                part["TableName"],
                                kind,
                                item=part.get("Item"),
                                key=part.get("Key"),
                                transactional=True,
                            )
                        )
        elif op == "BatchWriteItem":
            for table, entries in request.get("RequestItems", {}).items():
                for entry in entries:
                    if "PutRequest" in entry:
                        targets.append(
                            self._write(call, table, "put", item=entry["PutRequest"]["Item"])
                        )
                    elif "DeleteRequest" in entry:
                        targets.append(
                            self._write(call, table, "delete", key=entry["DeleteRequest"]["Key"])
                        )
        return targets

    def _write(
        self,
        call: Call,
        table: str,
        kind: str,
        *,
        item: WireItem | None = None,
        key: WireItem | None = None,
        transactional: bool = False,
    ) -> _Write:
        if key is None:
            shape = self.images.shape(call.region, table) if self.images else None
            names = shape.keys if shape else ()
            key = {k: v for k, v in (item or {}).items() if k in names}
        return _Write(table, dict(key), kind, transactional, request_item=item)

    # ---- Lambda ------------------------------------------------------------------------------

    def invoked(self, function: str, duration_s: float, *, error: bool = False) -> None:
        with self._lock:
            stats = self._functions.setdefault(function, FunctionStats())
            stats.invocations += 1
            stats.errors += int(error)
            stats.duration_s += duration_s

    # ---- reading -----------------------------------------------------------------------------

    def state_transitions(self, executions: Iterable[str]) -> dict[str, Any]:
        """State transitions of these executions, from their histories: one per state
        entered (inside Map and Parallel branches too) plus one per retry of a task (a task
        scheduled again without its state being entered again), as Standard workflows bill."""
        counted: dict[str, int] = {}
        transitions = running = failed = 0
        for arn in executions:
            try:
                events = self.history(arn) if self.history else []
            except Exception:
                failed += 1
                continue
            kinds = [str(e.get("type", "")) for e in events]
            entered = sum(1 for k in kinds if k.endswith("StateEntered"))
            tasks_entered = sum(1 for k in kinds if k == "TaskStateEntered")
            retries = max(0, sum(1 for k in kinds if k == "TaskScheduled") - tasks_entered)
            transitions += entered + retries
            running += 0 if _FINISHED & set(kinds) else 1
            for k in kinds:
                if k.endswith("StateEntered"):
                    counted[k] = counted.get(k, 0) + 1
            if retries:
                counted["TaskRetried"] = counted.get("TaskRetried", 0) + retries
        return {
            "state_transitions": transitions,
            "running": running,
            "history_unreadable": failed,
            "by_state": dict(sorted(counted.items())),
        }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            requests = {
                f"{s}.{op}": stats.as_dict() for (s, op), stats in sorted(self._ops.items())
            }
            functions = {
                name: {
                    "invocations": f.invocations,
                    "errors": f.errors,
                    "duration_s": round(f.duration_s, 3),
                }
                for name, f in sorted(self._functions.items())
            }
            executions = list(self._executions)
            storage = {
                "dynamodb_items": self._items,
                "dynamodb_item_bytes": self._item_bytes,
                "dynamodb_index_entries": self._index_entries,
                "dynamodb_index_bytes": self._index_bytes,
                "s3_objects": len(self._objects),
                "s3_bytes": sum(self._objects.values()),
            }
            since, meter_errors = self.since, self.meter_errors
        return {
            "since": datetime.fromtimestamp(since, UTC).isoformat(),
            "seconds": round(time.time() - since, 3),
            "requests": requests,
            "lambda": functions,
            "stepfunctions": {"executions": len(executions), **self.state_transitions(executions)},
            "storage": storage,
            "meter_errors": meter_errors,
        }


def _stored(item: WireItem | None) -> int:
    return wire_item_size(item) + DYNAMODB_ITEM_OVERHEAD if item is not None else 0


__all__ = [
    "UNMETERED",
    "Call",
    "IndexShape",
    "ItemImages",
    "MotoImages",
    "OperationStats",
    "ServerMeter",
    "TableShape",
    "Ticket",
    "classify",
    "index_entry",
    "s3_operation",
]
