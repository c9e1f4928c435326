"""Agent discovery: the built-in examples plus the modules in SWITCHYARD_AGENT_MODULES.

A module contributes every module-level ``Agent`` instance it defines, so users add agents
by writing a module and listing its import path, without editing this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator

from shared.agents.definition import Agent
from shared.errors import AgentError, UnknownAgentError

BUILTIN_MODULES: tuple[str, ...] = (
    "agents.classifier",
    "agents.research",
    "agents.ops",
    "agents.documents",
)


class AgentRegistry:
    def __init__(self, agents: Iterable[Agent] = ()) -> None:
        self._agents: dict[str, Agent] = {}
        for agent in agents:
            self.add(agent)

    def add(self, agent: Agent) -> None:
        existing = self._agents.get(agent.name)
        if existing is not None and existing is not agent:
            raise AgentError(f"two agents are named {agent.name!r}")
        self._agents[agent.name] = agent

    def get(self, name: str) -> Agent:
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgentError(
                f"unknown agent {name!r}", details={"known": sorted(self._agents)}
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def __iter__(self) -> Iterator[Agent]:
        return iter(sorted(self._agents.values(), key=lambda a: a.name))

    def __len__(self) -> int:
        return len(self._agents)

    @classmethod
    def from_modules(cls, modules: Iterable[str], *, builtins: bool = True) -> AgentRegistry:
        registry = cls()
        names = [*(BUILTIN_MODULES if builtins else ()), *modules]
        for module_name in names:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise AgentError(f"cannot import agent module {module_name!r}: {exc}") from exc
            found = [v for v in vars(module).values() if isinstance(v, Agent)]
            if not found and not _defines_pipeline(module):
                raise AgentError(f"agent module {module_name!r} defines no Agent or Pipeline")
            for agent in found:
                registry.add(agent)
        return registry


def _defines_pipeline(module: object) -> bool:
    from shared.pipelines.definition import Pipeline

    return any(isinstance(v, Pipeline) for v in vars(module).values())
