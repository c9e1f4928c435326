"""The durable agent loop: model call, tool calls, results, journaled step by step."""

from shared.runtime.loop import AgentRuntime, RuntimeOptions

__all__ = ["AgentRuntime", "RuntimeOptions"]
