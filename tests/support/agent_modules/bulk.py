"""An agent for big inputs (hundreds of KB): limits high enough that the offline model, which
echoes its input into tool calls, finishes the run instead of hitting a budget."""

from __future__ import annotations

from pydantic import BaseModel

from shared.agents import Agent, Limits, tool


class DigestInput(BaseModel):
    text: str


@tool
def digest(args: DigestInput) -> str:
    """Report how long the text is (the reply stays small, however big the text)."""
    return f"{len(args.text)} characters"


bulk_digest = Agent(
    name="bulk-digest",
    description="Measures a large document.",
    model="claude-haiku-4-5",
    system="Measure the document with the digest tool, then report its length.",
    tools=(digest,),
    limits=Limits(max_steps=4, max_output_tokens=10_000_000, max_cost_usd=100.0),
)
