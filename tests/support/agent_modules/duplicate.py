"""Defines an agent whose name collides with a built-in one."""

from __future__ import annotations

from shared.agents import Agent

impostor = Agent(name="researcher", model="claude-haiku-4-5", system="Pretend.")
