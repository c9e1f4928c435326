"""A short classifier: one model call, no tools, runs inline (sync shape)."""

from __future__ import annotations

from shared.agents import Agent, Limits
from shared.models.run import Shape

LABELS = ("billing", "bug", "feature_request", "account", "other")

ticket_triage = Agent(
    name="ticket-triage",
    description="Labels a support ticket so it reaches the right queue.",
    model="claude-haiku-4-5",
    fallback_models=("claude-sonnet-4-6",),
    system=(
        "You label customer support tickets. Answer with one of: "
        + ", ".join(LABELS)
        + ". Reply with the label only."
    ),
    limits=Limits(
        max_steps=2, max_output_tokens=200, max_tokens_per_call=50, max_cost_usd=0.05, timeout_s=20
    ),
    shape=Shape.SYNC,
)
