"""What `make dev` runs: the options of the local stack, and the stack it deploys (the
production template with a short lease, so a crashed run resumes within 10 s; the offline
model; demo trigger rules for tenant "dev")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_STAGE = "local"
DEV_TENANT = "dev"
LOCAL_STACK_SETTINGS: dict[str, Any] = {
    "stage": LOCAL_STAGE,
    "removal_policy": "destroy",
    "provider": "offline",
    "tracing": False,
    "lease_ttl_s": 10,
    "triggers": {
        "s3": [
            {
                "name": "tickets-inbox",
                "prefix": "tickets/",
                "agent": "ticket-triage",
                "tenant": DEV_TENANT,
                "input": {"task": "triage the uploaded ticket"},
            },
            {
                "name": "docs-inbox",
                "prefix": "docs/",
                "pipeline": "document-review",
                "tenant": DEV_TENANT,
            },
        ],
        "schedules": [
            {
                "name": "hourly-triage",
                "expression": "rate(1 hour)",
                "agent": "ticket-triage",
                "tenant": DEV_TENANT,
                "input": "Scheduled check: is anything urgent in the queue?",
            },
            {
                "name": "morning-digest",
                "expression": "cron(0 6 * * ? *)",
                "agent": "researcher",
                "tenant": DEV_TENANT,
                "input": "Summarise yesterday's incidents",
            },
        ],
    },
}


def local_stack_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``LOCAL_STACK_SETTINGS`` with the agent modules of ``SWITCHYARD_AGENT_MODULES`` (the
    environment of `make dev`) as the stack's ``agent_modules``: their pipelines are compiled
    into the template (a state machine each), as a deploy with that setting would have them."""
    env = os.environ if environ is None else environ
    modules = [m.strip() for m in env.get("SWITCHYARD_AGENT_MODULES", "").split(",") if m.strip()]
    if not modules:
        return LOCAL_STACK_SETTINGS
    return {**LOCAL_STACK_SETTINGS, "agent_modules": modules}


@dataclass(frozen=True)
class DevOptions:
    port: int = 8000
    workers: int = 2
    offline_latency_s: float = 0.2
    state_dir: Path = Path(".switchyard")
    moto_port: int = 0  # 0: any free port
    stop_timeout_s: float = 10.0
    # Containers per function at most (Lambda's concurrency): the API's long polls hold one
    # each for up to 20 s; more requests wait for a free container.
    function_concurrency: int = 8
