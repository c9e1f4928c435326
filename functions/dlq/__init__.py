"""The dead-letter function: marks dead-lettered runs failed and keeps their messages in the
DLQ for redrive (``handler.handler``; see ``shared/logic/dlq.py`` and docs/operations.md)."""
