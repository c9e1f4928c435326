"""Content-addressed blobs in S3: payloads too big for a DynamoDB item.

A blob's key is ``{prefix}{sha256 of its bytes}``, so a key names exactly one content: writing
the same bytes twice is harmless (and refreshes the object's age for lifecycle expiry), and a
reader can check what it got against the key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.dal import DEFAULT_POOL_SIZE, aws_client
from shared.errors import JournalError

DEFAULT_PREFIX = "blobs/"


class BlobNotFoundError(JournalError):
    code = "blob_not_found"


class BlobStore:
    def __init__(
        self,
        bucket: str,
        client: Any = None,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_pool_connections: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client: Any = client or aws_client(
            "s3",
            region=region,
            endpoint_url=endpoint_url,
            max_pool_connections=max_pool_connections,
        )

    def key_for(self, data: bytes) -> str:
        return f"{self.prefix}{hashlib.sha256(data).hexdigest()}"

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its content key."""
        key = self.key_for(data)
        self._call("PutObject", key, Bucket=self.bucket, Key=key, Body=data)
        return key

    def get(self, key: str) -> bytes:
        """The bytes stored under ``key``, checked against the content hash in the key."""
        response = self._call("GetObject", key, Bucket=self.bucket, Key=key)
        try:
            data: bytes = response["Body"].read()
        except BotoCoreError as exc:
            raise JournalError(f"S3 read of {key} failed: {exc}") from exc
        if key.startswith(self.prefix) and self.key_for(data) != key:
            raise JournalError(f"S3 object {key} does not match its content hash")
        return data

    def exists(self, key: str) -> bool:
        try:
            self._call("HeadObject", key, Bucket=self.bucket, Key=key)
        except BlobNotFoundError:
            return False
        return True

    def _call(self, operation: str, key: str, **kwargs: Any) -> dict[str, Any]:
        method = {
            "PutObject": self.client.put_object,
            "GetObject": self.client.get_object,
            "HeadObject": self.client.head_object,
        }[operation]
        try:
            response: dict[str, Any] = method(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise BlobNotFoundError(
                    f"no blob {key} in bucket {self.bucket}", details={"key": key}
                ) from exc
            raise JournalError(
                f"S3 {operation} of {key} in {self.bucket} failed: {code}",
                details={"operation": operation, "aws_code": code, "key": key},
            ) from exc
        except BotoCoreError as exc:
            raise JournalError(f"S3 {operation} of {key} failed: {exc}") from exc
        return response


__all__ = ["DEFAULT_PREFIX", "BlobNotFoundError", "BlobStore"]
