"""The pipeline function: function stages and approval gates of every pipeline.

Step Functions invokes it with the payload ``shared/pipelines/asl.py`` builds
(``shared.models.job.FunctionCall``):

- ``action: function``: run the stage's Python function on its input; return the data after
  the stage. A function that raises fails the invocation with ``StageFailed`` (the error
  Retry and Catch match), its cause recorded on the stage's attempt first.
- ``action: gate``: record the gate's task token and question (the job then waits, with no
  compute, for ``POST /v1/jobs/{id}/approval``); return nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from functions import PerContainer, run_sync
from shared.config import Settings
from shared.errors import ValidationFailedError
from shared.logic.service import Services
from shared.logic.stages import open_gate, run_function_stage
from shared.models.job import FunctionCall


class Objects(Protocol):
    def read(self, bucket: str, key: str) -> bytes: ...

    def write(self, bucket: str, key: str, body: bytes, content_type: str) -> None: ...


@dataclass(frozen=True)
class Context:
    """``shared.pipelines.StageContext`` for one function stage call."""

    job_id: str
    tenant: str
    pipeline: str
    stage: str
    attempt_id: str
    objects: Objects

    @property
    def idempotency_key(self) -> str:
        return f"{self.job_id}:{self.stage}"

    def read_object(self, bucket: str, key: str) -> bytes:
        return self.objects.read(bucket, key)

    def write_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None:
        self.objects.write(bucket, key, body, content_type)


@dataclass(frozen=True)
class Container:
    services: Services
    objects: Objects


def build_container(env: Mapping[str, str] | None = None) -> Container:
    from shared.dal.objects import S3Objects
    from shared.wiring import build_services, load_settings

    settings = load_settings() if env is None else Settings.from_env(env)
    services = build_services(settings, service_name="pipeline")
    services.pipelines.check_agents(services.registry)
    return Container(services=services, objects=S3Objects(region=settings.region))


_container: PerContainer[Container] = PerContainer(build_container)


def configure(container: Container | None) -> None:
    """Tests and the local stack hand in their own container (None: build from env)."""
    _container.set(container)


async def handle(c: Container, event: Mapping[str, Any]) -> Any:
    try:
        call = FunctionCall.model_validate(event)
    except ValidationError as exc:
        raise ValidationFailedError(f"not a pipeline stage call: {exc.errors()[0]['msg']}") from exc
    if call.action == "gate":
        await open_gate(c.services, call)
        return None

    def context(attempt_id: str) -> Context:
        return Context(
            job_id=call.job_id,
            tenant=call.tenant,
            pipeline=call.pipeline,
            stage=call.stage,
            attempt_id=attempt_id,
            objects=c.objects,
        )

    return await run_function_stage(c.services, call, context)


def handler(event: dict[str, Any], context: Any = None) -> Any:
    return run_sync(handle(_container.get(), event))
