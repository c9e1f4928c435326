"""``switchyard keys``: create and revoke API keys, in the stack's table, directly (an
operator's AWS credentials; see ``shared.cli.operator`` for how the stack is found).

``SWITCHYARD_BACKEND=memory`` uses a throwaway in-memory store (demos, tests).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from shared.cli import render
from shared.cli.operator import add_outputs_option, close, operator_settings


def register(sub: Any, output: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="API keys (stored hashed; each belongs to a tenant)")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = commands.add_parser(
        "create", parents=[output], help="create a key for a tenant; prints it once"
    )
    create.add_argument("--tenant", required=True, help="tenant name: a-z, 0-9 and -")
    create.add_argument("--name", default="", help="a label for the key")
    add_outputs_option(create)
    create.set_defaults(handler=cmd_create)
    revoke = commands.add_parser("revoke", parents=[output], help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key id (the part after sy_)")
    add_outputs_option(revoke)
    revoke.set_defaults(handler=cmd_revoke)


def cmd_create(args: argparse.Namespace) -> int:
    import asyncio

    from shared.logic.keys import create_key
    from shared.wiring import build_control_store

    store = build_control_store(operator_settings(args.outputs))
    try:
        key, record = asyncio.run(create_key(store, args.tenant, args.name))
    finally:
        close(store)
    if args.json:
        shown = record.model_dump(mode="json", exclude={"key_hash"})
        render.say(json.dumps({"api_key": key, **shown}))
    else:
        render.say(f"SWITCHYARD_API_KEY={key}")
        render.say(f"# key id {record.key_id} for tenant {record.tenant}: shown once, store it now")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    import asyncio

    from shared.logic.keys import revoke_key
    from shared.wiring import build_control_store

    store = build_control_store(operator_settings(args.outputs))
    try:
        record = asyncio.run(revoke_key(store, args.key_id))
    finally:
        close(store)
    if args.json:
        render.say(record.model_dump_json(exclude={"key_hash"}))
    else:
        render.say(f"revoked key {record.key_id} of tenant {record.tenant} at {record.revoked_at}")
    return 0
