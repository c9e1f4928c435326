"""The agent definition API: agents, typed tools, limits and the registry."""

from shared.agents.definition import Agent, Limits
from shared.agents.registry import AgentRegistry
from shared.agents.tools import Tool, ToolContext, tool

__all__ = ["Agent", "AgentRegistry", "Limits", "Tool", "ToolContext", "tool"]
