"""A thin wrapper over one DynamoDB table, speaking plain Python values.

Items are ``dict[str, Any]`` whose values are ``str``, ``int``, ``float``, ``bool``, ``None``,
``bytes``, lists and dicts; the wrapper converts them to and from DynamoDB's attribute-value
format. Numbers come back as ``int`` when integral in form, else ``float``.

Errors: a failed condition raises ``ConditionFailedError`` (carrying the item as it stood when
DynamoDB returns it), every other failure ``JournalError``; both keep the botocore error as
their ``__cause__``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.dal import DEFAULT_POOL_SIZE, aws_client
from shared.errors import JournalError

Item = dict[str, Any]
Key = Mapping[str, Any]

_INTEGRAL = re.compile(r"-?\d+")


class ConditionFailedError(JournalError):
    """A conditional write did not apply. ``item`` is the item as it stood, when known;
    ``reasons`` are the per-item cancellation codes of a failed transaction."""

    code = "condition_failed"

    def __init__(
        self, message: str, *, item: Item | None = None, reasons: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details={"reasons": list(reasons)} if reasons else None)
        self.item = item
        self.reasons = list(reasons)


# ---- attribute values ------------------------------------------------------------------------


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB attribute value."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"DynamoDB cannot store the number {value!r}")
        return {"N": repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as a Python value."""
    ((kind, raw),) = attribute.items()
    if kind == "S":
        return raw
    if kind == "N":
        return int(raw) if _INTEGRAL.fullmatch(raw) else float(raw)
    if kind == "B":
        return bytes(raw)
    if kind == "BOOL":
        return bool(raw)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: from_attribute(v) for k, v in raw.items()}
    if kind == "L":
        return [from_attribute(v) for v in raw]
    if kind == "SS":
        return set(raw)
    if kind == "NS":
        return {from_attribute({"N": n}) for n in raw}
    if kind == "BS":
        return {bytes(b) for b in raw}
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def to_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in item.items()}


def from_item(raw: Mapping[str, Any]) -> Item:
    return {k: from_attribute(v) for k, v in raw.items()}


def attribute_size(attribute: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one attribute value (its documented sizing rules)."""
    ((kind, raw),) = attribute.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "B":
        return len(raw)
    if kind == "N":
        digits = raw.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0")
        return (len(digits) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + attribute_size(v) + 1 for k, v in raw.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in raw)
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in raw)
    raise ValueError(f"unknown DynamoDB attribute type {kind!r}")


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for a (Python-valued) item against its 400 KB limit."""
    return sum(len(k.encode("utf-8")) + attribute_size(to_attribute(v)) for k, v in item.items())


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Put:
    """One conditional put of a transaction."""

    item: Item
    condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)


