"""Stack settings: one validated, frozen object the whole CDK app is built from.

Where they come from (later wins):

1. the defaults below (documented on each field);
2. a JSON file named by the context key ``switchyard:config``
   (``cdk synth -c switchyard:config=deploy/prod.json``; relative to the working directory);
3. the context key ``switchyard:settings``: a JSON object (or a string holding one), merged
   over the file one level deep (so ``{"worker": {"max_tasks": 20}}`` keeps the file's other
   worker settings);
4. the context key ``switchyard:stage`` (a shortcut for ``{"stage": ...}``).

An invalid document fails the synth with a message naming the field. Trigger rules use the
exact format ``shared/logic/triggers.py`` parses (docs/operations.md, "Triggers"), and are
validated by that same code at synth time.

Example file::

    {
      "stage": "prod",
      "alarm_email": "oncall@example.com",
      "removal_policy": "retain",
      "worker": {"min_tasks": 1, "max_tasks": 20, "spot": true},
      "functions": {"api": {"provisioned_concurrency": 2}},
      "gateway": {
        "rate_limits": {"default": {"requests": 50, "input_tokens": 40000,
                                    "output_tokens": 8000}},
        "tenant_daily_budget_usd": {"*": 20, "acme": 200}
      },
      "triggers": {
        "s3": [{"name": "invoices", "prefix": "invoices/", "suffix": ".pdf",
                "agent": "researcher"}],
        "schedules": [{"name": "nightly-digest", "expression": "cron(0 6 * * ? *)",
                       "agent": "ops-assistant", "input": "Summarise yesterday's incidents"}]
      }
    }
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra import constants as c
from shared.config import PriceSetting, RateLimitSetting, Settings
from shared.errors import SwitchyardError
from shared.logic.triggers import S3Rule, TriggerRules, parse_triggers

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS: tuple[int, ...] = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip


class ConfigError(ValueError):
    """The stack settings are invalid (the synth stops with this message)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionSettings(_Model):
    """One Lambda function. Memory also scales its CPU share."""

    memory_mb: int = Field(default=512, ge=128, le=10_240)
    timeout_s: int = Field(default=30, ge=1, le=900)
    # Caps the function's concurrency (and guarantees it); None leaves it unreserved.
    reserved_concurrency: int | None = Field(default=None, ge=0)
    # Instances kept initialized on the `live` alias (billed while idle). Not with SnapStart.
    provisioned_concurrency: int = Field(default=0, ge=0)
    # SnapStart on published versions (Python 3.12+); None follows the stack's `snap_start`.
    snap_start: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FunctionSettings:
        if self.reserved_concurrency is not None and (
            self.provisioned_concurrency > self.reserved_concurrency
        ):
            raise ValueError("provisioned_concurrency cannot exceed reserved_concurrency")
        return self


def _api_defaults() -> FunctionSettings:
    # The gateway gives up at 30 s; sync runs stop at SWITCHYARD_SYNC_HARD_BUDGET_S (26 s).
    return FunctionSettings(memory_mb=1024, timeout_s=30)


def _authorizer_defaults() -> FunctionSettings:
    return FunctionSettings(memory_mb=512, timeout_s=10)


def _trigger_defaults() -> FunctionSettings:
    # Async rules only enqueue; sync/auto rules run the agent inline within the sync budget.
    return FunctionSettings(memory_mb=1024, timeout_s=60)


def _dlq_defaults() -> FunctionSettings:
    return FunctionSettings(memory_mb=512, timeout_s=60)


def _pipeline_defaults() -> FunctionSettings:
    # Function stages (a pipeline's own Python, e.g. parsing a document) and approval gates.
    # A function stage's timeout_s may not exceed this timeout (checked at synth).
    return FunctionSettings(memory_mb=1024, timeout_s=60)


class FunctionsSettings(_Model):
    api: FunctionSettings = Field(default_factory=_api_defaults)
    authorizer: FunctionSettings = Field(default_factory=_authorizer_defaults)
    trigger_s3: FunctionSettings = Field(default_factory=_trigger_defaults)
    trigger_schedule: FunctionSettings = Field(default_factory=_trigger_defaults)
    dlq: FunctionSettings = Field(default_factory=_dlq_defaults)
    pipeline: FunctionSettings = Field(default_factory=_pipeline_defaults)


