"""Triggers: S3 object-created rules and schedules that start runs.

Rules are configuration, read from a JSON document (``SWITCHYARD_TRIGGERS_FILE``, a path, or
``SWITCHYARD_TRIGGERS``, the JSON itself) and validated once by :func:`load_triggers`::

    {
      "s3": [{"name": "invoices", "bucket": "acme-inbox", "prefix": "invoices/",
              "suffix": ".pdf", "agent": "researcher", "tenant": "acme",
              "input": {"task": "extract the totals"}}],
      "schedules": [{"name": "nightly-digest", "expression": "cron(0 6 * * ? *)",
                     "agent": "ops-assistant", "tenant": "acme", "input": "Summarise..."}]
    }

A rule names an ``agent`` (it starts a run) or a ``pipeline`` (it starts a job; the input
must then be a JSON object). Both kinds start through the functions behind the API
(:func:`shared.logic.service.create_run`, ``POST /v1/runs``; :func:`shared.logic.jobs.start_job`,
``POST /v1/jobs``) with an ``Idempotency-Key`` derived from the event, so an event delivered
twice (S3 notifications and schedules are both at-least-once) starts one run or job:

- S3: one run per (rule, bucket, key, object version) where the version is the S3 version id
  in a versioned bucket and the ETag otherwise, so re-uploading identical bytes to an
  unversioned bucket does not start a second run while the idempotency record lives.
- schedules: one run per (rule, fire time).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.agents.registry import AgentRegistry
from shared.config import Settings
from shared.errors import ConfigError, ConflictError, NotFoundError
from shared.logic.jobs import start_job
from shared.logic.service import Services, create_run, get_run
from shared.models.api import JobCreate, RunCreate
from shared.models.job import Job
from shared.models.run import Run, Shape
from shared.observability import count, get_logger, new_metrics
from shared.pipelines.registry import PipelineRegistry

RULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# The object reference every S3-triggered run's input carries (merged into the static input).
OBJECT_FIELDS = ("bucket", "key", "size", "etag")
# Run metadata a trigger sets itself (a rule's own metadata cannot override these).
TRIGGER_METADATA = ("trigger", "trigger_rule", "fired_at")
TEST_EVENT = "s3:TestEvent"

logger = get_logger("switchyard-triggers")
metrics = new_metrics("switchyard-triggers")


# ---- rules -----------------------------------------------------------------------------------


class _Rule(BaseModel):
    """What every rule names: which agent to run, for which tenant, how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=RULE_NAME_PATTERN)
    agent: str | None = Field(default=None, min_length=1, max_length=64)
    pipeline: str | None = Field(default=None, min_length=1, max_length=64)
    tenant: str = Field(default="default", min_length=1, max_length=128)
    # Triggers enqueue by default: the trigger function stays short whatever the agent does.
    mode: Shape = Shape.ASYNC
    metadata: dict[str, str] = Field(default_factory=dict, max_length=24)
    webhook_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)

    @model_validator(mode="after")
    def _one_target(self) -> _Rule:
        if (self.agent is None) == (self.pipeline is None):
            raise ValueError("name exactly one target: an agent or a pipeline")
        reserved = sorted(set(self.metadata) & set(TRIGGER_METADATA))
        if reserved:
            raise ValueError(f"metadata keys {reserved} are set by the trigger itself")
        return self

    @property
    def agent_name(self) -> str:
        assert self.agent is not None  # a rule without an agent names a pipeline
        return self.agent

    @property
    def target(self) -> str:
        return f"agent {self.agent}" if self.agent else f"pipeline {self.pipeline}"


