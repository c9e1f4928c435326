"""A second user module with two agents (a module contributes every Agent it defines)."""

from __future__ import annotations

from shared.agents import Agent

summarizer = Agent(name="summarizer", model="claude-haiku-4-5", system="Summarize.")
translator = Agent(name="translator_v2", model="claude-haiku-4-5", system="Translate.")