class RunTable:
    """The Switchyard table. ``client`` is a boto3 DynamoDB client (built from ``region`` and
    ``endpoint_url`` when not given). Reads are strongly consistent unless asked otherwise."""

    def __init__(
        self,
        name: str,
        client: Any = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_pool_connections: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.name = name
        self.client: Any = client or aws_client(
            "dynamodb",
            region=region,
            endpoint_url=endpoint_url,
            max_pool_connections=max_pool_connections,
        )

    def get(self, key: Key, *, consistent: bool = True) -> Item | None:
        response = self._call(
            "GetItem", self.client.get_item, Key=to_item(key), ConsistentRead=consistent
        )
        raw = response.get("Item")
        return from_item(raw) if raw else None

    def put(
        self,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_failed_item: bool = False,
    ) -> None:
        """Write ``item`` (if ``condition`` holds). With ``return_failed_item`` a failed
        condition's ``ConditionFailedError.item`` holds the item as it stood."""
        kwargs = _conditional(condition, names, values)
        if condition is not None and return_failed_item:
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        self._call("PutItem", self.client.put_item, Item=to_item(item), **kwargs)

    def update(
        self,
        key: Key,
        *,
        update: str,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_values: str = "ALL_NEW",
        return_failed_item: bool = False,
    ) -> Item:
        """Apply ``update`` (an UpdateExpression); returns the attributes ``return_values``
        selects (the whole new item by default). ``return_failed_item`` as for ``put``."""
        kwargs = _conditional(condition, names, values)
        if condition is not None and return_failed_item:
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        response = self._call(
            "UpdateItem",
            self.client.update_item,
            Key=to_item(key),
            UpdateExpression=update,
            ReturnValues=return_values,
            **kwargs,
        )
        return from_item(response.get("Attributes", {}))

    def transact_put(self, puts: Sequence[Put]) -> None:
        """Write every item or none (one TransactWriteItems request)."""
        items = []
        for put in puts:
            entry: dict[str, Any] = {"TableName": self.name, "Item": to_item(put.item)}
            entry.update(_conditional(put.condition, put.names, put.values))
            items.append({"Put": entry})
        self._call("TransactWriteItems", self.client.transact_write_items, TransactItems=items)

    def query_page(
        self,
        key_name: str,
        key_value: str,
        *,
        index: str | None = None,
        sort_name: str | None = None,
        between: tuple[str, str] | None = None,
        forward: bool = True,
        limit: int | None = None,
        start_key: Item | None = None,
        consistent: bool = True,
        attributes: Sequence[str] | None = None,
    ) -> tuple[list[Item], Item | None]:
        """One Query page: items with ``key_name = key_value`` (and the sort key within
        ``between``, inclusive), and the key to continue from (``None`` at the end).
        ``attributes`` limits what is returned (not what is read and billed)."""
        names = {"#k": key_name}
        values: dict[str, Any] = {":k": key_value}
        condition = "#k = :k"
        if between is not None:
            if sort_name is None:
                raise ValueError("between needs sort_name")
            names["#s"] = sort_name
            values[":lo"], values[":hi"] = between
            condition += " AND #s BETWEEN :lo AND :hi"
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": to_item(values),
            "ScanIndexForward": forward,
            # Global secondary indexes only support eventually consistent reads.
            "ConsistentRead": consistent and index is None,
        }
        if attributes:
            projected = {f"#p{i}": a for i, a in enumerate(attributes)}
            names.update(projected)
            kwargs["ProjectionExpression"] = ", ".join(projected)
        if index is not None:
            kwargs["IndexName"] = index
        if limit is not None:
            kwargs["Limit"] = limit
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = to_item(start_key)
        response = self._call("Query", self.client.query, **kwargs)
        last = response.get("LastEvaluatedKey")
        return [from_item(i) for i in response.get("Items", [])], (
            from_item(last) if last else None
        )

    def query(
        self,
        key_name: str,
        key_value: str,
        *,
        index: str | None = None,
        sort_name: str | None = None,
        between: tuple[str, str] | None = None,
        forward: bool = True,
        max_items: int | None = None,
        consistent: bool = True,
        attributes: Sequence[str] | None = None,
    ) -> list[Item]:
        """Every matching item (following pages), or the first ``max_items``."""
        out: list[Item] = []
        start: Item | None = None
        while True:
            remaining = None if max_items is None else max_items - len(out)
            items, start = self.query_page(
                key_name,
                key_value,
                index=index,
                sort_name=sort_name,
                between=between,
                forward=forward,
                limit=remaining,
                start_key=start,
                consistent=consistent,
                attributes=attributes,
            )
            out.extend(items)
            if start is None or (max_items is not None and len(out) >= max_items):
                return out

    def _call(self, operation: str, method: Any, **kwargs: Any) -> dict[str, Any]:
        if operation != "TransactWriteItems":
            kwargs.setdefault("TableName", self.name)
        try:
            response: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            raise self._translate(operation, exc) from exc
        except BotoCoreError as exc:
            raise JournalError(
                f"DynamoDB {operation} on {self.name} failed: {exc}",
                details={"operation": operation},
            ) from exc
        return response

    def _translate(self, operation: str, exc: ClientError) -> JournalError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        if code == "ConditionalCheckFailedException":
            raw = exc.response.get("Item")
            return ConditionFailedError(
                f"DynamoDB {operation}: condition failed", item=from_item(raw) if raw else None
            )
        if code == "TransactionCanceledException":
            reasons = [
                str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])
            ]
            if not reasons:  # Older endpoints only list the reasons in the message.
                match = re.search(r"\[(.*)\]", message)
                reasons = [r.strip() for r in match.group(1).split(",")] if match else []
            if "ConditionalCheckFailed" in reasons:
                return ConditionFailedError(
                    f"DynamoDB {operation}: condition failed", reasons=reasons
                )
        return JournalError(
            f"DynamoDB {operation} on {self.name} failed: {code}: {message}",
            details={"operation": operation, "aws_code": code},
        )


def _conditional(
    condition: str | None, names: Mapping[str, str] | None, values: Mapping[str, Any] | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if condition is not None:
        kwargs["ConditionExpression"] = condition
    if names:
        kwargs["ExpressionAttributeNames"] = dict(names)
    if values:
        kwargs["ExpressionAttributeValues"] = to_item(values)
    return kwargs


__all__ = [
    "ConditionFailedError",
    "Item",
    "Put",
    "RunTable",
    "attribute_size",
    "from_attribute",
    "from_item",
    "item_size",
    "to_attribute",
    "to_item",
]
