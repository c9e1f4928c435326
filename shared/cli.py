"""The `switchyard` command line.

Errors are one line on stderr with a non-zero exit; `--json` gives machine-readable output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.errors import SwitchyardError

EXIT_ERROR = 1
EXIT_USAGE = 2


def _registry(settings: Settings) -> AgentRegistry:
    return AgentRegistry.from_modules(settings.agent_modules)


def cmd_agents_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = _registry(settings)
    if args.json:
        print(json.dumps([a.describe() for a in registry], indent=2))
        return 0
    for agent in registry:
        tools = ", ".join(
            t.name + ("*" if t.requires_approval else "") + ("!" if t.side_effect else "")
            for t in agent.tools
        )
        print(f"{agent.name:<16} {agent.model:<20} {agent.shape.value:<6} tools: {tools or '-'}")
    print("(* needs approval, ! side effect)")
    return 0


def cmd_dev(args: argparse.Namespace, settings: Settings) -> int:
    from shared.devstack import run_demo

    return asyncio.run(run_demo(settings, journal_kind=args.journal, latency_s=args.latency))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchyard", description="Run AI agents durably.")
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the example agents end to end, offline")
    dev.add_argument(
        "--journal",
        choices=["dynamodb", "memory"],
        default="dynamodb",
        help="journal backend (dynamodb = DynamoDB+S3 on moto, in-process)",
    )
    dev.add_argument(
        "--latency", type=float, default=0.15, help="offline model latency per call, seconds"
    )
    dev.set_defaults(handler=cmd_dev)

    agents = sub.add_parser("agents", help="agents known to this installation")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    listing = agents_sub.add_parser("list", help="list agents and their tools")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_agents_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        code: int = args.handler(args, settings)
        return code
    except SwitchyardError as exc:
        print(f"switchyard: error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
