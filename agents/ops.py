"""An operations agent whose risky tool needs a human's approval before it runs."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agents.effects import apply_once
from shared.agents import Agent, Limits, ToolContext, tool
from shared.models.run import Shape

Service = Literal["checkout", "search", "billing"]


class StatusInput(BaseModel):
    service: Service


class RestartInput(BaseModel):
    service: Service
    reason: str = Field(max_length=300)


@tool
def service_status(args: StatusInput) -> dict[str, object]:
    """Current health of a service."""
    degraded = args.service == "checkout"
    return {"service": args.service, "healthy": not degraded, "p99_ms": 2400 if degraded else 180}


@tool(side_effect=True, requires_approval=True)
def restart_service(args: RestartInput, ctx: ToolContext) -> dict[str, object]:
    """Restart a service. Disruptive: a human approves each call."""
    applied = apply_once(ctx.idempotency_key, "restart", {"service": args.service})
    return {"restarted": args.service, "deduplicated": not applied}


ops_assistant = Agent(
    name="ops-assistant",
    description="Checks a service and restarts it, with a human approving the restart.",
    model="claude-sonnet-4-6",
    system="You are an on-call assistant. Check the service; restart it only if unhealthy.",
    tools=(service_status, restart_service),
    limits=Limits(max_steps=6, max_cost_usd=0.2, timeout_s=3600),
    shape=Shape.ASYNC,
)
