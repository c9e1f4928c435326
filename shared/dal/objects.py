"""Plain S3 objects a pipeline's function stages read and write (``StageContext``)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.dal import aws_client
from shared.errors import SwitchyardError


class ObjectStoreError(SwitchyardError):
    code = "object_store_error"


class S3Objects:
    def __init__(
        self, client: Any = None, *, region: str | None = None, endpoint_url: str | None = None
    ) -> None:
        self.client: Any = client or aws_client("s3", region=region, endpoint_url=endpoint_url)

    def read(self, bucket: str, key: str) -> bytes:
        try:
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"cannot read s3://{bucket}/{key}: {exc}") from exc
        return body

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"cannot write s3://{bucket}/{key}: {exc}") from exc