# Fargate task sizes: cpu units → allowed memory (MiB) range and step.
_FARGATE_SIZES: dict[int, tuple[int, int, int]] = {
    256: (512, 2048, 512),
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
    8192: (16384, 61440, 4096),
    16384: (32768, 122880, 8192),
}


class WorkerSettings(_Model):
    """The Fargate worker service (arm64) and how it scales."""

    cpu: int = 512
    memory_mb: int = 1024
    # 1 keeps a worker warm for async runs; 0 costs nothing idle (the backlog policy starts a
    # task when a message waits, about 2-3 minutes for the first run).
    min_tasks: int = Field(default=1, ge=0)
    max_tasks: int = Field(default=10, ge=1)
    # Fargate Spot for part of the tasks (interruptions are a SIGTERM: runs hand back and resume).
    spot: bool = False
    spot_weight: int = Field(default=3, ge=0, le=1000)  # Spot tasks per on-demand task
    on_demand_base: int = Field(default=0, ge=0, le=100_000)  # tasks always on-demand
    # Runs one process executes at once (SWITCHYARD_WORKER_CONCURRENCY).
    concurrency: int = Field(default=64, ge=1, le=10_000)
    # SIGTERM drain (SWITCHYARD_WORKER_DRAIN_TIMEOUT_S) < stop timeout (ECS SIGKILLs after it).
    drain_timeout_s: int = Field(default=25, ge=0, le=110)
    stop_timeout_s: int = Field(default=30, ge=2, le=120)
    # Target tracking: in-flight + waiting messages per task over concurrency.
    target_utilization: float = Field(default=0.75, gt=0, le=1)
    # Step scaling out when messages wait unreceived: visible messages per running task.
    backlog_per_task: float = Field(default=1.0, gt=0)
    # Step scaling out when the oldest message (while any waits) is older than this.
    scale_out_age_s: int = Field(default=120, ge=60)
    scale_out_cooldown_s: int = Field(default=60, ge=0)
    scale_in_cooldown_s: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        size = _FARGATE_SIZES.get(self.cpu)
        if size is None:
            raise ValueError(f"cpu must be one of {sorted(_FARGATE_SIZES)}")
        low, high, step = size
        if not (low <= self.memory_mb <= high and (self.memory_mb - low) % step == 0):
            raise ValueError(
                f"memory_mb {self.memory_mb} is not a Fargate size for cpu {self.cpu} "
                f"({low}-{high} in steps of {step})"
            )
        if self.min_tasks > self.max_tasks:
            raise ValueError("min_tasks cannot exceed max_tasks")
        if self.drain_timeout_s >= self.stop_timeout_s:
            raise ValueError("drain_timeout_s must be below stop_timeout_s")
        return self


class NetworkSettings(_Model):
    """The workers' VPC.

    ``public`` (default): two AZs, public subnets only, no NAT gateway; tasks get a public IP
    and a security group without any ingress. Nothing listens, tasks only call out (SQS,
    DynamoDB, S3, Secrets Manager, the Anthropic API), and idle cost is zero (a NAT gateway
    costs about 32 USD a month each). ``private``: tasks in private subnets behind
    ``nat_gateways`` NAT gateways, no public IPs.
    """

    mode: Literal["public", "private"] = "public"
    max_azs: int = Field(default=2, ge=1, le=6)
    nat_gateways: int = Field(default=1, ge=1, le=6)
    # VPC flow logs of rejected traffic (cheap: only what the security group drops).
    flow_logs: bool = True


class ApiSettings(_Model):
    throttle_rate: float = Field(default=100.0, gt=0)  # requests per second, stage default
    throttle_burst: int = Field(default=200, ge=0)
    # Authorizer result cache by Authorization header. 0 = off: a revoked key stops at once.
    authorizer_cache_ttl_s: int = Field(default=0, ge=0, le=3600)


