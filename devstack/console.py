"""The terminal side of `make dev`: start the stack, print the two lines a shell can use and
how to try it, report what happens (workers replaced, schedules fired, notifications
delivered), and stop everything on Ctrl-C (SIGINT) or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from devstack.stack_settings import DEV_TENANT, DevOptions

if TYPE_CHECKING:
    from devstack.stack import LocalStack

EXIT_ERROR = 1
STACK_LOG = "devstack.log"

# The terminal. The process's own stdout becomes a log file (``serve``) so library output
# does not bury the stack's report lines; this keeps a handle on the terminal.
_console: TextIO = sys.stdout


def _say(line: str) -> None:
    _console.write(line + "\n")
    _console.flush()


def _capture_function_output(state_dir: Path) -> Path:
    """Point ``sys.stdout`` of this process (what the libraries it runs print: moto, the
    clients creating the dev key) at a log file; the console keeps the terminal. The
    functions and workers log to files of their own."""
    global _console
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    path = state_dir / "logs" / STACK_LOG
    _console = sys.stdout
    sys.stdout = path.open("a", buffering=1)
    return path


def _report(line: str) -> None:
    _say(f"[{time.strftime('%H:%M:%S')}] {line}")


def _banner(stack: LocalStack) -> list[str]:
    model = (
        "the Anthropic API (ANTHROPIC_API_KEY is set)"
        if stack.overrides.get("SWITCHYARD_PROVIDER") == "anthropic"
        else "the offline model (set ANTHROPIC_API_KEY to use the real API)"
    )
    workers = stack.supervisor.describe() if stack.supervisor else []
    pids = ", ".join(str(w["pid"]) for w in workers) or "none"
    schedules = stack.scheduler.describe() if stack.scheduler else []
    topology = stack.topology
    pollers = ", ".join(
        f"{s.queue_logical_id} -> {s.function.name}"
        for s in (topology.event_sources if topology else [])
    )
    lines = [
        f"Switchyard local stack ready in {stack.started_s:.1f} s "
        "(state lives in this process only: Ctrl-C stops everything and forgets it)",
        f"  moto       {stack.moto_url}  stack {stack.stack_name} (the synthesized CDK template)",
        f"  gateway    {stack.url}  API Gateway v2 events -> api + authorizer functions",
        f"  workers    {len(workers)} processes (pids {pids})",
        f"  logs       {stack.options.state_dir / 'logs'} (one file per function, worker-N.log)",
        f"  pollers    {pollers or 'none'}",
    ]
    for s in schedules:
        lines.append(
            f"  schedule   {s['name']}: {s['expression']}, next {s['next_fire'] or 'on demand'}"
        )
    lines += [
        f"  model      {model}",
        f"  operators  switchyard keys/dlq read {stack.outputs_path}",
        "",
        f"SWITCHYARD_URL={stack.url}",
        f"SWITCHYARD_API_KEY={stack.api_key}",
        "",
        f"Try it from another shell (tenant {DEV_TENANT!r}), after exporting the two lines above:",
        '  curl -s "$SWITCHYARD_URL/v1/agents" -H "Authorization: Bearer $SWITCHYARD_API_KEY"',
        '  curl -s "$SWITCHYARD_URL/v1/runs" -H "Authorization: Bearer $SWITCHYARD_API_KEY" \\',
        "       -H 'Content-Type: application/json' "
        '-d \'{"agent": "ticket-triage", "input": "My invoice is wrong"}\'',
        '  .venv/bin/switchyard runs submit researcher --input "durable agents" --tail',
        "  .venv/bin/switchyard runs list",
        f"  curl -s -X POST {stack.url}/_local/schedules/hourly-triage/fire  # fire a schedule",
        "",
    ]
    return lines


def _seed_demo(stack: LocalStack) -> None:
    """One run of each example agent through the API, as a user would submit them."""
    gateway = stack.gateway
    if gateway is None:
        return
    submissions: list[dict[str, Any]] = [
        {"agent": "ticket-triage", "input": "The checkout page returns a 500 since this morning"},
        {"agent": "researcher", "input": "How do durable execution engines resume after a crash?"},
        {"agent": "ops-assistant", "input": "The billing service is unhealthy; please restart it"},
    ]
    for body in submissions:
        answer = gateway.gateway.post("/v1/runs", json_body=body, key=stack.api_key)
        payload = answer.json()
        run_id = payload.get("run_id", "?")
        _report(f"demo: {body['agent']} -> {run_id} ({payload.get('status', answer.status)})")
        if body["agent"] != "ticket-triage":
            _say(f"    follow it: .venv/bin/switchyard runs tail {run_id}")
    _say("    ops-assistant pauses for approval: .venv/bin/switchyard runs approve <run_id>")


def serve(options: DevOptions, *, demo: bool = False) -> int:
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    captured = sys.stdout
    log = _capture_function_output(options.state_dir)
    # Imported only now: loggers created when these modules load bind to stdout as it is then.
    from devstack.stack import LocalStack

    stack = LocalStack(options, report=_report)
    try:
        _say("Starting the Switchyard local stack ...")
        try:
            stack.start()
        except OSError as exc:
            print(f"switchyard: error: cannot start the local stack: {exc}", file=sys.stderr)
            return EXIT_ERROR
        for line in _banner(stack):
            _say(line)
        if demo:
            _seed_demo(stack)
        while not stop.wait(3600):
            pass
        _say("Stopping: gateway, workers (draining), pollers, scheduler, moto ...")
        return 0
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.close()
        sys.stdout = captured
        _say(f"Stopped. (logs: {log.parent})")
