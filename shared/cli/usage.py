"""``switchyard usage``: tokens and cost of the caller's agents (``GET /v1/usage``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from shared.cli import render
from shared.cli.client import client_of

COLUMNS = ("runs", "steps", "input_tokens", "output_tokens", "cache_read_input_tokens")


def register(sub: Any, http: argparse.ArgumentParser) -> None:
    usage = sub.add_parser(
        "usage",
        parents=[http],
        help="tokens and cost, grouped by agent or tenant (GET /v1/usage)",
        description=(
            "Tokens and cost used in [--from, --to) (ISO-8601; the API's default window is "
            "the last 24 hours), counted in whole UTC hours: --from is rounded down and --to "
            "up to the hour. RUNS counts the runs whose first model call fell in the window."
        ),
    )
    usage.add_argument("--group-by", choices=("agent", "tenant"), help="default: agent")
    usage.add_argument("--from", dest="start", metavar="TIME", help="start (ISO-8601, inclusive)")
    usage.add_argument("--to", dest="end", metavar="TIME", help="end (ISO-8601, exclusive)")
    usage.set_defaults(handler=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    query = {"group_by": args.group_by, "from": args.start, "to": args.end}
    report = client_of(args).get("/v1/usage", query=query)
    if args.json or not isinstance(report, Mapping):
        render.emit_json(report)
        return 0
    render.say(
        f"usage from {render.when(report.get('from'))} to {render.when(report.get('to'))}, "
        f"by {report.get('group_by', '?')}"
    )
    groups = [g for g in report.get("groups") or [] if isinstance(g, Mapping)]
    total = report.get("total") if isinstance(report.get("total"), Mapping) else None
    if not groups:
        render.say("no usage in this window")
        return 0
    rows = [_row(str(g.get("key", "?")), g) for g in groups]
    if total is not None:
        rows.append(_row("TOTAL", total))
    headers = ("KEY", "RUNS", "STEPS", "INPUT", "OUTPUT", "CACHE READ", "COST")
    for line in render.table(headers, rows):
        render.say(line)
    return 0


def _row(key: str, totals: Mapping[str, Any]) -> tuple[str, ...]:
    return (
        key,
        *(render.count(totals.get(c)) for c in COLUMNS),
        render.money(totals.get("cost_usd")),
    )
