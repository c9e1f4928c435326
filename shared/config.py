"""Settings, read from the environment once into a validated object.

Nothing reads ``os.environ`` at import time; entry points call ``Settings.from_env()`` and
pass the result (or the pieces they need) down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from shared.errors import ConfigError

ProviderName = Literal["anthropic", "offline"]
BackendName = Literal["aws", "memory"]


class RateLimitSetting(BaseModel):
    """A provider's limits for one model (or the default), per ``rate_limit_period_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = Field(gt=0)
    input_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)


class PriceSetting(BaseModel):
    """USD per million tokens for one model family (a price-table override)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_read: float | None = Field(default=None, ge=0)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent_modules: tuple[str, ...] = ()
    provider: ProviderName = "offline"
    # The offline model's delay per call (the local stack slows it so runs can be watched).
    offline_latency_s: float = Field(default=0.0, ge=0, le=60)
    # Where state lives: DynamoDB + S3 + SQS (real, or moto via AWS_ENDPOINT_URL), or memory.
    backend: BackendName = "aws"
    table_name: str = "switchyard"
    bucket_name: str = "switchyard-overflow"
    region: str = "us-east-1"
    lease_ttl_s: float = Field(default=30.0, gt=0)
    overflow_threshold_bytes: int = Field(default=350_000, gt=0, le=390_000)
    retention_days: int = Field(default=30, ge=1)
    log_level: str = "INFO"
    # The sync shape: a run is handed to the async track at the first step boundary past the
    # soft budget, and cut at the hard one (both below API Gateway's 30 s limit).
    sync_soft_budget_s: float = Field(default=20.0, gt=0)
    sync_hard_budget_s: float = Field(default=26.0, gt=0, le=28.0)
    queue_url: str = ""
    dlq_url: str = ""
    # Triggers (shared/logic/triggers.py): rules from a JSON file, or inline JSON; not both.
    triggers_file: str = ""
    triggers_json: str = ""
    # Completion webhooks (shared/logic/webhooks.py). The secret signs every delivery; it is
    # a SecretStr so it never shows in a repr, a log line or an error.
    webhook_secret: SecretStr = SecretStr("")
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_base_delay_s: float = Field(default=1.0, ge=0, le=300)
    webhook_max_delay_s: float = Field(default=60.0, ge=0, le=900)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    # Deliver to loopback/private/link-local addresses (local development only).
    webhook_allow_private: bool = False
    # The async worker (workers/): runs held at once per process, the long poll, the SIGTERM
    # drain (below ECS's 30 s stop timeout), the health file ECS's health check reads, and
    # how long a run waiting for its thread's turn waits before it is tried again.
    worker_concurrency: int = Field(default=64, ge=1, le=10_000)
    worker_receive_batch: int = Field(default=10, ge=1, le=10)
    worker_receive_wait_s: float = Field(default=20.0, ge=0, le=20)
    worker_drain_timeout_s: float = Field(default=25.0, ge=0)
    worker_health_file: str = "/tmp/switchyard-worker.health"  # noqa: S108 (a liveness stamp)
    worker_health_max_age_s: float = Field(default=60.0, gt=0)
    worker_thread_backoff_s: int = Field(default=5, ge=0, le=900)
    # Pipelines (shared/pipelines): the deployed state machine of each, by pipeline name.
    pipeline_arns: dict[str, str] = Field(default_factory=dict)
    # The provider gateway (shared/gateway): limits by model-name prefix (longest wins,
    # "default" for the rest) per ``rate_limit_period_s``; a model without a configured limit
    # is limited by what the provider's rate-limit headers say once it has answered.
    rate_limits: dict[str, RateLimitSetting] = Field(default_factory=dict)
    rate_limit_period_s: float = Field(default=60.0, gt=0, le=3600)
    # Up to this many calls' worth reserved in one write while a bucket is more than half
    # full (1, the default: a write per call). Fewer writes, but the provider counts a
    # reserved call when it is made, up to a twelfth of the window later: at the start of a
    # burst several processes can send more than the limit (a few 429s, waited out). For
    # keys used far below their limits.
    rate_limit_prefetch: int = Field(default=1, ge=1, le=64)
    # A worker stops taking new runs while a model call would wait longer than this.
    backpressure_wait_s: float = Field(default=5.0, ge=0)
    # Calls to one model that fail with a retryable error (5xx, timeouts) before the gateway
    # falls back to the next model of the agent's chain (529 overloaded falls back at once).
    provider_attempts: int = Field(default=3, ge=1, le=10)
    # Per-tenant daily budgets in USD (UTC days), by tenant; "*" for every other tenant.
    tenant_daily_budget_usd: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # How often a process writes its usage counters (and re-reads a tenant's day total).
    usage_flush_s: float = Field(default=5.0, gt=0, le=300)
    # Price-table overrides by model-name prefix (shared/providers/pricing.py has the list).
    prices: dict[str, PriceSetting] = Field(default_factory=dict)

    def daily_budget_usd(self, tenant: str) -> float | None:
        """The tenant's daily budget: its own, else the ``*`` one, else none."""
        budgets = self.tenant_daily_budget_usd
        return budgets.get(tenant, budgets.get("*"))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        modules = env.get("SWITCHYARD_AGENT_MODULES", "")
        raw["agent_modules"] = tuple(m.strip() for m in modules.split(",") if m.strip())
        # The real provider whenever the SDK would find a key; the offline model otherwise.
        default_provider = "anthropic" if env.get("ANTHROPIC_API_KEY") else "offline"
        raw["provider"] = env.get("SWITCHYARD_PROVIDER") or default_provider
        mapping = {
            "table_name": "SWITCHYARD_TABLE",
            "bucket_name": "SWITCHYARD_BUCKET",
            "region": "AWS_REGION",
            "lease_ttl_s": "SWITCHYARD_LEASE_TTL_S",
            "offline_latency_s": "SWITCHYARD_OFFLINE_LATENCY_S",
            "overflow_threshold_bytes": "SWITCHYARD_OVERFLOW_BYTES",
            "retention_days": "SWITCHYARD_RETENTION_DAYS",
            "log_level": "SWITCHYARD_LOG_LEVEL",
            "backend": "SWITCHYARD_BACKEND",
            "sync_soft_budget_s": "SWITCHYARD_SYNC_SOFT_BUDGET_S",
            "sync_hard_budget_s": "SWITCHYARD_SYNC_HARD_BUDGET_S",
            "queue_url": "SWITCHYARD_QUEUE_URL",
            "dlq_url": "SWITCHYARD_DLQ_URL",
            "triggers_file": "SWITCHYARD_TRIGGERS_FILE",
            "triggers_json": "SWITCHYARD_TRIGGERS",
            "webhook_secret": "SWITCHYARD_WEBHOOK_SECRET",
            "webhook_attempts": "SWITCHYARD_WEBHOOK_ATTEMPTS",
            "webhook_base_delay_s": "SWITCHYARD_WEBHOOK_BASE_DELAY_S",
            "webhook_max_delay_s": "SWITCHYARD_WEBHOOK_MAX_DELAY_S",
            "webhook_timeout_s": "SWITCHYARD_WEBHOOK_TIMEOUT_S",
            "webhook_allow_private": "SWITCHYARD_WEBHOOK_ALLOW_PRIVATE",
            "worker_concurrency": "SWITCHYARD_WORKER_CONCURRENCY",
            "worker_receive_batch": "SWITCHYARD_WORKER_RECEIVE_BATCH",
            "worker_receive_wait_s": "SWITCHYARD_WORKER_RECEIVE_WAIT_S",
            "worker_drain_timeout_s": "SWITCHYARD_WORKER_DRAIN_TIMEOUT_S",
            "worker_health_file": "SWITCHYARD_WORKER_HEALTH_FILE",
            "worker_health_max_age_s": "SWITCHYARD_WORKER_HEALTH_MAX_AGE_S",
            "worker_thread_backoff_s": "SWITCHYARD_WORKER_THREAD_BACKOFF_S",
            "rate_limit_period_s": "SWITCHYARD_RATE_LIMIT_PERIOD_S",
            "rate_limit_prefetch": "SWITCHYARD_RATE_LIMIT_PREFETCH",
            "backpressure_wait_s": "SWITCHYARD_BACKPRESSURE_WAIT_S",
            "provider_attempts": "SWITCHYARD_PROVIDER_ATTEMPTS",
            "usage_flush_s": "SWITCHYARD_USAGE_FLUSH_S",
        }
        json_settings = {
            "pipeline_arns": "SWITCHYARD_PIPELINES",
            "rate_limits": "SWITCHYARD_RATE_LIMITS",
            "tenant_daily_budget_usd": "SWITCHYARD_TENANT_DAILY_BUDGETS",
            "prices": "SWITCHYARD_PRICES",
        }
        for field_name, var in json_settings.items():
            if env.get(var):
                try:
                    raw[field_name] = json.loads(env[var])
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{var} is not JSON: {exc.msg}") from exc
        for field_name, var in mapping.items():
            if env.get(var):
                raw[field_name] = env[var]
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid settings: {problems}") from exc
