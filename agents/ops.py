"""An operations agent whose risky tool needs a human's approval before it runs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agents.effects import apply_once
from shared.agents import Agent, Limits, ToolContext, tool
from shared.models.run import Shape
from shared.pipelines import AgentStage, FunctionStage, Pipeline, StageContext

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


def file_note(data: Any, ctx: StageContext) -> dict[str, object]:
    """The incident note: what the assistant concluded (after any approved restart)."""
    return {
        "job_id": ctx.job_id,
        "service": data.get("service") if isinstance(data, dict) else None,
        "summary": data.get("remediation") if isinstance(data, dict) else data,
    }


# A pipeline whose agent stage may pause on a tool call that needs approval: the job then
# waits on the run's approval (POST /v1/jobs/{id}/approval or /v1/runs/{id}/approval) with
# no worker busy, however long it takes.
incident_response = Pipeline(
    name="incident-response",
    description="Check a service and restart it if a human approves; then file a note.",
    stages=(
        AgentStage(name="remediate", agent="ops-assistant", result_path="$.remediation"),
        FunctionStage(name="file-note", fn=file_note, result_path="$.note"),
    ),
)
