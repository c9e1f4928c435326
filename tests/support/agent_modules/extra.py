"""A user's agent module: defines one agent with one tool."""

from __future__ import annotations

from pydantic import BaseModel

from shared.agents import Agent, Limits, tool


class EchoInput(BaseModel):
    text: str


@tool
def echo(args: EchoInput) -> str:
    """Echo the text back."""
    return args.text


echo_agent = Agent(
    name="echo-bot",
    description="Echoes.",
    model="claude-haiku-4-5",
    system="Echo what you are told.",
    tools=(echo,),
    limits=Limits(max_steps=3),
)
