"""``switchyard dlq``: the runs whose queue message was dead-lettered, and their redrive to
the runs queue (``shared.logic.dlq``), on the stack's queues directly (an operator's AWS
credentials; see ``shared.cli.operator`` for how the stack is found)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from shared.cli import render
from shared.cli.client import CliError
from shared.cli.operator import (
    add_outputs_option,
    close,
    operator_settings,
    queue_services,
    quiet,
)

if TYPE_CHECKING:
    from shared.logic.dlq import DeadLetter
    from shared.logic.service import Services

T = TypeVar("T")
DEFAULT_LIMIT = 100


def register(sub: Any, output: argparse.ArgumentParser) -> None:
    dlq = sub.add_parser("dlq", help="dead-lettered runs: list them, send them back")
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    listing = commands.add_parser(
        "list", parents=[output], help="what is in the dead-letter queue (nothing is removed)"
    )
    listing.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help="at most N messages"
    )
    add_outputs_option(listing)
    listing.set_defaults(handler=cmd_list)

    redrive = commands.add_parser(
        "redrive",
        parents=[output],
        help="send dead letters back to the runs queue",
        description=(
            "A run marked dead_lettered is reopened (queued) and resumes from its journal; "
            "one not marked yet goes back as it is; a message whose run finished otherwise, "
            "is gone, or belongs to a thread is discarded; a run leased by a worker is skipped."
        ),
    )
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--run", dest="runs", action="append", metavar="RUN", help="this run's (repeatable)"
    )
    which.add_argument("--all", action="store_true", help="every dead letter")
    redrive.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help="look at most at N messages"
    )
    add_outputs_option(redrive)
    redrive.set_defaults(handler=cmd_redrive)


def _with_services(
    args: argparse.Namespace, use: Callable[[Services], Coroutine[Any, Any, T]]
) -> T:
    import asyncio

    if args.limit < 1:
        raise CliError("--limit must be at least 1")
    svc = queue_services(operator_settings(args.outputs))
    try:
        with quiet():
            return asyncio.run(use(svc))
    finally:
        close(svc.journal, svc.control, svc.queue)


def _view(dead: DeadLetter, now_ms: int) -> dict[str, Any]:
    run = dead.run
    error = run.error if run is not None else None
    if run is None:
        reason = "the run no longer exists"
    elif error is not None:
        reason = f"{error.code}: {error.message}"
    else:
        reason = f"not marked yet (the run is {run.status.value})"
    return {
        "run_id": dead.run_id,
        "message_id": dead.message_id,
        "agent": run.agent if run else None,
        "tenant": run.tenant if run else None,
        "status": run.status.value if run else None,
        "error_code": error.code if error else None,
        "reason": reason,
        "receive_count": dead.receive_count,
        "sent_at_ms": dead.sent_at_ms,
        "age_s": round(max(0, now_ms - dead.sent_at_ms) / 1000, 1) if dead.sent_at_ms else None,
    }


def cmd_list(args: argparse.Namespace) -> int:
    from shared.logic.dlq import list_dead_letters

    found = _with_services(args, lambda svc: list_dead_letters(svc, limit=args.limit))
    now_ms = int(time.time() * 1000)
    views = [_view(d, now_ms) for d in found]
    if args.json:
        render.emit_json({"dead_letters": views})
        return 0
    if not views:
        render.say("the dead-letter queue is empty")
        return 0
    rows = [
        (
            v["run_id"],
            v["agent"] or "-",
            render.clip(str(v["error_code"] or v["reason"]), 40),
            v["receive_count"],
            render.age(v["age_s"]) if v["age_s"] is not None else "-",
        )
        for v in views
    ]
    for line in render.table(("RUN", "AGENT", "REASON", "RECEIVES", "AGE"), rows):
        render.say(line)
    render.say(f"{len(views)} dead letter(s); send back: switchyard dlq redrive --run RUN | --all")
    return 0


def cmd_redrive(args: argparse.Namespace) -> int:
    from shared.logic.dlq import redrive

    wanted = set(args.runs) if args.runs else None
    outcomes = _with_services(args, lambda svc: redrive(svc, run_ids=wanted, limit=args.limit))
    if args.json:
        render.emit_json({"outcomes": [o.model_dump(mode="json") for o in outcomes]})
    elif not outcomes:
        render.say("nothing to redrive")
    else:
        rows = [(o.run_id, o.action, o.reason or "") for o in outcomes]
        for line in render.table(("RUN", "ACTION", "REASON"), rows):
            render.say(line)
    missing = sorted((wanted or set()) - {o.run_id for o in outcomes})
    if missing:
        raise CliError(f"not in the dead-letter queue: {', '.join(missing)}")
    return 0