class S3Rule(_Rule):
    """Objects created in ``bucket`` (any bucket if unset) whose key starts with ``prefix``
    and ends with ``suffix`` start a run with input ``{**input, bucket, key, size, etag}``."""

    bucket: str | None = Field(default=None, min_length=3, max_length=63)
    prefix: str = ""
    suffix: str = ""
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _no_object_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & set(OBJECT_FIELDS))
        if clash:
            raise ValueError(f"input keys {clash} are filled from the S3 object")
        return value

    def matches(self, obj: ObjectRef) -> bool:
        if self.bucket is not None and obj.bucket != self.bucket:
            return False
        return obj.key.startswith(self.prefix) and obj.key.endswith(self.suffix)


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\(([^()]+)\)$")


def _check_expression(expression: str) -> str:
    """EventBridge's two forms: ``rate(N unit)`` and six-field ``cron(...)``."""
    rate = _RATE.match(expression)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ValueError("a rate must be at least 1")
        if (value == 1) != (not unit.endswith("s")):
            raise ValueError(f"write rate(1 {unit.rstrip('s')}) or rate(N {unit.rstrip('s')}s)")
        return expression
    cron = _CRON.match(expression)
    if cron:
        fields = cron.group(1).split()
        if len(fields) != 6:
            raise ValueError(
                "cron() takes 6 fields: minutes hours day-of-month month day-of-week year"
            )
        if (fields[2] == "?") == (fields[4] == "?"):
            raise ValueError("cron(): exactly one of day-of-month and day-of-week must be '?'")
        return expression
    raise ValueError("expression must be cron(...) or rate(N unit)")


class ScheduleRule(_Rule):
    """``expression`` (EventBridge ``cron()``/``rate()``, UTC) starts a run with ``input``."""

    expression: str
    input: Any = Field(
        description="The run's input (a string, or JSON the agent expects), or the job's "
        "(a JSON object)",
    )

    @model_validator(mode="after")
    def _job_input_is_object(self) -> ScheduleRule:
        if self.pipeline is not None and not isinstance(self.input, dict):
            raise ValueError("a pipeline's input must be a JSON object")
        return self

    @field_validator("expression")
    @classmethod
    def _valid_expression(cls, value: str) -> str:
        return _check_expression(value.strip())


class TriggerRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    s3: tuple[S3Rule, ...] = ()
    schedules: tuple[ScheduleRule, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> TriggerRules:
        for kind, rules in (("s3", self.s3), ("schedules", self.schedules)):
            names = [r.name for r in rules]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: rule names must be unique, repeated: {dupes}")
        return self

    def schedule(self, name: str) -> ScheduleRule:
        for rule in self.schedules:
            if rule.name == name:
                return rule
        raise NotFoundError(
            f"no schedule rule named {name!r}",
            details={"known": [r.name for r in self.schedules]},
        )

    def check_agents(
        self, registry: AgentRegistry, pipelines: PipelineRegistry | None = None
    ) -> None:
        """Fail at start-up, not at the first event, when a rule names an unknown agent (or,
        given the pipelines, an unknown pipeline)."""
        rules = (*self.s3, *self.schedules)
        unknown = [f"{r.name}: {r.agent}" for r in rules if r.agent and r.agent not in registry]
        if unknown:
            raise ConfigError(f"trigger rules name unknown agents: {unknown}")
        if pipelines is not None:
            missing = [
                f"{r.name}: {r.pipeline}"
                for r in rules
                if r.pipeline and r.pipeline not in pipelines
            ]
            if missing:
                raise ConfigError(f"trigger rules name unknown pipelines: {missing}")


def parse_triggers(text: str, *, source: str = "SWITCHYARD_TRIGGERS") -> TriggerRules:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    try:
        return TriggerRules.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{source}: invalid trigger rules: {problems}") from exc


def load_triggers(settings: Settings) -> TriggerRules:
    """The rules the settings point at (none if neither variable is set)."""
    if settings.triggers_file and settings.triggers_json:
        raise ConfigError("set SWITCHYARD_TRIGGERS_FILE or SWITCHYARD_TRIGGERS, not both")
    if settings.triggers_json:
        return parse_triggers(settings.triggers_json)
    if settings.triggers_file:
        path = Path(settings.triggers_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"SWITCHYARD_TRIGGERS_FILE: cannot read {path}: {exc.strerror}"
            ) from exc
        return parse_triggers(text, source=str(path))
    return TriggerRules()


# ---- S3 --------------------------------------------------------------------------------------


class ObjectRef(BaseModel):
    """The object an S3 ObjectCreated notification record is about (key URL-decoded)."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    sequencer: str | None = None
    event_name: str = ""

    def as_input(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "size": self.size, "etag": self.etag}

    def identity(self) -> str:
        """Which version of the object this is: the same for every delivery of its event."""
        if self.version_id:
            return f"version:{self.version_id}"
        if self.etag:
            return f"etag:{self.etag}"
        return f"sequencer:{self.sequencer or ''}"


def s3_records(notification: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The records of one S3 notification document; none for ``s3:TestEvent``."""
    if notification.get("Event") == TEST_EVENT:
        return []
    records = notification.get("Records")
    if not isinstance(records, list):
        raise ValueError("not an S3 notification: no Records list")
    return [r for r in records if isinstance(r, dict)]


def object_ref(record: Mapping[str, Any]) -> ObjectRef | None:
    """The object of an ``ObjectCreated:*`` record; ``None`` for any other record."""
    if record.get("Event") == TEST_EVENT:
        return None
    event_name = str(record.get("eventName", ""))
    if not event_name.startswith(("ObjectCreated:", "s3:ObjectCreated:")):
        return None
    try:
        s3 = record["s3"]
        obj = s3["object"]
        bucket = str(s3["bucket"]["name"])
        raw_key = str(obj["key"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed S3 record: missing {exc}") from exc
    etag = obj.get("eTag") or obj.get("etag")
    size = obj.get("size")
    return ObjectRef(
        bucket=bucket,
        # Keys arrive URL-encoded, form style: "red flower.jpg" is "red+flower.jpg".
        key=unquote_plus(raw_key),
        size=int(size) if size is not None else None,
        etag=str(etag).strip('"') if etag else None,
        version_id=obj.get("versionId") or None,
        sequencer=obj.get("sequencer") or None,
        event_name=event_name,
    )


def s3_idempotency_key(rule: S3Rule, obj: ObjectRef) -> str:
    digest = hashlib.sha256(f"{obj.bucket}\n{obj.key}\n{obj.identity()}".encode()).hexdigest()
    return f"s3:{rule.name}:{digest[:40]}"


def _metadata(rule: _Rule, kind: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**rule.metadata, "trigger": kind, "trigger_rule": rule.name, **(extra or {})}


Started = Run | Job


def started_id(started: Started) -> str:
    return started.run_id if isinstance(started, Run) else started.job_id


async def _start_job(
    svc: Services, rule: _Rule, job_input: Any, metadata: dict[str, str], key: str
) -> Job:
    assert rule.pipeline is not None
    body = JobCreate(pipeline=rule.pipeline, input=job_input or {}, metadata=metadata)
    try:
        job, created = await start_job(svc, rule.tenant, body, idempotency_key=key)
    except ConflictError as exc:
        # The rule changed between two deliveries of the same event: the first job stands.
        details = exc.details if isinstance(exc.details, dict) else {}
        job_id = details.get("job_id")
        if not isinstance(job_id, str):
            raise
        logger.info("trigger event already started a job", extra={"job_id": job_id})
        return await svc.jobs.get_job(job_id)
    trigger = metadata["trigger"]
    if created:
        count(metrics, "TriggeredJobs", trigger=trigger, pipeline=rule.pipeline)
    else:
        count(metrics, "TriggerDuplicates", trigger=trigger)
    return job


async def _start(svc: Services, rule: _Rule, body: RunCreate, key: str) -> Run:
    try:
        submitted = await create_run(svc, rule.tenant, body, idempotency_key=key)
    except ConflictError as exc:
        # The key was used with another body: the rule changed between two deliveries of the
        # same event. The first delivery's run stands.
        details = exc.details if isinstance(exc.details, dict) else {}
        run_id = details.get("run_id")
        if not isinstance(run_id, str):
            raise
        logger.info("trigger event already started a run", extra={"run_id": run_id})
        return await get_run(svc, rule.tenant, run_id)
    if submitted.created:
        count(metrics, "TriggeredRuns", trigger=body.metadata["trigger"], agent=body.agent)
    else:
        count(metrics, "TriggerDuplicates", trigger=body.metadata["trigger"])
    return submitted.run


async def start_from_s3_record(
    svc: Services, rules: TriggerRules | Iterable[S3Rule], record: Mapping[str, Any]
) -> list[Started]:
    """Start one run or job per rule matching the record's object; what they started (new
    or, for a redelivered record, what it started before). Non-ObjectCreated records and
    ``s3:TestEvent`` start nothing."""
    obj = object_ref(record)
    if obj is None:
        return []
    s3_rules = rules.s3 if isinstance(rules, TriggerRules) else tuple(rules)
    runs: list[Started] = []
    for rule in s3_rules:
        if not rule.matches(obj):
            continue
        started: Started
        if rule.pipeline:
            started = await _start_job(
                svc,
                rule,
                {**rule.input, **obj.as_input()},
                _metadata(rule, "s3"),
                s3_idempotency_key(rule, obj),
            )
        else:
            body = RunCreate(
                agent=rule.agent_name,
                input={**rule.input, **obj.as_input()},
                mode=rule.mode,
                metadata=_metadata(rule, "s3"),
                webhook_url=rule.webhook_url,
            )
            started = await _start(svc, rule, body, s3_idempotency_key(rule, obj))
        logger.info(
            "s3 trigger",
            extra={
                "rule": rule.name,
                "bucket": obj.bucket,
                "key": obj.key,
                "started": started_id(started),
            },
        )
        runs.append(started)
    if not runs:
        logger.debug("no trigger rule matches", extra={"bucket": obj.bucket, "key": obj.key})
    return runs


# ---- schedules -------------------------------------------------------------------------------


def fire_time(value: datetime) -> datetime:
    """A fire time normalized to whole seconds in UTC (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def schedule_idempotency_key(rule: ScheduleRule, fired_at: datetime) -> str:
    return f"schedule:{rule.name}:{fire_time(fired_at).strftime('%Y-%m-%dT%H:%M:%SZ')}"


async def start_from_schedule(
    svc: Services,
    rule_name: str,
    fired_at: datetime,
    *,
    rules: TriggerRules | None = None,
) -> Started:
    """Start the run (or job) of schedule ``rule_name`` for the fire time ``fired_at``: the
    same one however often that firing is delivered. ``rules`` default to the settings'."""
    rules = rules if rules is not None else load_triggers(svc.settings)
    rule = rules.schedule(rule_name)
    at = fire_time(fired_at)
    metadata = _metadata(rule, "schedule", {"fired_at": at.isoformat()})
    if rule.pipeline:
        job = await _start_job(svc, rule, rule.input, metadata, schedule_idempotency_key(rule, at))
        logger.info(
            "schedule trigger",
            extra={"rule": rule.name, "fired_at": at.isoformat(), "job_id": job.job_id},
        )
        return job
    body = RunCreate(
        agent=rule.agent_name,
        input=rule.input,
        mode=rule.mode,
        metadata=metadata,
        webhook_url=rule.webhook_url,
    )
    run = await _start(svc, rule, body, schedule_idempotency_key(rule, at))
    logger.info(
        "schedule trigger",
        extra={"rule": rule.name, "fired_at": at.isoformat(), "run_id": run.run_id},
    )
    return run


__all__ = [
    "ObjectRef",
    "S3Rule",
    "ScheduleRule",
    "Started",
    "TriggerRules",
    "load_triggers",
    "object_ref",
    "parse_triggers",
    "s3_records",
    "start_from_s3_record",
    "start_from_schedule",
    "started_id",
]
