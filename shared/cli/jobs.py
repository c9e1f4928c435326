"""``switchyard jobs``: start a pipeline job, show it, decide its approval gate.

The pipelines milestone brings the routes (``POST /v1/jobs``, ``GET /v1/jobs/{id}``,
``POST /v1/jobs/{id}/approval``); until then the API answers 501 ``not_implemented``, which
these commands report like any other API error.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from shared.cli import render
from shared.cli.client import client_of, path_part
from shared.cli.inputs import NO_INPUT, add_input_options, read_input


def register(sub: Any, http: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="pipeline jobs (Step Functions)")
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    start = commands.add_parser("start", parents=[http], help="start a job (POST /v1/jobs)")
    start.add_argument("pipeline", metavar="PIPELINE", help="a pipeline name")
    add_input_options(start, required=False)
    start.add_argument(
        "--idempotency-key", metavar="KEY", help="a retry with the same key returns the same job"
    )
    start.set_defaults(handler=cmd_start)

    get = commands.add_parser("get", parents=[http], help="show a job (GET /v1/jobs/{id})")
    get.add_argument("job_id", metavar="JOB")
    get.set_defaults(handler=cmd_get)

    approve = commands.add_parser(
        "approve", parents=[http], help="approve (or --reject) a job's approval gate"
    )
    approve.add_argument("job_id", metavar="JOB")
    approve.add_argument("--reject", action="store_true", help="refuse instead of approving")
    approve.add_argument("--comment", metavar="TEXT", help="recorded with the decision")
    approve.set_defaults(handler=cmd_approve)


def _job_path(job_id: str, *rest: str) -> str:
    return "/".join(["/v1/jobs", path_part(job_id), *rest])


def _show(job: Any) -> None:
    if not isinstance(job, Mapping):
        render.emit_json(job)
        return
    job_id = job.get("job_id") or job.get("id") or "?"
    render.say(f"{job_id}  {job.get('status', '?')}  ({job.get('pipeline', '?')})")
    for name in ("stage", "created_at", "finished_at"):
        if job.get(name):
            render.say(f"  {name:<11} {job[name]}")
    error = job.get("error")
    if isinstance(error, Mapping):
        render.say(f"  error       {error.get('code', 'error')}: {error.get('message', '')}")
    if job.get("output") is not None:
        render.say("  output")
        for line in render.output_text(job["output"]).splitlines():
            render.say("    " + line)


def cmd_start(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"pipeline": args.pipeline}
    value = read_input(args)
    if value is not NO_INPUT:
        body["input"] = value
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    job = client_of(args).call("POST", "/v1/jobs", body=body, headers=headers).body
    if args.json:
        render.emit_json(job)
    else:
        _show(job)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    job = client_of(args).get(_job_path(args.job_id))
    if args.json:
        render.emit_json(job)
    else:
        _show(job)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"decision": "reject" if args.reject else "approve"}
    if args.comment:
        body["comment"] = args.comment
    job = client_of(args).post(_job_path(args.job_id, "approval"), body)
    if args.json:
        render.emit_json(job)
    else:
        render.say(f"{'rejected' if args.reject else 'approved'}: {args.job_id}")
        _show(job)
    return 0
