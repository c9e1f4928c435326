"""Logs, metrics and traces on Powertools, the same in every function and in the worker.

- Logs are structured JSON. Run fields (run_id, tenant, agent, step) are attached per asyncio
  task with Powertools' ContextVar-backed ``thread_safe_append_keys``, so a worker holding
  hundreds of runs never mixes one run's fields into another's lines.
- A redaction filter masks registered secret values and anything shaped like an API key
  (``sy_…``, ``sk-ant-…``, ``Bearer …``) in every record, message and field alike.
- Metrics go out as EMF (CloudWatch embedded metric format) under one namespace.
- Traces: ``span(name, **annotations)`` opens an X-Ray subsegment when tracing is on (in
  Lambda or ECS with the daemon), and costs nothing when it is off (tests, local stack).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from shared.models.run import Run, Usage

NAMESPACE = "Switchyard"
MASK = "[REDACTED]"
_KEY_SHAPES = re.compile(
    r"(sy_[a-z0-9]{16}_[A-Za-z0-9_-]{20,})|(sk-ant-[A-Za-z0-9_-]{8,})|(Bearer\s+[A-Za-z0-9._~+/=-]{8,})"
)

_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Mask ``value`` in every log line from now on (values under 6 characters are ignored)."""
    if len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Runs before formatting: scrubs the message, its args and the extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is not None:
            # Exception messages can carry credentials (a provider echoing a key): format the
            # traceback here, scrub it, and hand the formatter text instead of the exception.
            record.exception = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exception_name = record.exc_info[0].__name__
            record.exc_info = None
            record.exc_text = None
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.args:
            record.args = (
                tuple(_scrub(a) for a in record.args)
                if isinstance(record.args, tuple)
                else _scrub(record.args)
            )
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and isinstance(value, str | dict | list):
                setattr(record, name, _scrub(value))
        return True


_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})))

_loggers: dict[str, Logger] = {}


def get_logger(service: str, *, level: str | None = None) -> Logger:
    """One Powertools logger per service name, with the redaction filter attached."""
    logger = _loggers.get(service)
    if logger is None:
        logger = Logger(service=service, level=level or os.environ.get("SWITCHYARD_LOG_LEVEL"))
        for handler in logger.handlers:
            handler.addFilter(RedactingFilter())
        logger.addFilter(RedactingFilter())
        _loggers[service] = logger
    return logger


def bind_run(logger: Logger, *, run_id: str, tenant: str, agent: str, step: int = 0) -> None:
    """Attach the run's fields to every line logged from the current task from now on."""
    logger.thread_safe_append_keys(run_id=run_id, tenant=tenant, agent=agent, step=step)


def bind_step(logger: Logger, step: int) -> None:
    logger.thread_safe_append_keys(step=step)


def new_metrics(service: str) -> Metrics:
    return Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service
    )


def count(metrics: Metrics, name: str, *, value: float = 1, **dimensions: str) -> None:
    """Emit one metric now, with its own dimensions (an EMF line of its own)."""
    with metrics_single(metrics, name, MetricUnit.Count, value, dimensions):
        pass


def milliseconds(metrics: Metrics, name: str, value: float, **dimensions: str) -> None:
    with metrics_single(metrics, name, MetricUnit.Milliseconds, value, dimensions):
        pass


@contextlib.contextmanager
def metrics_single(
    metrics: Metrics, name: str, unit: MetricUnit, value: float, dimensions: dict[str, str]
) -> Iterator[None]:
    with single_metric(name=name, unit=unit, value=value, namespace=metrics.namespace) as m:
        for key, dim in dimensions.items():
            m.add_dimension(name=key, value=dim)
        yield


def emit_emf(
    namespace: str,
    metrics: dict[str, tuple[MetricUnit, float]],
    *,
    dimensions: dict[str, str],
    dimension_sets: list[list[str]],
) -> None:
    """One EMF document with several dimension sets (Powertools' metrics carry one set),
    so CloudWatch aggregates the same values by each set without a second line."""
    document: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(datetime.now(UTC).timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": dimension_sets,
                    "Metrics": [
                        {"Name": name, "Unit": unit.value} for name, (unit, _) in metrics.items()
                    ],
                }
            ],
        },
        **dimensions,
        **{name: value for name, (_, value) in metrics.items()},
    }
    print(json.dumps(document, separators=(",", ":")), flush=True)


