"""Tenants, API keys, idempotency records and threads: the control-plane stores."""

from shared.tenancy.base import ApiKeyRecord, ControlStore, IdempotencyRecord, ThreadRecord
from shared.tenancy.memory import MemoryControlStore

__all__ = [
    "ApiKeyRecord",
    "ControlStore",
    "IdempotencyRecord",
    "MemoryControlStore",
    "ThreadRecord",
]
