"""``switchyard jobs``: start a pipeline job, show it, watch it, decide its approvals, cancel
it; ``switchyard pipelines``: the pipelines a stack runs (the jobs routes of the API).

A job's view (``GET /v1/jobs/{id}``) is its status, its task stages in definition order (kind,
status, runs, cost), what it waits on a person for (``pending_approvals``), and its output or
error. ``jobs watch`` polls that view and prints one line per stage status change.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shared.cli import render
from shared.cli.client import ApiError, Client, CliError, client_of, path_part, url_configured
from shared.cli.inputs import json_object, parse_json
from shared.cli.render import TERMINAL

# `jobs watch` polls every --interval seconds while the job moves, backing off (x1.5) to at
# most MAX_INTERVAL_S while nothing changes (a job may wait days on an approval).
DEFAULT_INTERVAL_S = 1.0
MIN_INTERVAL_S = 0.2
MAX_INTERVAL_S = 10.0
BACKOFF = 1.5
RETRIES = 3  # of one poll, on 429 and 5xx


class JobEnded(CliError):
    """The job finished, but not ``succeeded``: exit status 1, its error as the one line."""


def register(sub: Any, http: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="pipeline jobs (Step Functions)")
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    start = commands.add_parser(
        "start",
        parents=[http],
        help="start a job (POST /v1/jobs)",
        description="Start a job of PIPELINE. Prints it; --watch then follows it.",
    )
    start.add_argument("pipeline", metavar="PIPELINE", help="a pipeline (switchyard pipelines)")
    start.add_argument(
        "--input-json",
        metavar="JSON",
        help="the job's input, a JSON object; @PATH reads it from a file, @- from stdin",
    )
    start.add_argument("--metadata", metavar="JSON", help='an object of strings: {"k": "v"}')
    start.add_argument(
        "--idempotency-key", metavar="KEY", help="a retry with the same key returns the same job"
    )
    start.add_argument("--watch", action="store_true", help="then follow it, as jobs watch")
    _watch_options(start)
    start.set_defaults(handler=cmd_start)

    get = commands.add_parser("get", parents=[http], help="show a job (GET /v1/jobs/{id})")
    get.add_argument("job_id", metavar="JOB")
    get.set_defaults(handler=cmd_get)

    watch = commands.add_parser(
        "watch",
        parents=[http],
        help="follow a job until it ends",
        description=(
            "Poll a job and print one line per stage status change, and a hint when it waits "
            "for an approval; stop when it ends. Exit 0 if it succeeded, 1 if it failed, was "
            "cancelled, or --timeout passed first."
        ),
    )
    watch.add_argument("job_id", metavar="JOB")
    _watch_options(watch)
    watch.set_defaults(handler=cmd_watch)

    approve = commands.add_parser(
        "approve",
        parents=[http],
        help="approve (or --reject) what a job waits on: a gate or a stage's paused run",
    )
    approve.add_argument("job_id", metavar="JOB")
    approve.add_argument("--reject", action="store_true", help="refuse instead of approving")
    approve.add_argument("--comment", metavar="TEXT", help="recorded with the decision")
    approve.add_argument(
        "--stage", metavar="NAME", help="the stage to decide, when more than one waits"
    )
    approve.set_defaults(handler=cmd_approve)

    cancel = commands.add_parser("cancel", parents=[http], help="stop a job")
    cancel.add_argument("job_id", metavar="JOB")
    cancel.set_defaults(handler=cmd_cancel)


def register_pipelines(sub: Any, http: argparse.ArgumentParser) -> None:
    pipelines = sub.add_parser(
        "pipelines",
        parents=[http],
        help="the pipelines and their stages",
        description=(
            "GET /v1/pipelines of the API named by --url or SWITCHYARD_URL; without one (or "
            "with --local), the pipelines this installation defines."
        ),
    )
    _local_option(pipelines)
    pipelines.set_defaults(handler=cmd_pipelines)
    commands = pipelines.add_subparsers(dest="pipelines_command", metavar="COMMAND")
    listing = commands.add_parser("list", parents=[http], help="list pipelines (the default)")
    _local_option(listing)
    listing.set_defaults(handler=cmd_pipelines)


def _local_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="store_true",
        default=argparse.SUPPRESS,
        help="this installation's pipelines, not the API's",
    )


def _watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=_interval,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between polls while the job moves (default {DEFAULT_INTERVAL_S:g}; "
        f"backs off to {MAX_INTERVAL_S:g} while nothing changes)",
    )
    parser.add_argument(
        "--timeout", type=_positive, metavar="S", help="give up (exit 1) after S seconds"
    )


def _interval(text: str) -> float:
    value = _positive(text)
    if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"must be between {MIN_INTERVAL_S:g} and {MAX_INTERVAL_S:g} seconds"
        )
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _job_path(job_id: str, *rest: str) -> str:
    return "/".join(["/v1/jobs", path_part(job_id), *rest])


# ---- showing a job ---------------------------------------------------------------------------


def headline(job: Mapping[str, Any]) -> str:
    return f"{job.get('job_id', '?')}  {job.get('status', '?')}  ({job.get('pipeline', '?')})"


def error_text(error: Mapping[str, Any]) -> str:
    where = f" at {error['stage']}" if error.get("stage") else ""
    message = f": {error['message']}" if error.get("message") else ""
    return f"{error.get('code', 'error')}{where}{message}"


def _runs(stage: Mapping[str, Any]) -> str:
    runs = stage.get("runs") or []
    if not runs:
        return "-"
    return str(runs[0]) if len(runs) == 1 else f"{len(runs)} runs"


def stage_lines(stages: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = [
        (
            s.get("name", "?"),
            s.get("kind", "?"),
            s.get("status", "?"),
            _runs(s),
            render.money(s.get("cost_usd")),
        )
        for s in stages
    ]
    return [
        "    " + line for line in render.table(("STAGE", "KIND", "STATUS", "RUNS", "COST"), rows)
    ]


def approval_lines(job: Mapping[str, Any]) -> list[str]:
    """What the job waits on, and the command that decides it."""
    pending = [p for p in job.get("pending_approvals") or [] if isinstance(p, Mapping)]
    lines: list[str] = []
    for item in pending:
        stage = item.get("stage", "?")
        if item.get("kind") == "gate":
            lines.append(f"  awaits approval at {stage}: {item.get('prompt') or '(no prompt)'}")
        else:
            calls = ", ".join(
                f"{c.get('name', '?')}({render.clip(render.compact(c.get('input', {})), 60)})"
                for c in item.get("calls") or []
                if isinstance(c, Mapping)
            )
            lines.append(
                f"  awaits approval at {stage}: run {item.get('run_id', '?')} wants "
                f"{calls or 'a tool call'}"
            )
    if pending:
        lines.append("  " + approve_hint(str(job.get("job_id", "?")), pending))
    return lines


def approve_hint(job_id: str, pending: Sequence[Mapping[str, Any]]) -> str:
    command = f"switchyard jobs approve {job_id}"
    if len(pending) > 1:
        stages = "|".join(str(p.get("stage", "?")) for p in pending)
        command += f" --stage {stages}"
    return f"decide: {command}  (or --reject; --comment TEXT)"


def job_details(job: Mapping[str, Any]) -> list[str]:
    lines = [headline(job)]
    lines.append(f"  cost      {render.money(job.get('cost_usd'))}")
    lines.append(f"  created   {render.when(job.get('created_at'))}")
    if job.get("finished_at"):
        lines.append(f"  finished  {render.when(job.get('finished_at'))}")
    if job.get("metadata"):
        lines.append(f"  metadata  {render.compact(job['metadata'])}")
    stages = [s for s in job.get("stages") or [] if isinstance(s, Mapping)]
    if stages:
        lines.append("  stages")
        lines.extend(stage_lines(stages))
    lines.extend(approval_lines(job))
    error = job.get("error")
    if isinstance(error, Mapping):
        lines.append(f"  error     {error_text(error)}")
    if job.get("output") is not None:
        lines.append("  output")
        lines.extend("    " + line for line in render.output_text(job["output"]).splitlines())
    return lines


def _show(job: Any) -> None:
    if not isinstance(job, Mapping):
        render.emit_json(job)
        return
    for line in job_details(job):
        render.say(line)


def _check_ended(job: Mapping[str, Any]) -> int:
    status = job.get("status")
    if status in TERMINAL and status != "succeeded":
        error = job.get("error")
        reason = f": {error_text(error)}" if isinstance(error, Mapping) else ""
        raise JobEnded(f"job {job.get('job_id')} {status}{reason}")
    return 0


# ---- commands --------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    client = client_of(args)
    body: dict[str, Any] = {"pipeline": args.pipeline}
    if args.input_json is not None:
        value = parse_json(args.input_json, "--input-json")
        if not isinstance(value, dict):
            raise CliError("--input-json must be a JSON object (a job's input is an object)")
        body["input"] = value
    if args.metadata:
        body["metadata"] = json_object(args.metadata, "--metadata")
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    answer = client.call("POST", "/v1/jobs", body=body, headers=headers)
    job: dict[str, Any] = answer.body
    replayed = answer.headers.get("idempotent-replayed") == "true"
    if args.json:
        (render.emit_json_line if args.watch else render.emit_json)(job)
    elif args.watch:
        render.say(headline(job) + ("  (replayed)" if replayed else ""))
    else:
        lines = job_details(job)
        render.say(lines[0] + ("  (replayed)" if replayed else ""))
        for line in lines[1:]:
            render.say(line)
        if job.get("status") not in TERMINAL:
            render.say(f"follow it: switchyard jobs watch {job['job_id']}")
    if args.watch:
        return watch(
            client,
            str(job["job_id"]),
            interval_s=args.interval,
            timeout_s=args.timeout,
            as_json=args.json,
            announce=False,
        )
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    job = client_of(args).get(_job_path(args.job_id))
    if args.json:
        render.emit_json(job)
    else:
        _show(job)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    return watch(
        client_of(args),
        args.job_id,
        interval_s=args.interval,
        timeout_s=args.timeout,
        as_json=args.json,
    )


def cmd_approve(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": "reject" if args.reject else "approve"}
    if args.comment:
        body["comment"] = args.comment
    if args.stage:
        body["stage"] = args.stage
    job = client_of(args).post(_job_path(args.job_id, "approval"), body)
    if args.json:
        render.emit_json(job)
        return 0
    where = f" at {args.stage}" if args.stage else ""
    render.say(f"{'rejected' if args.reject else 'approved'}{where}: {args.job_id}")
    _show(job)
    if isinstance(job, Mapping) and job.get("status") not in TERMINAL:
        render.say(f"follow it: switchyard jobs watch {job.get('job_id', args.job_id)}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    job = client_of(args).post(_job_path(args.job_id, "cancel"))
    if args.json:
        render.emit_json(job)
        return 0
    render.say(f"cancelled: {args.job_id}")
    _show(job)
    return 0


def cmd_pipelines(args: argparse.Namespace) -> int:
    if getattr(args, "local", False) or not url_configured(args):
        body: Any = {"pipelines": _local_pipelines()}
    else:
        body = client_of(args).get("/v1/pipelines")
    if args.json:
        render.emit_json(body)
        return 0
    pipelines = body.get("pipelines") if isinstance(body, Mapping) else None
    show_pipelines(pipelines if isinstance(pipelines, list) else [])
    return 0


def _local_pipelines() -> list[dict[str, Any]]:
    from shared.config import Settings
    from shared.pipelines.registry import PipelineRegistry

    settings = Settings.from_env()
    return [
        {**p.describe(), "deployed": p.name in settings.pipeline_arns}
        for p in PipelineRegistry.from_modules(settings.agent_modules)
    ]


def show_pipelines(pipelines: Sequence[Mapping[str, Any]]) -> None:
    if not pipelines:
        render.say("no pipelines")
        return
    for pipeline in pipelines:
        deployed = "deployed" if pipeline.get("deployed") else "not deployed"
        render.say(f"{pipeline.get('name', '?')}  ({deployed})")
        if pipeline.get("description"):
            render.say(f"  {pipeline['description']}")
        render.say(f"  stages: {chain(pipeline.get('stages') or [])}")


def chain(stages: Sequence[Any]) -> str:
    """``extract -> summarize[map: summarize-section(agent)] -> review(approval) -> publish``"""
    return " -> ".join(_stage_text(s) for s in stages if isinstance(s, Mapping)) or "-"


def _stage_text(stage: Mapping[str, Any]) -> str:
    name, kind = str(stage.get("name", "?")), stage.get("kind")
    if kind == "map":
        return f"{name}[map: {chain(stage.get('stages') or [])}]"
    if kind in ("parallel", "choice"):
        groups = stage.get("branches") if kind == "parallel" else stage.get("cases")
        inner = " | ".join(
            f"{key}: {chain(value)}" for key, value in (groups or {}).items() if value
        )
        return f"{name}[{kind}: {inner}]"
    if kind in ("agent", "approval"):
        return f"{name}({kind})"
    return name


# ---- watch -----------------------------------------------------------------------------------


def _fetch(client: Client, job_id: str) -> dict[str, Any]:
    """The job; a passing 5xx/429 is tried again a few times (short backoff) first."""
    for attempt in range(RETRIES + 1):
        try:
            job: dict[str, Any] = client.get(_job_path(job_id))
            return job
        except ApiError as exc:
            if attempt == RETRIES or not (exc.status == 429 or exc.status >= 500):
                raise
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _stage_change(stage: Mapping[str, Any]) -> str:
    parts = [f"{stage.get('name', '?'):<20} {stage.get('status', '?')}"]
    runs = stage.get("runs") or []
    if runs:
        parts.append(str(runs[0]) if len(runs) == 1 else f"{len(runs)} runs")
    if stage.get("cost_usd"):
        parts.append(render.money(stage["cost_usd"]))
    error = stage.get("error")
    if isinstance(error, Mapping) and stage.get("status") == "failed":
        parts.append(render.clip(error_text({**error, "stage": None}), 120))
    return "  ".join(parts)


def watch(
    client: Client,
    job_id: str,
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    timeout_s: float | None = None,
    as_json: bool = False,
    announce: bool = True,
) -> int:
    """Poll the job until it ends: one line per stage status (or run count) change, a hint
    when a new approval is pending, then the outcome. 0 if it succeeded; ``JobEnded`` if it
    failed or was cancelled; ``CliError`` if ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s if timeout_s else None
    seen: dict[str, tuple[Any, int]] = {}
    hinted: set[tuple[Any, ...]] = set()
    delay = interval_s
    first = True
    while True:
        job = _fetch(client, job_id)
        status = str(job.get("status", "?"))
        changed = False
        if first and announce and not as_json:
            render.say(f"watching {headline(job)}; Ctrl-C stops")
        for stage in job.get("stages") or []:
            if not isinstance(stage, Mapping):
                continue
            key = (stage.get("status"), len(stage.get("runs") or []))
            name = str(stage.get("name", "?"))
            before = seen.get(name, ("pending", 0))
            seen[name] = key
            if key == before:
                continue
            changed = True
            if not as_json:
                render.say(f"{_now()}  {_stage_change(stage)}")
        pending = [p for p in job.get("pending_approvals") or [] if isinstance(p, Mapping)]
        waiting = {(p.get("stage"), p.get("kind"), p.get("run_id")) for p in pending}
        if waiting - hinted:
            changed = True
            if not as_json:
                for line in approval_lines(job):
                    render.say(f"{_now()}{line}")
        hinted = waiting
        if as_json and (changed or first or status in TERMINAL):
            render.emit_json_line(job)
        if status in TERMINAL:
            break
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise CliError(
                f"job {job_id} is still {status} after {timeout_s:g} s "
                f"(follow it again: switchyard jobs watch {job_id})"
            )
        # The interval while the job moves (and at first); longer while nothing changes.
        moved = changed or first
        delay = interval_s if moved else min(delay * BACKOFF, max(interval_s, MAX_INTERVAL_S))
        first = False
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - now)))
    if not as_json:
        finished = f"{status}: {render.money(job.get('cost_usd'))}"
        render.say(f"{_now()}  {finished}")
        if job.get("output") is not None:
            render.say(render.output_text(job["output"]))
    return _check_ended(job)


def _now() -> str:
    return time.strftime("%H:%M:%S", time.gmtime())
