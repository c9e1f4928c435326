"""Settings, read from the environment once into a validated object.

Nothing reads ``os.environ`` at import time; entry points call ``Settings.from_env()`` and
pass the result (or the pieces they need) down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ConfigError

ProviderName = Literal["anthropic", "offline"]


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    agent_modules: tuple[str, ...] = ()
    provider: ProviderName = "offline"
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
            "overflow_threshold_bytes": "SWITCHYARD_OVERFLOW_BYTES",
            "retention_days": "SWITCHYARD_RETENTION_DAYS",
            "log_level": "SWITCHYARD_LOG_LEVEL",
            "sync_soft_budget_s": "SWITCHYARD_SYNC_SOFT_BUDGET_S",
            "sync_hard_budget_s": "SWITCHYARD_SYNC_HARD_BUDGET_S",
            "queue_url": "SWITCHYARD_QUEUE_URL",
            "dlq_url": "SWITCHYARD_DLQ_URL",
        }
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
