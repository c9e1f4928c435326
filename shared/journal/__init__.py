"""The step journal: one interface, an in-memory reference and a DynamoDB+S3 backend."""

from shared.journal.base import Journal, RunPatch
from shared.journal.memory import MemoryJournal

__all__ = ["Journal", "MemoryJournal", "RunPatch"]
