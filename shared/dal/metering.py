"""Count the requests (and request body bytes) boto3 clients actually send.

Benchmarks attach a ``RequestMeter`` to the clients behind a journal and read the counts
afterwards; nothing in the backends counts anything itself, so what is measured is what
boto3 put on the wire (one count per API call; botocore's own retries are not recounted).

    meter = RequestMeter()
    meter.attach(table.client)
    meter.attach(blobs.client)
    ...
    meter.count("dynamodb", "PutItem"), meter.writes("dynamodb"), meter.body_bytes("dynamodb")

The sizing helpers (``wire_item_size``, ``raw_binary``, ``write_units``, ``read_units``,
``body_size``) are shared with the local stack's server-side meter (``devstack.metering``),
which sees the same wire format from the other end.
"""

from __future__ import annotations

import base64
import json
import math
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from shared.dal.dynamodb import attribute_size

DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
)
DYNAMODB_READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
# DynamoDB's request units: a write is billed per 1 KB of item, a read per 4 KB.
WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


class RequestMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._bytes: Counter[tuple[str, str]] = Counter()
        self._items: Counter[tuple[str, str]] = Counter()
        self._stored: Counter[tuple[str, str]] = Counter()
        self._unique_id = f"switchyard-request-meter-{id(self)}"

    def attach(self, client: Any) -> None:
        """Count every call ``client`` makes from now on."""
        client.meta.events.register("before-call", self._on_call, unique_id=self._unique_id)

    def detach(self, client: Any) -> None:
        client.meta.events.unregister("before-call", unique_id=self._unique_id)

    def _on_call(self, model: Any = None, params: Any = None, **_: Any) -> None:
        # Returning anything but None from a before-call handler would short-circuit the call.
        if model is None:
            return
        service = str(model.service_model.endpoint_prefix)
        operation = str(model.name)
        body = params.get("body") if isinstance(params, dict) else None
        size = body_size(body)
        items = _items_written(service, operation, body)
        stored = _stored_bytes(service, operation, body)
        with self._lock:
            self._requests[service, operation] += 1
            self._bytes[service, operation] += size
            self._items[service, operation] += items
            self._stored[service, operation] += stored

    # ---- reading ---------------------------------------------------------------------------

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        """API calls, optionally of one service (``"dynamodb"``, ``"s3"``) and operation."""
        with self._lock:
            return sum(n for k, n in self._requests.items() if _match(k, service, operation))

    def body_bytes(self, service: str | None = None, operation: str | None = None) -> int:
        """Request body bytes sent (serialized request for DynamoDB, object body for S3)."""
        with self._lock:
            return sum(n for k, n in self._bytes.items() if _match(k, service, operation))

    def stored_bytes(self, service: str | None = None, operation: str | None = None) -> int:
        """Bytes of data written as the store counts them: DynamoDB item sizes by its sizing
        rules (binary attributes at their raw length, not the base64 of the wire), the values
        an UpdateItem sets, and S3 object bodies."""
        with self._lock:
            return sum(n for k, n in self._stored.items() if _match(k, service, operation))

    def writes(self, service: str = "dynamodb") -> int:
        """DynamoDB write requests (a transaction counts once)."""
        with self._lock:
            return sum(
                n for (s, op), n in self._requests.items() if s == service and op in DYNAMODB_WRITES
            )

    def items_written(self, service: str = "dynamodb") -> int:
        """DynamoDB items written (a transaction counts each of its items)."""
        with self._lock:
            return sum(n for (s, _), n in self._items.items() if s == service)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{"dynamodb.PutItem": {"requests": n, "bytes": b, "items": i}, ...}`` (JSON-ready)."""
        with self._lock:
            return {
                f"{s}.{op}": {
                    "requests": n,
                    "bytes": self._bytes[s, op],
                    "items": self._items[s, op],
                    "stored_bytes": self._stored[s, op],
                }
                for (s, op), n in sorted(self._requests.items())
            }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes.clear()
            self._items.clear()
            self._stored.clear()


def _match(key: tuple[str, str], service: str | None, operation: str | None) -> bool:
    return (service is None or key[0] == service) and (operation is None or key[1] == operation)


def write_units(item_bytes: int) -> int:
    """Write request units for writing one item of ``item_bytes`` (at least 1; a
    transaction's items cost twice this)."""
    return max(1, math.ceil(item_bytes / WRITE_UNIT_BYTES))


def read_units(item_bytes: int, *, consistent: bool = True) -> float:
    """Read request units for reading ``item_bytes`` (one item, or a Query's items summed):
    one per 4 KB, at least one, half as much when eventually consistent."""
    units = max(1, math.ceil(item_bytes / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def body_size(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray | memoryview):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    if isinstance(body, dict):  # query-protocol services hand over the parameters
        return len(json.dumps(body, default=str).encode("utf-8"))
    try:  # a file-like body: its remaining length
        position = body.tell()
        body.seek(0, 2)
        end = body.tell()
        body.seek(position)
        return int(end - position)
    except (AttributeError, OSError, ValueError):
        return 0


def _items_written(service: str, operation: str, body: Any) -> int:
    if service != "dynamodb" or operation not in DYNAMODB_WRITES:
        return 0
    if operation not in ("TransactWriteItems", "BatchWriteItem"):
        return 1
    try:
        request = json.loads(body)
    except (TypeError, ValueError):
        return 1
    if operation == "TransactWriteItems":
        return sum(
            1 for t in request.get("TransactItems", []) if {"Put", "Update", "Delete"} & set(t)
        )
    return sum(len(v) for v in request.get("RequestItems", {}).values())


def _stored_bytes(service: str, operation: str, body: Any) -> int:
    if service == "s3":
        return body_size(body) if operation == "PutObject" else 0
    if service != "dynamodb" or operation not in DYNAMODB_WRITES:
        return 0
    try:
        request = json.loads(body)
    except (TypeError, ValueError):
        return 0
    if operation == "PutItem":
        return wire_item_size(request.get("Item", {}))
    if operation == "UpdateItem":
        return _update_size(request)
    total = 0
    for entry in request.get("TransactItems", []):
        if "Put" in entry:
            total += wire_item_size(entry["Put"].get("Item", {}))
        elif "Update" in entry:
            total += _update_size(entry["Update"])
    return total


def _update_size(request: dict[str, Any]) -> int:
    values = request.get("ExpressionAttributeValues", {})
    return sum(attribute_size(raw_binary(v)) for v in values.values())


def wire_item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for an item in the wire format (attribute values, binaries as
    base64 text): attribute names plus values, binaries at their raw length."""
    return sum(len(k.encode("utf-8")) + attribute_size(raw_binary(v)) for k, v in item.items())


def raw_binary(attribute: Mapping[str, Any]) -> Mapping[str, Any]:
    """A wire attribute value with base64 binaries decoded, as DynamoDB sizes them."""
    ((kind, raw),) = attribute.items()
    if kind == "B":
        return {"B": raw if isinstance(raw, bytes | bytearray) else base64.b64decode(raw)}
    if kind == "BS":
        return {"BS": [b if isinstance(b, bytes | bytearray) else base64.b64decode(b) for b in raw]}
    if kind == "M":
        return {"M": {k: raw_binary(v) for k, v in raw.items()}}
    if kind == "L":
        return {"L": [raw_binary(v) for v in raw]}
    return attribute


__all__ = [
    "DYNAMODB_READS",
    "DYNAMODB_WRITES",
    "READ_UNIT_BYTES",
    "WRITE_UNIT_BYTES",
    "RequestMeter",
    "body_size",
    "raw_binary",
    "read_units",
    "wire_item_size",
    "write_units",
]