class QueueSettings(_Model):
    # Receives before the runs queue moves a message to the transit "failed" queue.
    max_receive_count: int = Field(default=5, ge=1, le=1000)
    # Receives before the transit queue parks a message in the DLQ unmarked.
    failed_max_receive_count: int = Field(default=5, ge=1, le=1000)
    runs_retention_days: int = Field(default=14, ge=1, le=14)
    dlq_retention_days: int = Field(default=14, ge=1, le=14)
    # Short, so a redrive right after a listing sees every message (docs/operations.md).
    dlq_visibility_timeout_s: int = Field(default=5, ge=0, le=43_200)
    # Receives before the trigger queue parks a poison notification in its DLQ.
    trigger_max_receive_count: int = Field(default=3, ge=1, le=1000)


class GatewaySettings(_Model):
    """The provider gateway's deployment settings (docs/operations.md, "The provider gateway
    in a deployment"). Validated with the models ``shared/config.py`` parses the variables
    with, and emitted, as compact JSON, on the processes that call models only: the API
    function (sync runs) and the worker. A setting left unset sets no variable (the code's
    default applies)."""

    # SWITCHYARD_RATE_LIMITS: model-name prefix (longest wins) or "default" -> requests,
    # input_tokens and output_tokens per `rate_limit_period_s`. The provider's own rate-limit
    # headers tighten these once it has answered; they never loosen them.
    rate_limits: dict[str, RateLimitSetting] = Field(default_factory=dict)
    # SWITCHYARD_RATE_LIMIT_PERIOD_S (the code's default: 60).
    rate_limit_period_s: float | None = Field(default=None, gt=0, le=3600)
    # SWITCHYARD_TENANT_DAILY_BUDGETS: tenant (or "*" for every other tenant) -> USD per UTC day.
    tenant_daily_budget_usd: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    # SWITCHYARD_PRICES: model-name prefix -> USD per million tokens (overrides the price table).
    prices: dict[str, PriceSetting] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys(self) -> GatewaySettings:
        for name in ("rate_limits", "tenant_daily_budget_usd", "prices"):
            if any(not key.strip() for key in getattr(self, name)):
                raise ValueError(f"{name}: keys cannot be empty")
        return self

    def environment(self) -> dict[str, str]:
        """The variables ``shared.config.Settings.from_env`` reads; only the ones set."""
        env: dict[str, str] = {}
        if self.rate_limits:
            env[c.ENV_RATE_LIMITS] = _compact(
                {k: v.model_dump() for k, v in self.rate_limits.items()}
            )
        if self.rate_limit_period_s is not None:
            env[c.ENV_RATE_LIMIT_PERIOD] = _number(self.rate_limit_period_s)
        if self.tenant_daily_budget_usd:
            env[c.ENV_TENANT_DAILY_BUDGETS] = _compact(self.tenant_daily_budget_usd)
        if self.prices:
            env[c.ENV_PRICES] = _compact(
                {k: v.model_dump(exclude_none=True) for k, v in self.prices.items()}
            )
        return env


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class MonitoringSettings(_Model):
    dashboard: bool = True
    # Alarm when the oldest runs-queue message, while messages wait, is older than this.
    oldest_message_alarm_s: int = Field(default=900, ge=60)
    # Alarm when API 5xx responses exceed this share of requests (percent, 5-minute periods).
    api_5xx_percent: float = Field(default=5.0, gt=0, le=100)
    # Alarm when the model provider answers more than this many 429s in 5 minutes (every
    # process and model together). The gateway shares its buckets, so a steady stream means the
    # limits are above what the key gets (another system shares it, or `gateway.rate_limits`
    # is set too high); 0 alarms on any 429.
    provider_429_alarm: int = Field(default=10, ge=0)


