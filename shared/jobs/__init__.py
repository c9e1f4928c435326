"""Jobs: the job store (job items and stage attempts) and the workflow engine's interface."""

from shared.jobs.base import ExecutionInfo, ExecutionStatus, JobStore, Workflows

__all__ = ["ExecutionInfo", "ExecutionStatus", "JobStore", "Workflows"]
