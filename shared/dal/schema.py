"""The single table and the overflow bucket: definition, key layout, creation helpers.

One DynamoDB table holds every run. Items of one run share the partition ``RUN#{run_id}``:

- ``sk = "RUN"``: the run item (metadata, status, lease attributes, the GSI keys below);
- ``sk = "J#{seq:012d}"``: one journal record per conditional append, ``seq`` being the seq of
  the record's first event, zero-padded so keys sort in seq order.

The GSI ``by_tenant`` (``tenant_pk = "TENANT#{tenant}"``, sort key ``created``: the run's
creation time as a fixed-width UTC timestamp, then ``#run_id``) lists a tenant's runs newest
first. It projects only small attributes that rarely change, so the frequent writes to the run
item (lease renewals, step counters, usage) never write to the index.

The control store (``shared.tenancy.dynamodb``) keeps its items in the same table, one per
partition, none carrying the index keys (so none ever appears in ``by_tenant``):

- ``APIKEY#{key_id}`` / ``KEY``: an API key record (its hash, never the key);
- ``IDEM#{tenant}#{sha256(idempotency key)}`` / ``IDEM``: the run an Idempotency-Key made;
- ``THREAD#{tenant}#{thread_id}`` / ``THREAD``: a thread's run ids in submission order
  (``runs``) and how many of them have finished (``finished``).

The job store (``shared.jobs.dynamodb``) keeps one partition per pipeline job, again
without the index keys:

- ``JOB#{job_id}`` / ``JOB``: the job item (pipeline, tenant, status, input, output, error);
- ``JOB#{job_id}`` / ``ATTEMPT#{stage}#{attempt_id}``: one item per stage attempt.

The usage counters (``shared.usage.dynamodb``) keep one partition per tenant, again without
the index keys; every write is one UpdateItem that ``ADD``s to the counts:

- ``USAGE#{tenant}`` / ``H#{hour}#{agent}``: one agent's usage in one UTC hour, the hour
  fixed-width (``2026-11-20T13:00:00Z``) so that the sort keys of a range of hours are a
  range of strings (``usage_hours_between``);
- ``USAGE#{tenant}`` / ``D#{yyyy-mm-dd}``: the tenant's total of one UTC day (every agent),
  what a daily budget is checked against.

The provider gateway's rate-limit buckets (``shared.ratelimit.dynamodb``), one item each,
without the index keys: ``RATE#{bucket}`` / ``RATE``, the bucket being the provider key's
fingerprint and the model (``anthropic:{sha256[:16]}:{model}``); a take is one conditional
UpdateItem.

A ``#`` or ``%`` in a tenant (or a stage or agent name) is percent-escaped inside these keys,
so distinct (tenant, id) pairs never share a key.

``expires_at`` (epoch seconds) is the TTL attribute; billing is on demand.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from typing import Any

PK = "pk"
SK = "sk"
TTL_ATTRIBUTE = "expires_at"

BY_TENANT = "by_tenant"
TENANT_PK = "tenant_pk"
CREATED = "created"
# Attributes the by_tenant index carries besides its keys (enough to render a run list).
BY_TENANT_PROJECTION: tuple[str, ...] = (
    "run_id",
    "agent",
    "status",
    "shape",
    "thread_id",
    "created_at",
    "finished_at",
)

RUN_SK = "RUN"
RECORD_PREFIX = "J#"
_SEQ_DIGITS = 12
RECORD_SK_MIN = RECORD_PREFIX + "0" * _SEQ_DIGITS
RECORD_SK_MAX = RECORD_PREFIX + "9" * _SEQ_DIGITS

API_KEY_SK = "KEY"
IDEMPOTENCY_SK = "IDEM"
THREAD_SK = "THREAD"

JOB_SK = "JOB"
ATTEMPT_PREFIX = "ATTEMPT#"

USAGE_HOUR_PREFIX = "H#"
USAGE_DAY_PREFIX = "D#"


def run_pk(run_id: str) -> str:
    return f"RUN#{run_id}"


def record_sk(seq: int) -> str:
    """The sort key of the record whose first event is ``seq`` (clamped into the key range)."""
    clamped = min(max(seq, 0), 10**_SEQ_DIGITS - 1)
    return f"{RECORD_PREFIX}{clamped:0{_SEQ_DIGITS}d}"


def tenant_pk(tenant: str) -> str:
    return f"TENANT#{tenant}"


def created_key(created_at: datetime, run_id: str) -> str:
    """Sort key of the by_tenant index: fixed-width UTC time, so strings sort by time."""
    at = created_at if created_at.tzinfo is not None else created_at.replace(tzinfo=UTC)
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{run_id}"


def api_key_pk(key_id: str) -> str:
    return f"APIKEY#{key_id}"


def idempotency_pk(tenant: str, key: str) -> str:
    """The key is hashed: it is the client's string, of any length and content."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"IDEM#{_escape(tenant)}#{digest}"


