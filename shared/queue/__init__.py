"""The runs queue: one interface, an in-memory reference and SQS (shared/dal/sqs.py)."""

from shared.queue.base import QueueMessage, RunMessage, RunQueue
from shared.queue.memory import MemoryQueue

__all__ = ["MemoryQueue", "QueueMessage", "RunMessage", "RunQueue"]