class StackSettings(_Model):
    # Lowercase, short: it names the stack (Switchyard-<stage>) and physical resources.
    stage: str = Field(default="dev", pattern=r"^[a-z][a-z0-9-]{0,11}$")
    account: str | None = Field(default=None, pattern=r"^\d{12}$")  # else the CLI's default
    region: str | None = None
    # What happens to the table, the buckets, the secrets and the log groups when the stack
    # is deleted. `retain` also turns on the table's deletion protection.
    removal_policy: Literal["retain", "destroy"] = "retain"
    # SWITCHYARD_PROVIDER: the real Anthropic API, or the deterministic offline model.
    provider: Literal["anthropic", "offline"] = "anthropic"
    agent_modules: tuple[str, ...] = ()  # SWITCHYARD_AGENT_MODULES
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # X-Ray active tracing on the functions.
    tracing: bool = True
    # Lease period = heartbeat x 3 = the runs queue's visibility timeout (SWITCHYARD_LEASE_TTL_S).
    # Short leases are valid (tests use 1-2 s: a crashed run resumes quickly) but cost a
    # heartbeat write every lease/3 seconds per running run; SQS counts visibility in seconds.
    lease_ttl_s: int = Field(default=30, ge=1, le=43_200)
    # Finished runs' TTL (SWITCHYARD_RETENTION_DAYS); overflow blobs expire this + margin.
    retention_days: int = Field(default=30, ge=1, le=3650)
    blob_expiry_margin_days: int = Field(default=2, ge=1, le=365)
    export_retention_days: int = Field(default=7, ge=1, le=3650)
    log_retention_days: int = Field(default=30, ge=1)
    access_log_retention_days: int = Field(default=90, ge=1)
    # Default for every function's SnapStart (per-function `snap_start` overrides it).
    snap_start: bool = False
    # Use existing Secrets Manager secrets instead of creating them (complete ARNs).
    anthropic_secret_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:secretsmanager:"
    )
    webhook_secret_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:secretsmanager:")
    # Trigger uploads land here when a rule names no bucket. Default name:
    # switchyard-<stage>-inbox-<account>-<region>.
    inbox_bucket_name: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
    )
    alarm_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # Extra environment for every function and the worker (e.g. SWITCHYARD_WEBHOOK_ATTEMPTS).
    extra_env: dict[str, str] = Field(default_factory=dict)
    # Trigger rules: {"s3": [...], "schedules": [...]} as shared/logic/triggers.py parses them.
    triggers: dict[str, Any] = Field(default_factory=dict)
    # The provider gateway: rate limits, their period, tenant budgets, price overrides.
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    functions: FunctionsSettings = Field(default_factory=FunctionsSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    queues: QueueSettings = Field(default_factory=QueueSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)

    @model_validator(mode="after")
    def _consistent(self) -> StackSettings:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"log_retention_days must be one of {list(LOG_RETENTION_DAYS)}")
        for name in FunctionsSettings.model_fields:
            fn: FunctionSettings = getattr(self.functions, name)
            if self.snap_start_for(fn) and fn.provisioned_concurrency:
                raise ValueError(
                    f"functions.{name}: SnapStart and provisioned concurrency exclude each other"
                )
        reserved = {f"SWITCHYARD_{k}" for k in ("TABLE", "BUCKET", "QUEUE_URL", "DLQ_URL")}
        clash = sorted(set(self.extra_env) & (reserved | {c.ENV_ANTHROPIC_API_KEY}))
        if clash:
            raise ValueError(f"extra_env cannot set {clash}: the stack sets them")
        gateway_vars = sorted(set(self.extra_env) & set(c.GATEWAY_ENV))
        if gateway_vars:
            raise ValueError(
                f"extra_env cannot set {gateway_vars}: use the `gateway` settings (validated, "
                "and set on the processes that call models only)"
            )
        gateway_env = self.gateway.environment()
        try:  # what the processes will parse, parsed the way they will
            Settings.from_env(gateway_env)
        except SwitchyardError as exc:
            raise ValueError(f"gateway: {exc.message}") from exc
        gateway_bytes = sum(len(k) + len(v) for k, v in gateway_env.items())
        if gateway_bytes > c.LAMBDA_ENV_LIMIT_BYTES - 1024:
            raise ValueError(
                "gateway: the settings do not fit in the API function's Lambda environment "
                f"({gateway_bytes} bytes, keep them under 3 KB)"
            )
        try:
            self.trigger_rules()  # the functions' own parser validates the rules
        except SwitchyardError as exc:
            raise ValueError(exc.message) from exc
        if len(self.triggers_json()) > c.LAMBDA_ENV_LIMIT_BYTES - 1024:
            raise ValueError(
                "triggers: the rules do not fit in a Lambda environment variable "
                f"({len(self.triggers_json())} bytes, keep them under 3 KB)"
            )
        return self

    # ---- derived values -----------------------------------------------------------------------

    @property
    def stack_name(self) -> str:
        return f"{c.STACK_NAME_PREFIX}-{self.stage}"

    @property
    def resource_prefix(self) -> str:
        """Prefix of physical names (queues, schedule group): ``switchyard-<stage>``."""
        return f"{c.STACK_NAME_PREFIX.lower()}-{self.stage}"

    @property
    def blob_expiry_days(self) -> int:
        return self.retention_days + self.blob_expiry_margin_days

    def snap_start_for(self, fn: FunctionSettings) -> bool:
        return self.snap_start if fn.snap_start is None else fn.snap_start

    def trigger_rules(self) -> TriggerRules:
        return parse_triggers(json.dumps(self.triggers), source="settings.triggers")

    def triggers_json(self) -> str:
        """The rules as the trigger functions read them (SWITCHYARD_TRIGGERS), compact."""
        rules = self.trigger_rules()
        if not rules.s3 and not rules.schedules:
            return ""
        return json.dumps(self.triggers, separators=(",", ":"), sort_keys=True)

    def inbox_rules(self) -> tuple[S3Rule, ...]:
        """S3 rules on the stack's inbox bucket (no bucket named, or the inbox by name)."""
        return tuple(
            r
            for r in self.trigger_rules().s3
            if r.bucket is None or r.bucket == self.inbox_bucket_name
        )

    def external_trigger_buckets(self) -> tuple[str, ...]:
        """Buckets outside the stack that rules name (their notifications are the owner's)."""
        names = {
            r.bucket
            for r in self.trigger_rules().s3
            if r.bucket is not None and r.bucket != self.inbox_bucket_name
        }
        return tuple(sorted(names))

    def runs_sync_triggers(self) -> bool:
        """Whether a trigger function may run an agent inline (and so needs the model key)."""
        rules = self.trigger_rules()
        return any(r.agent and r.mode.value != "async" for r in (*rules.s3, *rules.schedules))

    # ---- loading ------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> StackSettings:
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid stack settings: {problems}") from exc

    @classmethod
    def from_context(cls, get: Any, *, base_dir: Path | None = None) -> StackSettings:
        """Settings from CDK context; ``get`` is ``node.try_get_context``."""
        merged: dict[str, Any] = {}
        path = get(c.CONTEXT_CONFIG_FILE)
        if path:
            merged = _merge(merged, load_file(Path(base_dir or Path.cwd()) / str(path)))
        inline = get(c.CONTEXT_SETTINGS)
        if inline:
            merged = _merge(merged, _as_object(inline, c.CONTEXT_SETTINGS))
        stage = get(c.CONTEXT_STAGE)
        if stage:
            merged["stage"] = str(stage)
        return cls.from_mapping(merged)


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{c.CONTEXT_CONFIG_FILE}: cannot read {path}: {exc.strerror}") from exc
    return _as_object(text, str(path))


def _as_object(value: object, source: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    return value


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested objects merge one level deep."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "triggers":
            nested = dict(out[key])
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(nested.get(k), dict):
                    nested[k] = {**nested[k], **v}
                else:
                    nested[k] = v
            out[key] = nested
        else:
            out[key] = value
    return out


__all__ = [
    "LOG_RETENTION_DAYS",
    "ApiSettings",
    "ConfigError",
    "FunctionSettings",
    "FunctionsSettings",
    "GatewaySettings",
    "MonitoringSettings",
    "NetworkSettings",
    "QueueSettings",
    "StackSettings",
    "WorkerSettings",
    "load_file",
]
