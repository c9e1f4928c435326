"""``switchyard agents list``: the API's agents (``GET /v1/agents``) when an API is named
(``--url`` or ``SWITCHYARD_URL``), else, or with ``--local``, this installation's registry
(the built-in examples plus ``SWITCHYARD_AGENT_MODULES``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from shared.cli import render
from shared.cli.client import client_of, url_configured


def register(sub: Any, http: argparse.ArgumentParser) -> None:
    agents = sub.add_parser("agents", help="the agents and their tools")
    commands = agents.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "list",
        parents=[http],
        help="list agents and their tools",
        description=(
            "GET /v1/agents of the API named by --url or SWITCHYARD_URL; without one (or "
            "with --local), the agents this installation defines."
        ),
    )
    listing.add_argument(
        "--local", action="store_true", help="this installation's registry, not the API's"
    )
    listing.set_defaults(handler=cmd_list)


def _local_agents() -> list[dict[str, Any]]:
    from shared.agents import AgentRegistry
    from shared.config import Settings

    settings = Settings.from_env()
    return [agent.describe() for agent in AgentRegistry.from_modules(settings.agent_modules)]


def cmd_list(args: argparse.Namespace) -> int:
    if args.local or not url_configured(args):
        body: Any = {"agents": _local_agents()}
    else:
        body = client_of(args).get("/v1/agents")
    if args.json:
        render.emit_json(body)
        return 0
    agents = body.get("agents") if isinstance(body, Mapping) else None
    show(agents if isinstance(agents, list) else [])
    return 0


def show(agents: Sequence[Mapping[str, Any]]) -> None:
    if not agents:
        render.say("no agents")
        return
    rows = []
    for agent in agents:
        tools = ", ".join(
            str(t.get("name", "?"))
            + ("*" if t.get("requires_approval") else "")
            + ("!" if t.get("side_effect") else "")
            for t in agent.get("tools") or []
        )
        rows.append(
            (agent.get("name", "?"), agent.get("model", "?"), agent.get("shape", "?"), tools or "-")
        )
    for line in render.table(("AGENT", "MODEL", "SHAPE", "TOOLS"), rows):
        render.say(line)
    render.say("(* needs approval, ! side effect)")