class Spans:
    """Trace subsegments around model calls, tool calls and journal writes."""

    def __init__(self, service: str, *, enabled: bool | None = None) -> None:
        disabled = os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")
        in_aws = bool(
            os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
            or os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
        )
        self.enabled = (in_aws and not disabled) if enabled is None else enabled
        self._tracer: Any = None
        if self.enabled:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=service)

    @contextlib.contextmanager
    def span(self, name: str, **annotations: str | int | float | bool) -> Iterator[None]:
        if self._tracer is None:
            yield
            return
        with self._tracer.provider.in_subsegment(name) as subsegment:
            for key, value in annotations.items():
                subsegment.put_annotation(key=key, value=value)
            yield


NO_SPANS = Spans("switchyard", enabled=False)


class PowertoolsObserver:
    """The runtime's observer: one log line and a few EMF metrics per run event.

    Every line of a run carries run_id, tenant, agent and step (bound per asyncio task).
    """

    def __init__(self, service: str, *, spans: Spans | None = None) -> None:
        self.service = service
        self.logger = get_logger(service)
        self.metrics = new_metrics(service)
        self.spans = spans or Spans(service)

    def run_started(self, run: Run, *, step: int, resumed: bool) -> None:
        bind_run(self.logger, run_id=run.run_id, tenant=run.tenant, agent=run.agent, step=step)
        self.logger.info("run resumed" if resumed else "run started")
        count(self.metrics, "RunsStarted", agent=run.agent)
        if not resumed:
            wait_ms = (datetime.now(UTC) - run.created_at).total_seconds() * 1000
            milliseconds(self.metrics, "QueueWait", wait_ms, agent=run.agent)

    def step_completed(
        self, run: Run, *, step: int, model: str, latency_ms: float, usage: Usage
    ) -> None:
        bind_step(self.logger, step)
        self.logger.info(
            "step completed",
            extra={
                "model": model,
                "latency_ms": round(latency_ms, 1),
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
            },
        )
        count(self.metrics, "Steps", agent=run.agent)
        milliseconds(self.metrics, "StepLatency", latency_ms, agent=run.agent)
        # Tokens and cost, by agent and by tenant: one EMF document, two dimension sets.
        emit_emf(
            self.metrics.namespace,
            {
                "InputTokens": (MetricUnit.Count, usage.input_tokens),
                "OutputTokens": (MetricUnit.Count, usage.output_tokens),
                "CacheReadInputTokens": (MetricUnit.Count, usage.cache_read_input_tokens),
                "CacheCreationInputTokens": (
                    MetricUnit.Count,
                    usage.cache_creation_input_tokens,
                ),
                "CostUsd": (MetricUnit.NoUnit, usage.cost_usd),
            },
            dimensions={"service": self.service, "agent": run.agent, "tenant": run.tenant},
            dimension_sets=[["service", "agent"], ["service", "tenant"]],
        )

    def tool_completed(
        self, run: Run, *, step: int, name: str, latency_ms: float, is_error: bool
    ) -> None:
        self.logger.info(
            "tool completed",
            extra={"tool": name, "latency_ms": round(latency_ms, 1), "is_error": is_error},
        )

    def run_stopped(self, run: Run) -> None:
        self.logger.info(
            "run stopped",
            extra={"status": run.status.value, "error_code": run.error.code if run.error else None},
        )
        if run.status.is_terminal:
            metric = {"succeeded": "RunsSucceeded", "failed": "RunsFailed"}.get(
                run.status.value, "RunsCancelled"
            )
            count(self.metrics, metric, agent=run.agent)
        self.logger.thread_safe_remove_keys(["run_id", "tenant", "agent", "step"])

    def span(
        self, name: str, **annotations: str | int | float | bool
    ) -> contextlib.AbstractContextManager[None]:
        return self.spans.span(name, **annotations)

    def throttled(self, model: str, wait_s: float, reason: str) -> None:
        self.logger.info(
            "model call waits for rate limits",
            extra={"model": model, "wait_s": round(wait_s, 3), "reason": reason},
        )
        milliseconds(self.metrics, "RateLimitWait", wait_s * 1000, model=model, reason=reason)
        if reason == "429":
            count(self.metrics, "ProviderRateLimited", model=model)

    def fell_back(self, model: str, to_model: str, reason: str) -> None:
        self.logger.warning(
            "model failed over", extra={"model": model, "to_model": to_model, "reason": reason}
        )
        count(self.metrics, "ModelFallbacks", model=model, reason=reason)
