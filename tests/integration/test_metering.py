"""RequestMeter counts what boto3 really sends: requests, wire bytes and stored bytes."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from moto import mock_aws

from shared.dal.dynamodb import RunTable
from shared.dal.local import deploy_template
from shared.dal.metering import RequestMeter
from shared.dal.s3 import BlobStore


@pytest.fixture
def aws() -> Iterator[tuple[RunTable, BlobStore, RequestMeter]]:
    with mock_aws():
        # The stack's table and overflow bucket, deployed from the synthesized template.
        settings = deploy_template().settings()
        table = RunTable(settings.table_name, region="us-east-1")
        blobs = BlobStore(settings.bucket_name, region="us-east-1")
        meter = RequestMeter()
        meter.attach(table.client)
        meter.attach(blobs.client)
        yield table, blobs, meter


def test_binary_attributes_count_at_raw_length_not_base64(
    aws: tuple[RunTable, BlobStore, RequestMeter],
) -> None:
    table, _, meter = aws
    blob = os.urandom(30_000)
    table.put({"pk": "p", "sk": "s", "body": blob})
    assert meter.writes() == 1
    stored = meter.stored_bytes("dynamodb", "PutItem")
    wire = meter.body_bytes("dynamodb", "PutItem")
    # The item is the blob plus key names and values; the wire carries it base64-encoded.
    assert 30_000 < stored < 30_100
    assert wire > 40_000


def test_s3_objects_count_their_body(aws: tuple[RunTable, BlobStore, RequestMeter]) -> None:
    _, blobs, meter = aws
    blobs.put(b"x" * 12_345)
    assert meter.stored_bytes("s3") == 12_345
    assert meter.writes() == 0  # DynamoDB writes only


def test_update_counts_the_values_it_sets(aws: tuple[RunTable, BlobStore, RequestMeter]) -> None:
    table, _, meter = aws
    table.put({"pk": "p", "sk": "s"})
    meter.reset()
    table.update(
        {"pk": "p", "sk": "s"},
        update="SET #s = :s, note = :n",
        names={"#s": "status"},
        values={":s": "running", ":n": "y" * 500},
    )
    assert meter.writes() == 1
    assert 500 < meter.stored_bytes("dynamodb", "UpdateItem") < 600
