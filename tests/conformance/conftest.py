"""Fixtures of the conformance suites: one ``journal``, one ``control`` store and one ``jobs``
store per backend, a controllable clock.

The DynamoDB backends run on moto in-process, with the table and bucket created by deploying
the synthesized CDK stack's storage into moto's CloudFormation
(``shared.dal.local.deploy_template``), so they are the ones ``cdk deploy`` creates.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto import mock_aws

from shared.dal import aws_client
from shared.dal.dynamodb import Item, RunTable
from shared.dal.local import deploy_template
from shared.dal.s3 import BlobStore
from shared.dal.schema import RUN_SK, SK, record_sk, run_pk
from shared.jobs.base import JobStore
from shared.jobs.dynamodb import DynamoJobStore
from shared.jobs.memory import MemoryJobStore
from shared.journal.base import Journal
from shared.journal.dynamodb import DynamoJournal
from shared.journal.memory import MemoryJournal
from shared.tenancy.base import ControlStore
from shared.tenancy.dynamodb import DynamoControlStore
from shared.tenancy.memory import MemoryControlStore

REGION = "us-east-1"
T0 = 1_700_000_000.0


@dataclass
class Clock:
    """A clock the test moves by hand (the journal's lease expiry reads it)."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SerializedClient:
    """A boto3 client whose calls run one at a time.

    DynamoDB applies conditional writes to one item atomically; moto checks a condition and
    stores the item in two Python steps without a lock, so two threads could both pass the
    check. Serializing calls gives moto DynamoDB's per-item atomicity (the journal's own
    threads still issue the calls concurrently)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("_") or name in ("meta", "exceptions") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


@dataclass
class Aws:
    """The moto resources behind a DynamoJournal, for layout assertions."""

    table: RunTable
    blobs: BlobStore
    dynamodb: Any
    s3: Any
    table_name: str
    bucket_name: str
    extra: dict[str, Any] = field(default_factory=dict)

    def run_item(self, run_id: str) -> Item | None:
        return self.table.get({"pk": run_pk(run_id), SK: RUN_SK})

    def record_item(self, run_id: str, seq: int) -> Item | None:
        return self.table.get({"pk": run_pk(run_id), SK: record_sk(seq)})

    def blob_keys(self) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket_name)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def blob(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=self.bucket_name, Key=key)["Body"].read()
        return data


@dataclass
class Backend:
    name: str
    journal: Journal
    clock: Clock
    aws: Aws | None = None


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aws() -> Iterator[Aws]:
    """A moto account with the stack's table and overflow bucket (from the template)."""
    with mock_aws():
        settings = deploy_template(region=REGION).settings()
        dynamodb = aws_client("dynamodb", region=REGION)
        s3 = aws_client("s3", region=REGION)
        table = RunTable(settings.table_name, SerializedClient(dynamodb))
        blobs = BlobStore(settings.bucket_name, SerializedClient(s3))
        yield Aws(table, blobs, dynamodb, s3, settings.table_name, settings.bucket_name)


@pytest.fixture(params=["memory", "dynamodb"])
def backend(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Backend]:
    if request.param == "memory":
        yield Backend("memory", MemoryJournal(clock=clock), clock)
        return
    aws: Aws = request.getfixturevalue("aws")
    journal = DynamoJournal(aws.table, aws.blobs, clock=clock, max_workers=8)
    try:
        yield Backend("dynamodb", journal, clock, aws)
    finally:
        journal.close()


@pytest.fixture
def journal(backend: Backend) -> Journal:
    return backend.journal


@dataclass
class ControlBackend:
    name: str
    store: ControlStore
    aws: Aws | None = None


@pytest.fixture(params=["memory", "dynamodb"])
def control_backend(request: pytest.FixtureRequest) -> Iterator[ControlBackend]:
    if request.param == "memory":
        yield ControlBackend("memory", MemoryControlStore())
        return
    aws: Aws = request.getfixturevalue("aws")
    store = DynamoControlStore(aws.table, max_workers=8)
    try:
        yield ControlBackend("dynamodb", store, aws)
    finally:
        store.close()


@pytest.fixture
def control(control_backend: ControlBackend) -> ControlStore:
    return control_backend.store


@dataclass
class JobBackend:
    name: str
    store: JobStore
    aws: Aws | None = None


@pytest.fixture(params=["memory", "dynamodb"])
def job_backend(request: pytest.FixtureRequest, clock: Clock) -> Iterator[JobBackend]:
    if request.param == "memory":
        yield JobBackend("memory", MemoryJobStore())
        return
    aws: Aws = request.getfixturevalue("aws")
    store = DynamoJobStore(aws.table, clock=clock, max_workers=8)
    try:
        yield JobBackend("dynamodb", store, aws)
    finally:
        store.close()


@pytest.fixture
def jobs(job_backend: JobBackend) -> JobStore:
    return job_backend.store
