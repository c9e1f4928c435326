"""A Lambda handler for container tests: answers with its pid and the event, raises on
request, blocks until released, or exits its process (a crashed container)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print(f"echo handling {event.get('n')}")  # goes to the function's log, not the protocol
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("exit"):
        sys.exit(3)
    gate = event.get("gate")
    if gate:  # wait until the test creates this file: holds the container busy
        while not Path(gate).exists():
            time.sleep(0.01)
    return {"pid": os.getpid(), "n": event.get("n"), "request_id": context.aws_request_id}


def environment(event: dict[str, Any], context: Any) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in event["names"]}
