"""Pipeline definitions: stages that are agent runs, functions, map, parallel, choice and
approval gates, with retries and catch per stage.

A pipeline is data: ``shared/pipelines/asl.py`` compiles it to Amazon States Language (one
standard state machine per pipeline, built by the CDK pipelines construct), and the worker and
the pipeline function look stages up by name to run them.

Data flows from stage to stage as one JSON value, like ASL's own: each stage reads
``input_path`` of the current data (``"$"``: all of it) and writes its result at
``result_path`` (``"$"``: the result replaces the data; ``"$.summaries"``: it is added under
that key). Paths are the dotted subset of JSONPath: ``$``, ``$.a``, ``$.a.b``.

Example::

    Pipeline(
        name="document-review",
        stages=(
            FunctionStage("extract", extract_sections),
            MapStage("summarize", items_path="$.sections", result_path="$.summaries",
                     stages=(AgentStage("summarize-section", agent="section-summarizer"),)),
            ApprovalStage("review", prompt="Publish these summaries?"),
            FunctionStage("publish", publish_summary),
        ),
    )
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.errors import PipelineError

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*)*$")

# The errors a stage can end with (what Retry and Catch match, besides ASL's States.*).
RUN_FAILED = "RunFailed"  # the agent run failed (its error code and message are the cause)
RUN_CANCELLED = "RunCancelled"  # the agent run was cancelled
STAGE_FAILED = "StageFailed"  # a function stage raised
APPROVAL_REJECTED = "ApprovalRejected"  # a reviewer rejected an approval gate
ANY_ERROR = "States.ALL"
TIMEOUT = "States.Timeout"  # a stage's TimeoutSeconds (or, on moto, its HeartbeatSeconds)
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"  # no worker heartbeat within HeartbeatSeconds

DAY_S = 86_400
# How long an approval may wait, gate or paused run: a week unless the stage says otherwise.
DEFAULT_APPROVAL_TIMEOUT_S = 7 * DAY_S


class StageContext(Protocol):
    """What a function stage gets besides its input."""

    @property
    def job_id(self) -> str: ...

    @property
    def tenant(self) -> str: ...

    @property
    def pipeline(self) -> str: ...

    @property
    def stage(self) -> str: ...

    @property
    def idempotency_key(self) -> str:
        """Stable across retries of this stage in this job: key side effects with it."""

    def read_object(self, bucket: str, key: str) -> bytes: ...

    def write_object(self, bucket: str, key: str, body: bytes, content_type: str) -> None: ...


StageFunction = Callable[[Any, StageContext], Any]


@dataclass(frozen=True)
class Retry:
    """Retry the stage on these errors (ASL ``Retry``): ``max_attempts`` more tries, waiting
    ``interval_s`` then multiplying the wait by ``backoff_rate``."""

    errors: tuple[str, ...] = (ANY_ERROR,)
    max_attempts: int = 2
    interval_s: int = 2
    backoff_rate: float = 2.0

    def __post_init__(self) -> None:
        if not self.errors:
            raise PipelineError("a Retry needs at least one error name")
        if not 0 <= self.max_attempts <= 99 or self.interval_s < 1 or self.backoff_rate < 1:
            raise PipelineError("Retry: 0 ≤ max_attempts ≤ 99, interval_s ≥ 1, backoff_rate ≥ 1")


@dataclass(frozen=True)
class Catch:
    """On these errors, run ``then`` instead of the stage (its input is the stage's input with
    the error ``{"Error", "Cause"}`` at ``result_path``), and carry on after the stage. With no
    ``then`` the error is recorded and the pipeline carries on."""

    errors: tuple[str, ...] = (ANY_ERROR,)
    then: tuple[Stage, ...] = ()
    result_path: str = "$.error"


@dataclass(frozen=True, kw_only=True)
class _Stage:
    name: str
    input_path: str = "$"
    result_path: str = "$"
    retry: tuple[Retry, ...] = ()
    catch: Catch | None = None

    def children(self) -> Iterator[Stage]:
        """Stages nested in this one (a catch's fallbacks included)."""
        if self.catch is not None:
            yield from self.catch.then


@dataclass(frozen=True, kw_only=True)
class AgentStage(_Stage):
    """An agent run on the stage's input, executed by the worker fleet. The job waits on a
    task token, kept alive by the worker's heartbeats; a run that pauses for approval stops
    heartbeating and waits with no compute until a reviewer decides."""

    agent: str
    # Seconds without a worker heartbeat before Step Functions gives up on the attempt (at
    # least a few lease periods, so a crashed worker's run resumes elsewhere first).
    heartbeat_s: int | None = None
    # The attempt's ceiling while running (default: the agent's own timeout plus a margin).
    timeout_s: int | None = None
    approval_timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S


@dataclass(frozen=True, kw_only=True)
class FunctionStage(_Stage):
    """A short Python function ``fn(input, context) -> result``: a Lambda task in AWS."""

    fn: StageFunction
    timeout_s: int = 60


@dataclass(frozen=True, kw_only=True)
class MapStage(_Stage):
    """``stages`` once per item of the list at ``items_path`` (relative to the stage's
    input), at most ``max_concurrency`` at a time; the result is the list of their results."""

    stages: tuple[Stage, ...]
    items_path: str = "$"
    max_concurrency: int = 4

    def children(self) -> Iterator[Stage]:
        yield from self.stages
        yield from super().children()


@dataclass(frozen=True, kw_only=True)
class ParallelStage(_Stage):
    """Branches on the same input at once; the result is ``{branch: its result}``."""

    branches: Mapping[str, tuple[Stage, ...]]

    def children(self) -> Iterator[Stage]:
        for stages in self.branches.values():
            yield from stages
        yield from super().children()


@dataclass(frozen=True, kw_only=True)
class ChoiceStage(_Stage):
    """Branch on the string value at ``on`` (a path into the current data, typically the
    previous stage's result); the chosen branch's stages run, then the pipeline carries on.
    No match and no ``default``: the pipeline carries on unchanged."""

    on: str
    cases: Mapping[str, tuple[Stage, ...]]
    default: tuple[Stage, ...] = ()

    def children(self) -> Iterator[Stage]:
        for stages in self.cases.values():
            yield from stages
        yield from self.default
        yield from super().children()


@dataclass(frozen=True, kw_only=True)
class ApprovalStage(_Stage):
    """A human gate: the job waits, with no compute, until ``POST /v1/jobs/{id}/approval``.
    Approve: the data carries on (with the decision at ``result_path`` when one is given);
    reject: the stage fails with ``ApprovalRejected``. Past ``timeout_s``: ``States.Timeout``."""

    prompt: str
    timeout_s: int = DEFAULT_APPROVAL_TIMEOUT_S
    result_path: str = ""  # "": the decision is not kept in the data


Stage = AgentStage | FunctionStage | MapStage | ParallelStage | ChoiceStage | ApprovalStage


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    description: str = ""
    # The whole job's ceiling (the state machine's TimeoutSeconds); None: a year, SFN's cap.
    timeout_s: int | None = None
    _index: dict[str, Stage] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise PipelineError(f"pipeline name {self.name!r} must match {NAME.pattern}")
        if not self.stages:
            raise PipelineError(f"pipeline {self.name!r} has no stages")
        for stage in walk(self.stages):
            _check_stage(self.name, stage)
            if stage.name in self._index:
                raise PipelineError(f"pipeline {self.name!r} has two stages named {stage.name!r}")
            self._index[stage.name] = stage

    def stage(self, name: str) -> Stage:
        try:
            return self._index[name]
        except KeyError:
            raise PipelineError(f"pipeline {self.name!r} has no stage {name!r}") from None

    def all_stages(self) -> list[Stage]:
        return list(self._index.values())

    def agents(self) -> set[str]:
        return {s.agent for s in self._index.values() if isinstance(s, AgentStage)}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [_describe(s) for s in self.stages],
        }


