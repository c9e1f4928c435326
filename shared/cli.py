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
from shared.tenancy.base import ControlStore

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


def _control_store(settings: Settings) -> ControlStore:
    """The control store the deployed (or local) stack uses: DynamoDB via the AWS
    environment (AWS_ENDPOINT_URL for the local stack), unless SWITCHYARD_BACKEND=memory."""
    from shared.wiring import build_control_store

    return build_control_store(settings)


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.logic.keys import create_key

    key, record = asyncio.run(create_key(_control_store(settings), args.tenant, args.name))
    if args.json:
        print(json.dumps({"api_key": key, **record.model_dump(mode="json", exclude={"key_hash"})}))
    else:
        print(f"SWITCHYARD_API_KEY={key}")
        print(f"# key id {record.key_id} for tenant {record.tenant}: shown once, store it now")
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from shared.logic.keys import revoke_key

    record = asyncio.run(revoke_key(_control_store(settings), args.key_id))
    if args.json:
        print(record.model_dump_json(exclude={"key_hash"}))
    else:
        print(f"revoked key {record.key_id} of tenant {record.tenant} at {record.revoked_at}")
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

    keys = sub.add_parser("keys", help="API keys (stored hashed; each belongs to a tenant)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant; prints it once")
    create.add_argument("--tenant", required=True, help="tenant name: a-z, 0-9 and -")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=cmd_keys_create)
    revoke = keys_sub.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", help="the key id (the part after sy_)")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(handler=cmd_keys_revoke)

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
