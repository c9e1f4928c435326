"""``switchyard runs``: submit, get, list, tail, cancel, approve (the runs routes of the API)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from shared.cli import render
from shared.cli.client import ApiError, Client, CliError, client_of, path_part
from shared.cli.inputs import add_input_options, json_object, read_input
from shared.cli.render import TERMINAL

LONG_POLL_S = 20  # the API's maximum `wait`
RETRIES = 3  # of a page of events, on 429 and 5xx
PAGE = 100
STATUSES = ("queued", "running", "awaiting_approval", "succeeded", "failed", "cancelled")


class RunEnded(CliError):
    """The run finished, but not ``succeeded``: exit status 1, its error as the one line."""


def register(sub: Any, http: argparse.ArgumentParser) -> None:
    runs = sub.add_parser("runs", help="submit runs, follow them, approve or cancel them")
    commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    submit = commands.add_parser(
        "submit",
        parents=[http],
        help="submit a run (POST /v1/runs)",
        description="Submit a run of AGENT. Prints its id and status; --tail then follows it.",
    )
    submit.add_argument("agent", metavar="AGENT", help="an agent name (switchyard agents list)")
    add_input_options(submit, required=True)
    submit.add_argument("--thread", metavar="ID", help="continue this thread's conversation")
    submit.add_argument("--mode", choices=("auto", "sync", "async"), help="default: auto")
    submit.add_argument("--metadata", metavar="JSON", help='an object of strings: {"k": "v"}')
    submit.add_argument("--webhook-url", metavar="URL", help="called when the run finishes")
    submit.add_argument("--max-steps", type=int, metavar="N", help="budget: at most N steps")
    submit.add_argument("--max-cost", type=float, metavar="USD", help="budget: at most USD")
    submit.add_argument(
        "--on-conflict",
        choices=("reject", "enqueue", "interrupt"),
        help="when the thread has a run in progress (default: reject)",
    )
    submit.add_argument(
        "--idempotency-key", metavar="KEY", help="a retry with the same key returns the same run"
    )
    submit.add_argument("--tail", action="store_true", help="then follow it, as runs tail")
    submit.set_defaults(handler=cmd_submit)

    get = commands.add_parser("get", parents=[http], help="show a run (GET /v1/runs/{id})")
    get.add_argument("run_id", metavar="RUN")
    get.set_defaults(handler=cmd_get)

    listing = commands.add_parser("list", parents=[http], help="list runs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--agent", metavar="NAME")
    listing.add_argument("--thread", metavar="ID")
    listing.add_argument("--limit", type=int, metavar="N", help="page size, 1-100 (default 20)")
    listing.add_argument("--cursor", metavar="CURSOR", help="next_cursor of a previous page")
    listing.add_argument("--all", action="store_true", help="every page, not just the first")
    listing.set_defaults(handler=cmd_list)

    tail = commands.add_parser(
        "tail",
        parents=[http],
        help="follow a run's events until it finishes",
        description=(
            "Print a run's events as they happen (long-poll), one line each; stop when the "
            "run finishes. Exit 0 if it succeeded, 1 if it failed or was cancelled."
        ),
    )
    tail.add_argument("run_id", metavar="RUN")
    tail.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after SEQ")
    tail.add_argument("--no-follow", action="store_true", help="print what is there and stop")
    tail.set_defaults(handler=cmd_tail)

    cancel = commands.add_parser("cancel", parents=[http], help="ask a run to stop")
    cancel.add_argument("run_id", metavar="RUN")
    cancel.set_defaults(handler=cmd_cancel)

    approve = commands.add_parser(
        "approve", parents=[http], help="approve (or --reject) the tool calls a run waits on"
    )
    approve.add_argument("run_id", metavar="RUN")
    approve.add_argument("--reject", action="store_true", help="refuse instead of approving")
    approve.add_argument("--comment", metavar="TEXT", help="recorded with the decision")
    approve.add_argument(
        "--edited-input", metavar="JSON", help="replaces the tool's input (one pending call)"
    )
    approve.set_defaults(handler=cmd_approve)


def _run_path(run_id: str, *rest: str) -> str:
    return "/".join(["/v1/runs", path_part(run_id), *rest])


def _check_ended(run: Mapping[str, Any]) -> int:
    status = run.get("status")
    if status in TERMINAL and status != "succeeded":
        error = run.get("error") or {}
        reason = f": {error.get('code', 'error')}: {error.get('message', '')}" if error else ""
        raise RunEnded(f"run {run.get('run_id')} {status}{reason}")
    return 0


# ---- submit ----------------------------------------------------------------------------------


def submit_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"agent": args.agent, "input": read_input(args)}
    if args.thread:
        body["thread_id"] = args.thread
    if args.mode:
        body["mode"] = args.mode
    if args.metadata:
        body["metadata"] = json_object(args.metadata, "--metadata")
    if args.webhook_url:
        body["webhook_url"] = args.webhook_url
    budget: dict[str, Any] = {}
    if args.max_steps is not None:
        budget["max_steps"] = args.max_steps
    if args.max_cost is not None:
        budget["max_cost_usd"] = args.max_cost
    if budget:
        body["budget"] = budget
    if args.on_conflict:
        body["on_conflict"] = args.on_conflict
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    client = client_of(args)
    body = submit_body(args)
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    answer = client.call("POST", "/v1/runs", body=body, headers=headers)
    run: dict[str, Any] = answer.body
    replayed = answer.headers.get("idempotent-replayed") == "true"
    if args.json:
        (render.emit_json_line if args.tail else render.emit_json)(run)
    elif answer.status == 200 and not args.tail:
        render.say(render.run_headline(run) + ("  (replayed)" if replayed else ""))
        for line in render.run_details(run)[1:]:
            render.say(line)
    else:
        promoted = "  (promoted to a worker)" if run.get("promoted") else ""
        render.say(render.run_headline(run) + promoted + ("  (replayed)" if replayed else ""))
        if not args.tail and run.get("status") not in TERMINAL:
            render.say(f"follow it: switchyard runs tail {run['run_id']}")
    if args.tail:
        return follow(client, str(run["run_id"]), as_json=args.json, announce=False)
    return _check_ended(run)


# ---- get, list, cancel, approve ----------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    run = client_of(args).get(_run_path(args.run_id))
    if args.json:
        render.emit_json(run)
        return 0
    for line in render.run_details(run):
        render.say(line)
    if run.get("status") == "awaiting_approval":
        render.say(render.approve_hint(str(run["run_id"])))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    client = client_of(args)
    query: dict[str, Any] = {
        "status": args.status,
        "agent": args.agent,
        "thread_id": args.thread,
        "limit": args.limit or (PAGE if args.all else None),
        "cursor": args.cursor,
    }
    page = client.get("/v1/runs", query=query)
    runs: list[dict[str, Any]] = list(page.get("runs") or [])
    cursor = page.get("next_cursor")
    while args.all and cursor:
        page = client.get("/v1/runs", query={**query, "cursor": cursor})
        runs.extend(page.get("runs") or [])
        cursor = page.get("next_cursor")
    if args.json:
        render.emit_json({**page, "runs": runs, "next_cursor": cursor})
        return 0
    if not runs:
        render.say("no runs")
        return 0
    rows = [
        (
            r.get("run_id", "?"),
            r.get("agent", "?"),
            r.get("status", "?"),
            r.get("shape", "?"),
            r.get("thread_id") or "-",
            render.when(r.get("created_at")),
        )
        for r in runs
    ]
    for line in render.table(("RUN", "AGENT", "STATUS", "SHAPE", "THREAD", "CREATED"), rows):
        render.say(line)
    if cursor:
        again = ["switchyard runs list"]
        for option, value in (
            ("--status", args.status),
            ("--agent", args.agent),
            ("--thread", args.thread),
            ("--limit", args.limit),
        ):
            if value is not None:
                again.append(f"{option} {value}")
        render.say(f"more: {' '.join(again)} --cursor {cursor}  (or --all)")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    run = client_of(args).post(_run_path(args.run_id, "cancel"))
    if args.json:
        render.emit_json(run)
    else:
        render.say(
            f"cancel requested for {run.get('run_id', args.run_id)} "
            f"(now {run.get('status', '?')}): it stops at its next step boundary"
        )
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    if args.reject and args.edited_input:
        raise CliError("--edited-input goes with an approval, not with --reject")
    body: dict[str, Any] = {"decision": "reject" if args.reject else "approve"}
    if args.comment:
        body["comment"] = args.comment
    if args.edited_input:
        body["edited_input"] = json_object(args.edited_input, "--edited-input")
    run = client_of(args).post(_run_path(args.run_id, "approval"), body)
    if args.json:
        render.emit_json(run)
    else:
        decided = "rejected" if args.reject else "approved"
        run_id = run.get("run_id", args.run_id)
        render.say(
            f"{decided}: {run_id} is {run.get('status', '?')}; "
            f"follow it: switchyard runs tail {run_id}"
        )
    return 0


# ---- tail ------------------------------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    return follow(
        client_of(args),
        args.run_id,
        after=args.after,
        keep_following=not args.no_follow,
        as_json=args.json,
    )


def _events_page(client: Client, run_id: str, after: int, wait: int) -> dict[str, Any]:
    """One page of events; a long-poll the gateway cut short or a passing 5xx/429 is tried
    again a few times (with a short backoff) before it is the command's error."""
    for attempt in range(RETRIES + 1):
        try:
            page: dict[str, Any] = client.get(
                _run_path(run_id, "events"),
                query={"after": after, "wait": wait, "limit": PAGE},
                timeout_s=wait + 20,
            )
            return page
        except ApiError as exc:
            if attempt == RETRIES or not (exc.status == 429 or exc.status >= 500):
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def follow(
    client: Client,
    run_id: str,
    *,
    after: int = 0,
    keep_following: bool = True,
    as_json: bool = False,
    announce: bool = True,
) -> int:
    """Print the run's events after ``after`` as they come (long-polling ``wait=20``) until
    its terminal ``run.status`` event (or, without ``keep_following``, until none is left);
    then the outcome. 0 if it succeeded or is still going, ``RunEnded`` otherwise."""
    run = client.get(_run_path(run_id))
    status = str(run.get("status"))
    if announce and not as_json:
        render.say(f"following {run_id} ({run.get('agent', '?')}), {status}; Ctrl-C stops")
    remarked: set[str] = set()
    status_seq, hinted_seq = -1, -2
    first = True
    while True:
        # The first page at once (what happened so far), then long-polls for what comes.
        wait = LONG_POLL_S if keep_following and not first and status not in TERMINAL else 0
        first = False
        page = _events_page(client, run_id, after, wait)
        events: list[dict[str, Any]] = list(page.get("events") or [])
        for event in events:
            if as_json:
                render.emit_json_line(event)
            else:
                render.say(render.event_line(event))
            if event.get("type") == "run.status":
                status = str((event.get("data") or {}).get("status", status))
                status_seq = int(event.get("seq", status_seq))
        # Hint once per pause, and only if the run is (still) paused as of this page.
        if status == "awaiting_approval" and hinted_seq != status_seq and not as_json:
            render.say(render.approve_hint(run_id))
            hinted_seq = status_seq
        after = int(page.get("next_after", after))
        if events:
            if events[-1].get("type") == "run.status" and status in TERMINAL:
                break
            continue
        if not keep_following:
            break
        # Nothing new within the wait: is the run over (a cursor past its last event)?
        status = str(client.get(_run_path(run_id)).get("status", status))
        if status in TERMINAL:
            break
        if not as_json and status not in remarked:
            remarked.add(status)
            idle = " (no worker has taken it yet)" if status == "queued" else ""
            render.say(f"... still {status}{idle}")
    final = client.get(_run_path(run_id))
    if final.get("status") not in TERMINAL:
        return 0
    if not as_json:
        render.say(f"{final['status']}: {render.usage_line(final)}")
        if final.get("output") is not None:
            render.say(render.output_text(final["output"]))
    return _check_ended(final)