def walk(stages: Sequence[Stage]) -> Iterator[Stage]:
    for stage in stages:
        yield stage
        yield from walk(tuple(stage.children()))


def _check_stage(pipeline: str, stage: Stage) -> None:
    where = f"pipeline {pipeline!r}, stage {stage.name!r}"
    if not NAME.match(stage.name):
        raise PipelineError(f"{where}: stage names must match {NAME.pattern}")
    paths = [stage.input_path, stage.result_path]
    if stage.catch is not None:
        paths.append(stage.catch.result_path)
    if isinstance(stage, MapStage):
        paths.append(stage.items_path)
    if isinstance(stage, ChoiceStage):
        paths.append(stage.on)
    for path in paths:
        if path and not PATH.match(path):
            raise PipelineError(f"{where}: {path!r} is not a path like $ or $.a.b")
    if isinstance(stage, MapStage):
        if not stage.stages:
            raise PipelineError(f"{where}: a map needs stages")
        if not 1 <= stage.max_concurrency <= 1000:
            raise PipelineError(f"{where}: max_concurrency must be 1..1000")
    if isinstance(stage, ParallelStage):
        if not stage.branches or any(not b for b in stage.branches.values()):
            raise PipelineError(f"{where}: a parallel stage needs non-empty branches")
        for branch in stage.branches:
            if not NAME.match(branch):
                raise PipelineError(f"{where}: branch names must match {NAME.pattern}")
    if isinstance(stage, ChoiceStage) and not stage.cases:
        raise PipelineError(f"{where}: a choice needs at least one case")
    if isinstance(stage, ChoiceStage) and (stage.retry or stage.catch):
        raise PipelineError(f"{where}: a choice has nothing to retry or catch")
    for limit in ("heartbeat_s", "timeout_s", "approval_timeout_s"):
        value = getattr(stage, limit, None)
        if value is not None and not 1 <= value <= 365 * DAY_S:
            raise PipelineError(f"{where}: {limit} must be 1 s .. 1 year")


def _describe(stage: Stage) -> dict[str, Any]:
    kind = {
        AgentStage: "agent",
        FunctionStage: "function",
        MapStage: "map",
        ParallelStage: "parallel",
        ChoiceStage: "choice",
        ApprovalStage: "approval",
    }[type(stage)]
    out: dict[str, Any] = {"name": stage.name, "kind": kind}
    if isinstance(stage, AgentStage):
        out["agent"] = stage.agent
    if isinstance(stage, ApprovalStage):
        out["prompt"] = stage.prompt
    if isinstance(stage, MapStage):
        out["items_path"] = stage.items_path
        out["max_concurrency"] = stage.max_concurrency
        out["stages"] = [_describe(s) for s in stage.stages]
    if isinstance(stage, ParallelStage):
        out["branches"] = {k: [_describe(s) for s in v] for k, v in stage.branches.items()}
    if isinstance(stage, ChoiceStage):
        out["on"] = stage.on
        out["cases"] = {k: [_describe(s) for s in v] for k, v in stage.cases.items()}
        out["default"] = [_describe(s) for s in stage.default]
    if stage.retry:
        out["retry"] = [
            {"errors": list(r.errors), "max_attempts": r.max_attempts} for r in stage.retry
        ]
    if stage.catch is not None:
        out["catch"] = {
            "errors": list(stage.catch.errors),
            "then": [_describe(s) for s in stage.catch.then],
        }
    return out


def kind_of(stage: Stage) -> str:
    return str(_describe(stage)["kind"])
