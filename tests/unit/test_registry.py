"""Agent discovery: built-ins, user modules by import path, and the errors a bad setup gets."""

from __future__ import annotations

import pytest

from shared.agents import Agent, AgentRegistry, Limits
from shared.agents.registry import BUILTIN_MODULES
from shared.config import Settings
from shared.errors import AgentError, UnknownAgentError
from shared.models.run import Shape
from tests.support.runtime_kit import Toolbox

EXTRA = "tests.support.agent_modules.extra"
MORE = "tests.support.agent_modules.more"


def test_builtin_agents_load(registry: AgentRegistry) -> None:
    assert [a.name for a in registry] == [
        "ops-assistant",
        "researcher",
        "section-summarizer",
        "ticket-triage",
    ]
    assert len(registry) == 4
    researcher = registry.get("researcher")
    assert [t.name for t in researcher.tools] == ["search_docs", "read_document", "save_report"]
    assert researcher.models == ("claude-sonnet-4-6", "claude-haiku-4-5")
    assert registry.get("ticket-triage").shape is Shape.SYNC
    restart = registry.get("ops-assistant").tool("restart_service")
    assert restart is not None
    assert (restart.side_effect, restart.requires_approval) == (True, True)


def test_builtins_can_be_left_out() -> None:
    assert len(AgentRegistry.from_modules([], builtins=False)) == 0
    assert [a.name for a in AgentRegistry.from_modules([EXTRA], builtins=False)] == ["echo-bot"]


def test_extra_modules_from_env_are_loaded_with_the_builtins() -> None:
    settings = Settings.from_env({"SWITCHYARD_AGENT_MODULES": f" {EXTRA} ,{MORE},"})
    assert settings.agent_modules == (EXTRA, MORE)
    registry = AgentRegistry.from_modules(settings.agent_modules)
    names = [a.name for a in registry]
    assert names == sorted(names)
    assert {"echo-bot", "summarizer", "translator_v2", "researcher"} <= set(names)
    assert len(registry) == len(BUILTIN_MODULES) + 3
    echo = registry.get("echo-bot")
    assert echo.limits.max_steps == 3
    assert echo.describe()["tools"][0]["name"] == "echo"


def test_listing_a_module_twice_is_harmless() -> None:
    registry = AgentRegistry.from_modules([EXTRA, EXTRA, "agents.research"])
    assert "echo-bot" in registry
    assert len(registry) == len(BUILTIN_MODULES) + 1


def test_duplicate_agent_names_raise() -> None:
    with pytest.raises(AgentError, match="two agents are named 'researcher'"):
        AgentRegistry.from_modules(["tests.support.agent_modules.duplicate"])
    first = Agent(name="same", model="m", system="s")
    second = Agent(name="same", model="m", system="other")
    with pytest.raises(AgentError, match="'same'"):
        AgentRegistry([first, second])


def test_module_without_agents_raises() -> None:
    with pytest.raises(AgentError, match="defines no Agent"):
        AgentRegistry.from_modules(["tests.support.agent_modules.empty"])


def test_unimportable_module_raises_agent_error() -> None:
    with pytest.raises(AgentError, match=r"cannot import agent module 'tests\.support\.nope'"):
        AgentRegistry.from_modules(["tests.support.nope"])


def test_unknown_agent(registry: AgentRegistry) -> None:
    with pytest.raises(UnknownAgentError) as info:
        registry.get("nobody")
    assert info.value.code == "unknown_agent"
    assert isinstance(info.value, AgentError)
    assert info.value.details == {
        "known": ["ops-assistant", "researcher", "section-summarizer", "ticket-triage"]
    }
    assert "nobody" not in registry


@pytest.mark.parametrize(
    "name", ["", "Researcher", "9lives", "has space", "dots.are.bad", "x" * 65, "-dash"]
)
def test_bad_agent_names_are_rejected(name: str) -> None:
    with pytest.raises(AgentError, match="must match"):
        Agent(name=name, model="m", system="s")


@pytest.mark.parametrize("name", ["a", "ticket-triage", "snake_case_2", "x" * 64])
def test_good_agent_names(name: str) -> None:
    assert Agent(name=name, model="m", system="s").name == name


def test_duplicate_tool_names_in_one_agent_are_rejected(toolbox: Toolbox) -> None:
    lookup = toolbox.tools["lookup"]
    with pytest.raises(AgentError, match="duplicate tools"):
        Agent(name="dup", model="m", system="s", tools=(lookup, lookup))


def test_describe(toolbox: Toolbox) -> None:
    agent = toolbox.agent("lookup", limits=Limits(max_steps=4), fallback_models=("backup",))
    described = agent.describe()
    assert described["model"] == "test-model"
    assert described["fallback_models"] == ["backup"]
    assert described["limits"]["max_steps"] == 4
    assert described["shape"] == "auto"
    assert agent.tool("lookup") is toolbox.tools["lookup"]
    assert agent.tool("missing") is None
