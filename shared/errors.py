"""One base exception, one subclass per subsystem.

Foreign errors (boto3, anthropic, pydantic) are wrapped with ``raise ... from exc`` at the
boundary where they are caught, so callers only ever handle ``SwitchyardError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.models.messages import RateLimitInfo


class SwitchyardError(Exception):
    """Base of every error Switchyard raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(SwitchyardError):
    code = "config_error"


class AgentError(SwitchyardError):
    """Bad agent or tool definition, or an unknown agent name."""

    code = "agent_error"


class UnknownAgentError(AgentError):
    code = "unknown_agent"


class ToolInputError(AgentError):
    """The model sent a tool input that does not validate against the tool's model."""

    code = "tool_input_invalid"


class ProviderError(SwitchyardError):
    """A model provider failed after its own retries."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        rate_limits: RateLimitInfo | None = None,
    ) -> None:
        super().__init__(message, details={"status": status} if status is not None else None)
        self.status = status
        self.retryable = retryable
        # What the provider asked for (``retry-after`` / ``retry-after-ms``), when it said.
        self.retry_after_s = retry_after_s
        # Its rate-limit headers on the error (a 429 says which bucket is empty).
        self.rate_limits = rate_limits


class ProviderRateLimitedError(ProviderError):
    code = "provider_rate_limited"


class ProviderOverloadedError(ProviderError):
    code = "provider_overloaded"


class RateLimitError(SwitchyardError):
    """The shared rate-limit buckets could not be read or written."""

    code = "rate_limit_store_error"


class UsageStoreError(SwitchyardError):
    """The usage counters could not be read or written."""

    code = "usage_store_error"


class JournalError(SwitchyardError):
    """Storage failure of the step journal."""

    code = "journal_error"


class RunNotFoundError(JournalError):
    code = "run_not_found"


class RunExistsError(JournalError):
    code = "run_exists"


class RunStateConflictError(JournalError):
    """A conditional update expected the run in another status (it moved on meanwhile)."""

    code = "invalid_state"


class JournalConflictError(JournalError):
    """A conditional append lost: another writer already journaled that sequence number.

    The writer that gets this has been fenced off and must stop working on the run.
    """

    code = "journal_conflict"


class LeaseError(JournalError):
    code = "lease_error"


class LeaseHeldError(LeaseError):
    """Another owner holds an unexpired lease on the run."""

    code = "lease_held"


class LeaseLostError(LeaseError):
    """Our lease expired and another owner took the run (fencing counter moved on)."""

    code = "lease_lost"


class RuntimeStateError(SwitchyardError):
    """The run is in a state that does not allow the requested action."""

    code = "invalid_state"


class QueueError(SwitchyardError):
    code = "queue_error"


class AuthError(SwitchyardError):
    """Missing, malformed, unknown or revoked API key."""

    code = "unauthorized"


class ConflictError(SwitchyardError):
    """The request conflicts with the current state (idempotency key reuse, busy thread)."""

    code = "conflict"


class ValidationFailedError(SwitchyardError):
    """A request that parses but is not acceptable (unknown field values, bad cursor...)."""

    code = "invalid_request"


class NotFoundError(SwitchyardError):
    """Not found, or not visible to the caller's tenant (the two are indistinguishable)."""

    code = "not_found"


class PipelineError(SwitchyardError):
    """A pipeline definition is invalid, or a pipeline/job operation cannot be done."""

    code = "pipeline_error"


class UnknownPipelineError(PipelineError):
    code = "unknown_pipeline"


class JobStoreError(SwitchyardError):
    """The job store (job items and stage attempts) failed."""

    code = "job_store_error"


class JobNotFoundError(JobStoreError):
    code = "job_not_found"


class JobExistsError(JobStoreError):
    code = "job_exists"


class WorkflowError(SwitchyardError):
    """Step Functions (or the local stand-in) refused or failed a call."""

    code = "workflow_error"


class TaskTokenClosedError(WorkflowError):
    """The task token was already answered, timed out, or its execution ended."""

    code = "task_token_closed"


class JobStateConflictError(JobStoreError):
    """An attempt is not in the status a conditional update expected (e.g. a gate that was
    already decided)."""

    code = "invalid_state"
