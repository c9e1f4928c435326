"""Worker processes supervised like ECS tasks of a service with a desired count.

Each slot runs ``python -m workers.main`` (the container's command) with the task
definition's environment from the template plus the local stack's own settings. A task that
exits, for any reason, is replaced; so is one whose health file goes stale (the container
health check). ``stop`` is ECS's: SIGTERM, the stop timeout, then SIGKILL.

Each worker also gets SIGTERM if this process dies without stopping it (Linux parent-death
signal), so a killed ``make dev`` leaves no worker behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from workers.health import HealthFile

PR_SET_PDEATHSIG = 1
CHECK_INTERVAL_S = 0.5


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc_name = ctypes.util.find_library("c")
    if libc_name and sys.platform.startswith("linux"):
        ctypes.CDLL(libc_name, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class WorkerTask:
    slot: int
    process: subprocess.Popen[bytes]
    health: HealthFile
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int:
        return self.process.pid


class WorkerSupervisor:
    def __init__(
        self,
        environment: Mapping[str, str],
        *,
        count: int,
        state_dir: Path,
        health_max_age_s: float = 60.0,
        stop_timeout_s: float = 30.0,
        report: Callable[[str], None] | None = None,
        command: tuple[str, ...] = (sys.executable, "-m", "workers.main"),
    ) -> None:
        self.environment = dict(environment)
        self.count = count
        self.state_dir = state_dir
        self.health_max_age_s = health_max_age_s
        self.stop_timeout_s = stop_timeout_s
        self.report = report or (lambda line: None)
        self.command = command
        self.tasks: dict[int, WorkerTask] = {}
        self.replaced = 0
        self._logs: dict[int, IO[bytes]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def start(self) -> None:
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        for slot in range(1, self.count + 1):
            self._launch(slot)
        self._thread.start()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "slot": t.slot,
                    "pid": t.pid,
                    "started_at": t.started_at,
                    "alive": t.process.poll() is None,
                    "log": str(self.log_path(t.slot)),
                }
                for t in sorted(self.tasks.values(), key=lambda t: t.slot)
            ]

    def log_path(self, slot: int) -> Path:
        return self.state_dir / "logs" / f"worker-{slot}.log"

    def _launch(self, slot: int) -> WorkerTask:
        health = HealthFile(self.state_dir / f"worker-{slot}.health")
        health.remove()
        log = self._logs.get(slot)
        if log is None:
            log = self._logs[slot] = self.log_path(slot).open("ab")
        env = {**self.environment, "SWITCHYARD_WORKER_HEALTH_FILE": str(health.path)}
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            self.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        task = WorkerTask(slot=slot, process=process, health=health)
        with self._lock:
            self.tasks[slot] = task
        return task

    def _unhealthy(self, task: WorkerTask) -> bool:
        # A task gets the health check's start period (its max age) before it counts.
        if time.time() - task.started_at < self.health_max_age_s:
            return False
        age = task.health.age_s()
        return age is None or age > self.health_max_age_s

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_INTERVAL_S):
            for slot, task in list(self.tasks.items()):
                code = task.process.poll()
                if code is None and self._unhealthy(task):
                    self.report(f"worker {slot} (pid {task.pid}) is unhealthy: killing it")
                    task.process.kill()
                    code = task.process.wait()
                if code is None or self._stopping.is_set():
                    continue
                replacement = self._launch(slot)
                self.replaced += 1
                self.report(
                    f"worker {slot} (pid {task.pid}) exited with {_exit(code)}; "
                    f"replaced by pid {replacement.pid}"
                )

    def stop(self) -> None:
        """SIGTERM every worker (they drain), wait up to the stop timeout, SIGKILL the rest."""
        self._stopping.set()
        self._thread.join(timeout=5)
        with self._lock:
            tasks = list(self.tasks.values())
        for task in tasks:
            if task.process.poll() is None:
                task.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for task in tasks:
            try:
                task.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                task.process.kill()
                task.process.wait()
            task.health.remove()
        for log in self._logs.values():
            log.close()


def _exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def worker_environment(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment (PATH, AWS endpoint and credentials, the SDK's variables),
    the task definition's on top, the local stack's own settings last."""
    return {**os.environ, **base, **overrides}
