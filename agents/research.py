"""A multi-step research agent: search, read, then save a report (side-effecting).

The corpus is bundled so the example runs offline; a real deployment would swap the tool
bodies for a search API, reading its key through ``ctx.secret`` (never the prompt).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from agents.effects import apply_once
from shared.agents import Agent, Limits, ToolContext, tool
from shared.models.run import Shape

CORPUS = {
    "doc-durable": {
        "title": "Durable execution for agents",
        "url": "https://docs.example.com/durable",
        "text": "Journal every step; resume from the first unjournaled step after a crash. "
        "Side effects carry idempotency keys so a retried call has one effect.",
    },
    "doc-queues": {
        "title": "Queues and dead letters",
        "url": "https://docs.example.com/queues",
        "text": "Long work goes through a queue with a dead-letter queue; workers ack late and "
        "heartbeat to extend visibility.",
    },
    "doc-costs": {
        "title": "Controlling LLM costs",
        "url": "https://docs.example.com/costs",
        "text": "Count tokens per step, price them, and stop a run at its budget.",
    },
}


class SearchInput(BaseModel):
    query: str = Field(description="What to look for", max_length=500)
    max_results: int = Field(default=2, ge=1, le=10)


class ReadInput(BaseModel):
    url: str = Field(description="URL of a document returned by search_docs")


class ReportInput(BaseModel):
    title: str = Field(description="Report title", max_length=200)
    body: str = Field(description="The report, in markdown")


@tool
def search_docs(args: SearchInput) -> dict[str, object]:
    """Search the documentation corpus; returns titles and URLs, best match first."""
    words = {w.lower() for w in args.query.split() if len(w) > 3}
    scored = sorted(
        CORPUS.values(),
        key=lambda d: -sum(w in (d["title"] + d["text"]).lower() for w in words),
    )
    return {"results": [{"title": d["title"], "url": d["url"]} for d in scored[: args.max_results]]}


@tool
def read_document(args: ReadInput) -> dict[str, str]:
    """Fetch a document's full text by URL."""
    for doc in CORPUS.values():
        if doc["url"] == args.url:
            return {"title": doc["title"], "body": doc["text"]}
    raise ValueError(f"no document at {args.url}")


@tool(side_effect=True)
def save_report(args: ReportInput, ctx: ToolContext) -> dict[str, object]:
    """Save the final report where the team reads it. Call once, at the end."""
    applied = apply_once(ctx.idempotency_key, "report", {"title": args.title, "run": ctx.run_id})
    return {"saved": True, "deduplicated": not applied, "key": ctx.idempotency_key}


researcher = Agent(
    name="researcher",
    description="Searches the docs, reads what it finds and files a short report.",
    model="claude-sonnet-4-6",
    fallback_models=("claude-haiku-4-5",),
    system=(
        "You research questions using the documentation tools. Search, read the most relevant "
        "documents, then save a concise report with save_report and answer with its summary."
    ),
    tools=(search_docs, read_document, save_report),
    limits=Limits(max_steps=12, max_cost_usd=0.5, timeout_s=600),
    shape=Shape.ASYNC,
)
