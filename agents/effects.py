"""A tiny effect ledger the example agents' side-effecting tools write to.

Each effect is a file named by its idempotency key, created with O_EXCL: a retried call with
the same key finds the file and does nothing, so each tool call has exactly one effect however
often a crash makes it run. The directory comes from SWITCHYARD_EFFECTS_DIR at call time.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_DIR = ".switchyard/effects"


def effects_dir() -> Path:
    path = Path(os.environ.get("SWITCHYARD_EFFECTS_DIR", DEFAULT_DIR))
    path.mkdir(parents=True, exist_ok=True)
    return path


def apply_once(idempotency_key: str, kind: str, payload: dict[str, Any]) -> bool:
    """Record the effect unless one with this key exists. True if it was applied now."""
    name = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32] + ".json"
    body = json.dumps({"key": idempotency_key, "kind": kind, "payload": payload})
    try:
        fd = os.open(effects_dir() / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(body)
    return True
