"""The composition root: build the Services an entry point runs on, from Settings.

``backend="memory"`` for tests and single-process demos; ``"aws"`` for DynamoDB + S3 + SQS
(real AWS, or moto through AWS_ENDPOINT_URL). Heavy modules are imported only when chosen.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Literal

from shared.agents.registry import AgentRegistry
from shared.config import Settings
from shared.jobs.base import JobStore, Workflows
from shared.logic.service import CompletionHook, Services
from shared.pipelines.registry import PipelineRegistry
from shared.providers.base import Provider
from shared.runtime.observer import RunObserver
from shared.tenancy.base import ControlStore

if TYPE_CHECKING:
    from shared.ratelimit import RateLimitStore
    from shared.usage.recorder import UsageRecorder

Backend = Literal["memory", "aws"]


def build_services(
    settings: Settings,
    *,
    backend: Backend | None = None,
    registry: AgentRegistry | None = None,
    pipeline_registry: PipelineRegistry | None = None,
    secrets: Mapping[str, str] | None = None,
    on_complete: CompletionHook | None = None,
    owner: str | None = None,
    offline_latency_s: float | None = None,
    service_name: str | None = None,
) -> Services:
    """``service_name`` (e.g. "api", "worker") turns on Powertools logs, metrics and traces
    for the runs this process executes; without it the runtime reports nothing."""

    def make_provider() -> Provider:
        from shared.providers.factory import build_provider

        latency = settings.offline_latency_s if offline_latency_s is None else offline_latency_s
        return build_provider(settings, offline_latency_s=latency)

    jobs: JobStore
    workflows: Workflows
    if (backend or settings.backend) == "memory":
        from shared.jobs.memory import MemoryJobStore, MemoryWorkflows
        from shared.journal.memory import MemoryJournal
        from shared.queue.memory import MemoryQueue
        from shared.ratelimit.memory import MemoryRateLimitStore
        from shared.tenancy.memory import MemoryControlStore

        journal, control, queue = MemoryJournal(), MemoryControlStore(), MemoryQueue()
        jobs, workflows = MemoryJobStore(), MemoryWorkflows()
        rate_limits: RateLimitStore = MemoryRateLimitStore()
    else:
        from shared.dal.sqs import SqsRunQueue
        from shared.dal.stepfunctions import SfnWorkflows
        from shared.jobs.dynamodb import DynamoJobStore
        from shared.journal.dynamodb import DynamoJournal
        from shared.tenancy.dynamodb import DynamoControlStore

        journal = DynamoJournal.from_settings(settings)  # type: ignore[assignment]
        control = DynamoControlStore.from_settings(settings)  # type: ignore[assignment]
        queue = SqsRunQueue.from_settings(settings)  # type: ignore[assignment]
        from shared.ratelimit.dynamodb import DynamoRateLimitStore

        jobs = DynamoJobStore.from_settings(settings)
        workflows = SfnWorkflows.from_settings(settings)
        rate_limits = DynamoRateLimitStore.from_settings(settings)
    agents = registry or AgentRegistry.from_modules(settings.agent_modules)
    pipelines = pipeline_registry or PipelineRegistry.from_modules(settings.agent_modules)
    return Services(
        settings=settings,
        registry=agents,
        journal=journal,
        control=control,
        queue=queue,
        jobs=jobs,
        workflows=workflows,
        pipelines=pipelines,
        usage=_usage_recorder(settings, backend or settings.backend),
        rate_limits=rate_limits,
        make_provider=make_provider,
        secrets=secrets or {},
        on_complete=on_complete,
        owner=owner,
        observer=_observer(service_name),
    )


def _usage_recorder(settings: Settings, backend: Backend) -> UsageRecorder:
    from shared.usage.factory import build_usage_recorder

    return build_usage_recorder(settings, backend)


def _observer(service_name: str | None) -> RunObserver | None:
    if service_name is None:
        return None
    from shared.observability import PowertoolsObserver

    return PowertoolsObserver(service_name)


def load_settings(env: MutableMapping[str, str] | None = None) -> Settings:
    """Settings for a deployed entry point: secrets named by ARN are fetched first (and
    masked in every log line from then on), then the environment is read once."""
    from shared.dal.secrets import export_secrets
    from shared.observability import register_secret

    environ = os.environ if env is None else env
    export_secrets(environ, on_value=register_secret)
    return Settings.from_env(environ)


def build_control_store(settings: Settings) -> ControlStore:
    """Only the control store (API keys): what the authorizer and `keys` commands need."""
    if settings.backend == "memory":
        from shared.tenancy.memory import MemoryControlStore

        return MemoryControlStore()
    from shared.tenancy.dynamodb import DynamoControlStore

    return DynamoControlStore.from_settings(settings)
