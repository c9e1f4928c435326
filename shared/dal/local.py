"""AWS on this machine: provisioning the table and bucket, and an in-process moto for `dev`.

moto is a development dependency; it is imported only here and only when asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.config import Settings
from shared.dal import aws_client
from shared.dal.schema import create_bucket, create_table
from shared.journal.dynamodb import DynamoJournal


def provision(settings: Settings) -> None:
    """Create the journal table and overflow bucket wherever the AWS endpoint points."""
    create_table(aws_client("dynamodb", region=settings.region), settings.table_name)
    create_bucket(aws_client("s3", region=settings.region), settings.bucket_name)


@contextlib.contextmanager
def local_aws(settings: Settings) -> Iterator[DynamoJournal]:
    """A DynamoDB+S3 journal on moto, in this process, for as long as the block runs."""
    from moto import mock_aws

    with mock_aws():
        provision(settings)
        yield DynamoJournal.from_settings(settings)
