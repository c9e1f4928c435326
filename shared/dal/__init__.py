"""Data access: the only place in Switchyard that talks to AWS through boto3.

- ``shared.dal.dynamodb``: ``RunTable``, a thin wrapper over the single DynamoDB table
  (conditional put/update, transactions, queries), speaking plain Python values.
- ``shared.dal.s3``: ``BlobStore``, content-addressed blobs (payloads too big for an item).
- ``shared.dal.schema``: the table's definition and key layout, and helpers that create the
  table and bucket (tests, the local stack).
- ``shared.dal.metering``: ``RequestMeter``, counts the requests and bytes a client sends.

Every class takes its boto3 client as a constructor argument; the default is built by
``aws_client`` below. boto3 is imported lazily, so importing this package stays cheap for
cold starts that never build a client. botocore's ``ClientError`` is translated into
``shared.errors`` types at this boundary (``raise ... from exc``).
"""

from __future__ import annotations

from typing import Any

DEFAULT_POOL_SIZE = 32


def aws_client(
    service: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_pool_connections: int = DEFAULT_POOL_SIZE,
) -> Any:
    """A boto3 client with standard retries and a connection pool sized for ``max_pool_connections``
    concurrent callers (botocore's default of 10 would make a 32-thread executor queue).

    ``endpoint_url`` defaults to botocore's own resolution, which honours ``AWS_ENDPOINT_URL``
    (the local stack sets it to the moto server)."""
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 5},
    )
    # A session of our own: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(service, region_name=region, endpoint_url=endpoint_url, config=config)


__all__ = ["DEFAULT_POOL_SIZE", "aws_client"]
