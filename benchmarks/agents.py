"""Agents and a pipeline for ``benchmarks/cost_per_run.py``, loaded by the local stack through
``SWITCHYARD_AGENT_MODULES=benchmarks.agents`` (the pipeline is compiled into its template).

They run on the offline model, which calls each tool an agent has once, in order, then
answers: an agent with N tools makes N tool steps and one final answer (N + 1 model calls),
the convention of ``checkpoint_growth`` (``--steps 200`` is 200 tool steps and an answer).

- ``bench-sync-3``: 3 tool steps, each tool answering one small JSON record (~0.2 KB); sync.
- ``bench-async-10``: 10 tool steps, each tool answering ~5 KB of JSON records (realistic,
  compressible text: repeated keys, enumerations, dates, names); async.
- ``bench-async-10-incompressible``: the same with ~5 KB of random base64 per tool answer
  (what compression cannot shrink).
- ``bench-pipeline``: four stages, function -> agent -> map of agent runs -> function:
  ``prepare`` splits the input into 3 sections, ``plan`` (an agent with one tool step) plans,
  ``analyze`` runs one agent per section (an answer, no tool), ``report`` joins the results.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

from pydantic import BaseModel

from shared.agents import Agent, Limits, Tool, tool
from shared.models.run import Shape
from shared.pipelines import AgentStage, FunctionStage, MapStage, Pipeline, StageContext

MODEL = "claude-haiku-4-5"
PAYLOAD_BYTES = 5_000
SYNC_STEPS = 3
ASYNC_STEPS = 10
SECTIONS = 3

_FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
_LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
_STATUS = ("active", "past_due", "trialing", "cancelled")
_PLANS = ("starter", "team", "business", "enterprise")


class PageInput(BaseModel):
    page: int = 1


def records(seed: int, size: int = PAYLOAD_BYTES) -> list[dict[str, Any]]:
    """Customer records, as a CRM or billing API answers them, until ``size`` bytes of JSON."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    while len(json.dumps(out)) < size:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        out.append(
            {
                "id": f"cus_{rng.randrange(16**10):010x}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}@example.com",
                "plan": rng.choice(_PLANS),
                "status": rng.choice(_STATUS),
                "mrr_usd": round(rng.uniform(10, 2000), 2),
                "created": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            }
        )
    return out[:-1] if len(out) > 1 else out


def noise(seed: int, size: int = PAYLOAD_BYTES) -> str:
    """``size`` characters of random base64: text compression cannot shrink."""
    raw = random.Random(seed).randbytes(size * 3 // 4)
    return base64.b64encode(raw).decode()[:size]


def _page_tool(step: int, *, incompressible: bool) -> Tool:
    def fetch(args: PageInput) -> dict[str, Any]:
        if incompressible:
            return {"page": step, "blob": noise(step * 7919 + args.page)}
        return {"page": step, "customers": records(step * 7919 + args.page)}

    return tool(name=f"fetch_page_{step:02d}", description=f"Page {step} of the customer list.")(
        fetch
    )


def _record_tool(step: int) -> Tool:
    def lookup(args: PageInput) -> dict[str, Any]:
        return {"step": step, "customer": records(step, 300)[0]}

    return tool(name=f"lookup_{step:02d}", description=f"Customer lookup number {step}.")(lookup)


bench_sync = Agent(
    name="bench-sync-3",
    description="Benchmark: 3 small tool steps, answered inline (sync).",
    model=MODEL,
    system="You look up a customer in three systems and summarise what you found.",
    tools=tuple(_record_tool(i) for i in range(1, SYNC_STEPS + 1)),
    limits=Limits(max_steps=SYNC_STEPS + 2, max_cost_usd=1.0, timeout_s=60),
    shape=Shape.SYNC,
)

bench_async = Agent(
    name="bench-async-10",
    description="Benchmark: 10 tool steps of ~5 KB of JSON records each (async).",
    model=MODEL,
    system="You page through the customer list and report the accounts at risk.",
    tools=tuple(_page_tool(i, incompressible=False) for i in range(1, ASYNC_STEPS + 1)),
    limits=Limits(max_steps=ASYNC_STEPS + 2, max_cost_usd=1.0, timeout_s=600),
    shape=Shape.ASYNC,
)

bench_async_incompressible = Agent(
    name="bench-async-10-incompressible",
    description="Benchmark: 10 tool steps of ~5 KB of random base64 each (async).",
    model=MODEL,
    system="You page through the archive and report what you found.",
    tools=tuple(_page_tool(i, incompressible=True) for i in range(1, ASYNC_STEPS + 1)),
    limits=Limits(max_steps=ASYNC_STEPS + 2, max_cost_usd=1.0, timeout_s=600),
    shape=Shape.ASYNC,
)

bench_planner = Agent(
    name="bench-planner",
    description="Benchmark pipeline: plans the review (one tool step).",
    model=MODEL,
    system="You plan a review of the sections you are given.",
    tools=(_record_tool(1),),
    limits=Limits(max_steps=3, max_cost_usd=1.0, timeout_s=120),
    shape=Shape.ASYNC,
)

bench_analyst = Agent(
    name="bench-analyst",
    description="Benchmark pipeline: analyses one section (an answer, no tool).",
    model=MODEL,
    system="You analyse one section in two sentences.",
    limits=Limits(max_steps=2, max_cost_usd=1.0, timeout_s=120),
    shape=Shape.ASYNC,
)


def prepare(data: Any, ctx: StageContext) -> dict[str, Any]:
    topic = str((data or {}).get("topic", "accounts")) if isinstance(data, dict) else str(data)
    sections = [
        {"section": i, "title": f"{topic}: part {i}", "text": json.dumps(records(i, 600))}
        for i in range(1, SECTIONS + 1)
    ]
    return {"topic": topic, "sections": sections}


def report(data: Any, ctx: StageContext) -> dict[str, Any]:
    analyses = data.get("analyses") or []
    return {
        "job_id": ctx.job_id,
        "topic": data.get("topic"),
        "sections": len(data.get("sections") or []),
        "analysed": len(analyses),
        "plan_chars": len(json.dumps(data.get("plan"))),
    }


bench_pipeline = Pipeline(
    name="bench-pipeline",
    description="Benchmark: function -> agent -> map of agent runs -> function.",
    stages=(
        FunctionStage(name="prepare", fn=prepare),
        AgentStage(name="plan", agent="bench-planner", input_path="$.topic", result_path="$.plan"),
        MapStage(
            name="analyze",
            items_path="$.sections",
            result_path="$.analyses",
            max_concurrency=SECTIONS,
            stages=(AgentStage(name="analyze-section", agent="bench-analyst"),),
        ),
        FunctionStage(name="report", fn=report, result_path="$.report"),
    ),
)
