"""The usage recorder a process runs on, per backend."""

from __future__ import annotations

from typing import Literal

from shared.config import Settings
from shared.usage.base import UsageCounters
from shared.usage.memory import MemoryUsageCounters
from shared.usage.recorder import UsageRecorder


def build_usage_recorder(settings: Settings, backend: Literal["memory", "aws"]) -> UsageRecorder:
    """``memory``: counters of this process only; ``aws``: the deployment's table (imported
    only then)."""
    counters: UsageCounters
    if backend == "memory":
        counters = MemoryUsageCounters()
    else:
        from shared.usage.dynamodb import DynamoUsageCounters

        counters = DynamoUsageCounters.from_settings(settings)
    return UsageRecorder(counters, flush_s=settings.usage_flush_s)
