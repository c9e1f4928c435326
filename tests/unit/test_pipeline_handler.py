"""The pipeline function (``functions/pipeline/handler.py``): function stages and approval
gates of the example pipelines, on memory services and an in-memory object store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agents.documents import DocumentError
from functions.pipeline import handler as pipeline_handler
from functions.pipeline.handler import Container, handle
from shared.config import Settings
from shared.errors import ValidationFailedError
from shared.jobs.memory import MemoryWorkflows
from shared.logic.stages import StageFailed, gate_attempt_id
from shared.models.job import AttemptStatus, StageKind
from shared.wiring import build_services

JOB = "job_01HANDLER"
BUCKET = "docs"
KEY = "reports/q3.md"
DOCUMENT = b"""# Q3 report

Revenue rose 12%, led by the EU.

## Costs

Costs fell 3% after the move to Graviton.
"""


class MemoryObjects:
    """``Objects`` in a dict: what the S3 fake of a unit test needs."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.reads: list[tuple[str, str]] = []

    def read(self, bucket: str, key: str) -> bytes:
        self.reads.append((bucket, key))
        try:
            return self.objects[bucket, key][0]
        except KeyError:
            raise FileNotFoundError(f"s3://{bucket}/{key}") from None

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self.objects[bucket, key] = (body, content_type)


@pytest.fixture
def objects() -> MemoryObjects:
    store = MemoryObjects()
    store.write(BUCKET, KEY, DOCUMENT, "text/markdown")
    return store


@pytest.fixture
def container(objects: MemoryObjects) -> Container:
    return Container(services=build_services(Settings(), backend="memory"), objects=objects)


def event(stage: str, data: Any, **extra: Any) -> dict[str, Any]:
    """The payload the state machine's task states pass (``FunctionCall``)."""
    return {
        "job_id": JOB,
        "tenant": "acme",
        "pipeline": "document-review",
        "stage": stage,
        "data": data,
        **extra,
    }


async def test_extract_reads_the_document_and_returns_its_sections(
    container: Container, objects: MemoryObjects
) -> None:
    after = await handle(container, event("extract", {"bucket": BUCKET, "key": KEY}))

    assert objects.reads == [(BUCKET, KEY)]
    assert after == {
        "document": {"bucket": BUCKET, "key": KEY},
        "title": "Q3 report",
        "sections": [
            {"heading": "Q3 report", "text": "Revenue rose 12%, led by the EU."},
            {"heading": "Costs", "text": "Costs fell 3% after the move to Graviton."},
        ],
    }
    [attempt] = await container.services.jobs.attempts(JOB)
    assert attempt.stage == "extract"
    assert attempt.kind is StageKind.FUNCTION
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.output == after  # result_path "$": the result is the data after
    assert attempt.data == {"bucket": BUCKET, "key": KEY}


async def test_an_empty_document_fails_with_the_document_error_as_the_cause(
    container: Container, objects: MemoryObjects
) -> None:
    objects.write(BUCKET, "empty.md", b"  \n\n", "text/markdown")

    with pytest.raises(StageFailed) as raised:
        await handle(container, event("extract", {"bucket": BUCKET, "key": "empty.md"}))

    cause = str(raised.value)
    assert cause.startswith(
        f"DocumentError: s3://{BUCKET}/empty.md is empty: nothing to summarize (at extract, line "
    )
    assert isinstance(raised.value.__cause__, DocumentError)
    [attempt] = await container.services.jobs.attempts(JOB)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.error is not None
    assert (attempt.error.code, attempt.error.message, attempt.error.stage) == (
        "StageFailed",
        cause,
        "extract",
    )


async def test_a_gate_records_its_token_and_question(container: Container) -> None:
    data = {"title": "Q3 report", "summaries": ["Revenue rose.", "Costs fell."]}

    result = await handle(container, event("review", data, action="gate", task_token="tok-review"))

    assert result is None
    [attempt] = await container.services.jobs.attempts(JOB)
    assert attempt.attempt_id == gate_attempt_id("tok-review")
    assert attempt.kind is StageKind.APPROVAL
    assert attempt.status is AttemptStatus.AWAITING_APPROVAL
    assert attempt.prompt == "Publish these section summaries?"
    assert attempt.task_token == "tok-review"
    assert attempt.data == data
    workflows = container.services.workflows
    assert isinstance(workflows, MemoryWorkflows)
    assert workflows.answers == {}  # the job waits for a reviewer


@pytest.mark.parametrize(
    "payload",
    [
        {"tenant": "acme", "pipeline": "document-review", "stage": "extract"},  # no job_id
        event("extract", {}, action="delete"),
        event("review", {}, action="gate"),  # a gate without its token
        event("extract", {}, action=None),
    ],
)
async def test_an_invalid_payload_is_a_validation_error(
    container: Container, payload: dict[str, Any]
) -> None:
    with pytest.raises(ValidationFailedError, match="not a pipeline stage call"):
        await handle(container, payload)
    assert await container.services.jobs.attempts(JOB) == []


@pytest.fixture
def configured(container: Container) -> Iterator[Container]:
    pipeline_handler.configure(container)
    yield container
    pipeline_handler.configure(None)


def test_the_lambda_entry_point_runs_the_stage(configured: Container) -> None:
    after = pipeline_handler.handler(event("extract", {"bucket": BUCKET, "key": KEY}))

    assert [s["heading"] for s in after["sections"]] == ["Q3 report", "Costs"]
