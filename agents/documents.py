"""The example pipeline: a document lands in S3 → extract its sections → summarize each
section (a map of agent runs) → a human approves → publish the summary back to S3.

``extract`` and ``publish`` are function stages (Lambda tasks in AWS); ``summarize`` fans out
to the worker fleet; ``review`` waits for ``POST /v1/jobs/{id}/approval`` with no compute.
Publishing is the side effect, so it comes after the gate and writes one object whose key
depends only on the source document: a retried publish overwrites it with the same bytes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from shared.agents import Agent, Limits
from shared.models.run import Shape
from shared.pipelines import (
    RUN_FAILED,
    TIMEOUT,
    AgentStage,
    ApprovalStage,
    FunctionStage,
    MapStage,
    Pipeline,
    Retry,
    StageContext,
)

MAX_SECTIONS = 40
MAX_SECTION_CHARS = 4000
PUBLISHED_PREFIX = "published/"
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")

section_summarizer = Agent(
    name="section-summarizer",
    description="Summarises one section of a document in a sentence or two.",
    model="claude-haiku-4-5",
    fallback_models=("claude-sonnet-4-6",),
    system="You summarise one section of a document in at most two sentences. "
    "Keep names, figures and decisions; drop everything else.",
    limits=Limits(
        max_steps=2,
        max_output_tokens=400,
        max_tokens_per_call=200,
        max_cost_usd=0.05,
        timeout_s=120,
    ),
    shape=Shape.ASYNC,
)


class DocumentError(ValueError):
    """The document cannot be reviewed (empty, not text, no object reference)."""


def split_sections(text: str) -> list[dict[str, str]]:
    """Markdown headings start sections; a document without headings splits on blank lines."""
    sections: list[dict[str, str]] = []
    heading = ""
    lines: list[str] = []
    has_headings = any(_HEADING.match(line) for line in text.splitlines())
    for line in text.splitlines():
        match = _HEADING.match(line) if has_headings else None
        boundary = match is not None or (not has_headings and not line.strip())
        if boundary:
            body = "\n".join(lines).strip()
            if body or heading:
                sections.append({"heading": heading, "text": body[:MAX_SECTION_CHARS]})
            heading, lines = (match.group(1).strip() if match else ""), []
            continue
        lines.append(line)
    body = "\n".join(lines).strip()
    if body or heading:
        sections.append({"heading": heading, "text": body[:MAX_SECTION_CHARS]})
    return sections[:MAX_SECTIONS]


def extract(data: Any, ctx: StageContext) -> dict[str, Any]:
    if not isinstance(data, dict) or not data.get("bucket") or not data.get("key"):
        raise DocumentError("the job input needs the document's bucket and key")
    bucket, key = str(data["bucket"]), str(data["key"])
    try:
        text = ctx.read_object(bucket, key).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"s3://{bucket}/{key} is not UTF-8 text") from exc
    sections = split_sections(text)
    if not sections:
        raise DocumentError(f"s3://{bucket}/{key} is empty: nothing to summarize")
    title = sections[0]["heading"] or key.rsplit("/", 1)[-1]
    return {"document": {"bucket": bucket, "key": key}, "title": title, "sections": sections}


def publish(data: Any, ctx: StageContext) -> dict[str, Any]:
    document = data["document"]
    key = f"{PUBLISHED_PREFIX}{document['key']}.summary.json"
    body = {
        "title": data.get("title"),
        "source": f"s3://{document['bucket']}/{document['key']}",
        "job_id": ctx.job_id,
        "approved_by": (data.get("review") or {}).get("comment"),
        "summaries": [
            {"heading": section.get("heading", ""), "summary": summary}
            for section, summary in zip(data["sections"], data["summaries"], strict=False)
        ],
    }
    ctx.write_object(
        document["bucket"], key, json.dumps(body, indent=2).encode(), "application/json"
    )
    return {"bucket": document["bucket"], "key": key}


document_review = Pipeline(
    name="document-review",
    description="Summarise a document section by section; publish after a human approves.",
    stages=(
        FunctionStage(name="extract", fn=extract),
        MapStage(
            name="summarize",
            items_path="$.sections",
            result_path="$.summaries",
            max_concurrency=4,
            stages=(
                AgentStage(
                    name="summarize-section",
                    agent="section-summarizer",
                    retry=(Retry(errors=(RUN_FAILED, TIMEOUT), max_attempts=1),),
                ),
            ),
        ),
        ApprovalStage(
            name="review",
            prompt="Publish these section summaries?",
            result_path="$.review",
        ),
        FunctionStage(name="publish", fn=publish, result_path="$.published"),
    ),
)
