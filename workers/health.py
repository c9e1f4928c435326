"""Liveness for ECS: the consumer loop stamps a file; ``python -m workers.health`` checks it.

The loop touches the file on every iteration (each is bounded by the long poll, ≤ 20 s, or a
few seconds when every slot is busy), so a file older than
``SWITCHYARD_WORKER_HEALTH_MAX_AGE_S`` (default 60 s) means the loop is stuck. The check exits
0 when the file is fresh and 1 otherwise (missing included), as Docker's HEALTHCHECK expects.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from shared.config import Settings


class HealthFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def touch(self) -> None:
        try:
            self.path.touch()
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def age_s(self, *, now: float | None = None) -> float | None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        return (time.time() if now is None else now) - mtime

    def fresh(self, max_age_s: float, *, now: float | None = None) -> bool:
        age = self.age_s(now=now)
        return age is not None and age <= max_age_s

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def main(env: dict[str, str] | None = None) -> int:
    settings = Settings.from_env(os.environ if env is None else env)
    health = HealthFile(settings.worker_health_file)
    age = health.age_s()
    if age is not None and age <= settings.worker_health_max_age_s:
        return 0
    detail = "missing" if age is None else f"{age:.0f} s old"
    sys.stderr.write(f"unhealthy: {health.path} is {detail}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
