"""Cold start of the API handler: its import time, and what the async submit path imports.

Each sample is a fresh interpreter (``python -c``) timing ``import functions.api.handler``
with ``time.perf_counter`` around the import alone (interpreter start-up excluded, as the
Lambda runtime's own start is not the handler's doing). The median over ``--runs`` samples
is reported; the worker module (``workers.main``) is measured the same way when it exists.

A separate fresh interpreter then handles one async submit (``POST /v1/runs`` for an async
agent, memory backend, ``ANTHROPIC_API_KEY`` set so the configured provider is the real SDK)
and reports whether ``anthropic`` ended up in ``sys.modules``, plus how long that first
request took after the import (building the Services included).

Target: api_handler_ms <= 150 and anthropic not imported on the async submit path.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 150.0

IMPORT_SNIPPET = """
import time
started = time.perf_counter()
import {module}
print((time.perf_counter() - started) * 1000)
"""

SUBMIT_SNIPPET = """
import json, sys, time
started = time.perf_counter()
import functions.api.handler as entry
imported = time.perf_counter()
event = {
    "version": "2.0", "routeKey": "$default", "rawPath": "/v1/runs", "rawQueryString": "",
    "headers": {"content-type": "application/json"},
    "requestContext": {
        "http": {"method": "POST", "path": "/v1/runs"}, "requestId": "bench", "stage": "$default",
        "authorizer": {"lambda": {"tenant": "bench", "key_id": "bench"}},
    },
    "body": json.dumps({"agent": "researcher", "input": "cold start"}),
    "isBase64Encoded": False,
}
status = entry.handler(event, None)["statusCode"]
done = time.perf_counter()
print(json.dumps({
    "status": status,
    "anthropic_imported": "anthropic" in sys.modules,
    "boto3_imported": "boto3" in sys.modules,
    "first_submit_ms": (done - imported) * 1000,
}))
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHYARD_BACKEND": "memory"}
    env["ANTHROPIC_API_KEY"] = "sk-ant-benchmark-dummy-never-sent"
    env.pop("ANTHROPIC_BASE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as in a deployed package
    return env


def _last_line(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(),
        check=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def import_ms(module: str, runs: int) -> list[float]:
    _last_line(IMPORT_SNIPPET.format(module=module))  # warm the bytecode cache once
    return [float(_last_line(IMPORT_SNIPPET.format(module=module))) for _ in range(runs)]


def importable(module: str) -> bool:
    sys.path.insert(0, str(ROOT))
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
    finally:
        sys.path.remove(str(ROOT))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters per figure")
    args = parser.parse_args(argv)

    api = import_ms("functions.api.handler", args.runs)
    worker = import_ms("workers.main", args.runs) if importable("workers.main") else None
    submit: dict[str, Any] = json.loads(_last_line(SUBMIT_SNIPPET))
    api_ms = round(statistics.median(api), 1)
    result = {
        "api_handler_ms": api_ms,
        "api_handler_ms_min": round(min(api), 1),
        "api_handler_ms_max": round(max(api), 1),
        "worker_ms": round(statistics.median(worker), 1) if worker else None,
        "anthropic_imported_on_async_submit": submit["anthropic_imported"],
        "async_submit_status": submit["status"],
        "first_async_submit_ms": round(submit["first_submit_ms"], 1),
        "runs": args.runs,
        "python": sys.version.split()[0],
        "target_ms": TARGET_MS,
        "meets_target": api_ms <= TARGET_MS
        and not submit["anthropic_imported"]
        and submit["status"] == 202,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