def thread_pk(tenant: str, thread_id: str) -> str:
    return f"THREAD#{_escape(tenant)}#{thread_id}"


def job_pk(job_id: str) -> str:
    return f"JOB#{job_id}"


def attempt_sk(stage: str, attempt_id: str) -> str:
    """The sort key of one stage attempt (the stage escaped, so ``#`` cannot shift the split
    between stage and attempt id)."""
    return f"{ATTEMPT_PREFIX}{_escape(stage)}#{attempt_id}"


def usage_pk(tenant: str) -> str:
    return f"USAGE#{_escape(tenant)}"


def usage_hour_sk(hour: datetime, agent: str) -> str:
    """The sort key of one agent's counter for one hour (an aware datetime on the hour)."""
    return f"{USAGE_HOUR_PREFIX}{_hour_key(hour)}#{_escape(agent)}"


def usage_hours_between(first: datetime, last: datetime) -> tuple[str, str]:
    """The inclusive sort-key range of every agent's counters for the hours ``first`` to
    ``last``: ``$`` follows ``#``, so it ends after the last hour's agents and before the
    hour after it."""
    return (
        f"{USAGE_HOUR_PREFIX}{_hour_key(first)}#",
        f"{USAGE_HOUR_PREFIX}{_hour_key(last)}$",
    )


def usage_day_sk(day: date) -> str:
    return f"{USAGE_DAY_PREFIX}{day.isoformat()}"


def _hour_key(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("#", "%23")


def table_definition(name: str) -> dict[str, Any]:
    """Keyword arguments of ``CreateTable`` for the Switchyard table."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": PK, "AttributeType": "S"},
            {"AttributeName": SK, "AttributeType": "S"},
            {"AttributeName": TENANT_PK, "AttributeType": "S"},
            {"AttributeName": CREATED, "AttributeType": "S"},
        ],
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": BY_TENANT,
                "KeySchema": [
                    {"AttributeName": TENANT_PK, "KeyType": "HASH"},
                    {"AttributeName": CREATED, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(BY_TENANT_PROJECTION),
                },
            }
        ],
    }


def create_table(client: Any, name: str) -> None:
    """Create the table (on-demand, GSI, TTL on ``expires_at``) and wait until it is active."""
    client.create_table(**table_definition(name))
    client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


def create_bucket(client: Any, name: str) -> None:
    """Create the overflow bucket in the client's region (private, default encryption)."""
    region = client.meta.region_name
    if region and region != "us-east-1":
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    else:
        client.create_bucket(Bucket=name)
    client.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


__all__ = [
    "API_KEY_SK",
    "ATTEMPT_PREFIX",
    "BY_TENANT",
    "BY_TENANT_PROJECTION",
    "CREATED",
    "IDEMPOTENCY_SK",
    "JOB_SK",
    "PK",
    "RECORD_PREFIX",
    "RECORD_SK_MAX",
    "RECORD_SK_MIN",
    "RUN_SK",
    "SK",
    "TENANT_PK",
    "THREAD_SK",
    "TTL_ATTRIBUTE",
    "USAGE_DAY_PREFIX",
    "USAGE_HOUR_PREFIX",
    "api_key_pk",
    "attempt_sk",
    "create_bucket",
    "create_table",
    "created_key",
    "idempotency_pk",
    "job_pk",
    "record_sk",
    "run_pk",
    "table_definition",
    "tenant_pk",
    "thread_pk",
    "usage_day_sk",
    "usage_hour_sk",
    "usage_hours_between",
    "usage_pk",
]
