"""Pipeline discovery, like agents': every module-level ``Pipeline`` in the built-in example
modules and in ``SWITCHYARD_AGENT_MODULES``."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from shared.agents.registry import AgentRegistry
from shared.errors import PipelineError, UnknownPipelineError
from shared.pipelines.definition import Pipeline

BUILTIN_MODULES: tuple[str, ...] = ("agents.documents", "agents.ops")


class PipelineRegistry:
    def __init__(self, pipelines: Iterable[Pipeline] = ()) -> None:
        self._pipelines: dict[str, Pipeline] = {}
        for pipeline in pipelines:
            self.add(pipeline)

    def add(self, pipeline: Pipeline) -> None:
        existing = self._pipelines.get(pipeline.name)
        if existing is not None and existing is not pipeline:
            raise PipelineError(f"two pipelines are named {pipeline.name!r}")
        self._pipelines[pipeline.name] = pipeline

    def get(self, name: str) -> Pipeline:
        try:
            return self._pipelines[name]
        except KeyError:
            raise UnknownPipelineError(
                f"unknown pipeline {name!r}", details={"known": sorted(self._pipelines)}
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(sorted(self._pipelines.values(), key=lambda p: p.name))

    def __len__(self) -> int:
        return len(self._pipelines)

    def check_agents(self, agents: AgentRegistry) -> None:
        """Every agent stage names a registered agent (checked at synth and at start-up)."""
        for pipeline in self:
            missing = sorted(a for a in pipeline.agents() if a not in agents)
            if missing:
                raise PipelineError(
                    f"pipeline {pipeline.name!r} uses unknown agents {missing}",
                    details={"known": sorted(a.name for a in agents)},
                )

    @classmethod
    def from_modules(cls, modules: Iterable[str], *, builtins: bool = True) -> PipelineRegistry:
        registry = cls()
        for module_name in [*(BUILTIN_MODULES if builtins else ()), *modules]:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise PipelineError(
                    f"cannot import pipeline module {module_name!r}: {exc}"
                ) from exc
            for value in vars(module).values():
                if isinstance(value, Pipeline):
                    registry.add(value)
        return registry
