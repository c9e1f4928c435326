"""``switchyard tour``: the example agents end to end, once, in this process, offline (the
DynamoDB + S3 journal on moto, or in memory); no server, no key needed."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    tour = sub.add_parser(
        "tour",
        help="run the example agents end to end once, offline, in this process",
        description=(
            "A one-shot demo: each example agent runs once on the offline model, with a "
            "worker crash, a resume and a human approval. For the local stack, see dev."
        ),
    )
    tour.add_argument(
        "--journal",
        choices=["dynamodb", "memory"],
        default="dynamodb",
        help="journal backend (dynamodb = DynamoDB+S3 on moto, in-process)",
    )
    tour.add_argument(
        "--latency", type=float, default=0.15, help="offline model latency per call, seconds"
    )
    tour.set_defaults(handler=cmd_tour)


def cmd_tour(args: argparse.Namespace) -> int:
    import asyncio

    from shared.config import Settings
    from shared.devstack import run_demo

    return asyncio.run(
        run_demo(Settings.from_env(), journal_kind=args.journal, latency_s=args.latency)
    )
