"""Usage counters per tenant, hour and agent (``base``), one store per backend, and the
per-process recorder that buffers them (``recorder``). The DynamoDB store is
``shared.usage.dynamodb`` (imported only where used)."""

from shared.usage.base import HourUsage, UsageCounters, UsageDelta, hour_ceil, hour_of
from shared.usage.factory import build_usage_recorder
from shared.usage.memory import MemoryUsageCounters
from shared.usage.recorder import UsageRecorder

__all__ = [
    "HourUsage",
    "MemoryUsageCounters",
    "UsageCounters",
    "UsageDelta",
    "UsageRecorder",
    "build_usage_recorder",
    "hour_ceil",
    "hour_of",
]
