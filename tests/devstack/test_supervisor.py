"""The worker supervisor, on small stand-in processes (not the real worker): it starts the
desired count with the given environment, replaces one that dies, and stops them as ECS
does (SIGTERM, the stop timeout, SIGKILL). Each worker's output goes to its own log."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.supervisor import WorkerSupervisor

# Prints its pid and environment, then idles until a signal ends it. With IGNORE_TERM=1 it
# ignores SIGTERM (installed before it says it started).
WORKER = """
import json, os, signal
if os.environ.get("IGNORE_TERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started " + json.dumps({"pid": os.getpid(), "env": dict(os.environ)}), flush=True)
while True:
    signal.pause()
"""
COMMAND = (sys.executable, "-c", WORKER)
TIMEOUT_S = 15.0


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    """Poll an external process's effect until it shows, failing after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def starts(log: Path) -> list[dict[str, Any]]:
    """What each process started in this log said about itself."""
    if not log.exists():
        return []
    return [
        json.loads(line.removeprefix("started "))
        for line in log.read_text().splitlines()
        if line.startswith("started ")
    ]


def started(log: Path, count: int) -> Callable[[], bool]:
    return lambda: len(starts(log)) == count


Make = Callable[..., WorkerSupervisor]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    """Start a supervisor of stand-in workers; stopped after the test whatever happened."""
    made: list[WorkerSupervisor] = []

    def _make(
        count: int, environment: dict[str, str] | None = None, **kwargs: Any
    ) -> WorkerSupervisor:
        supervisor = WorkerSupervisor(
            environment or {},
            count=count,
            state_dir=tmp_path / "state",
            command=COMMAND,
            **kwargs,
        )
        made.append(supervisor)
        supervisor.start()
        for slot in range(1, count + 1):
            wait_for(started(supervisor.log_path(slot), 1), f"worker {slot} to start")
        return supervisor

    yield _make
    for supervisor in made:
        supervisor.stop()  # again after a test's own stop: nothing left to do


def test_it_starts_count_workers_with_the_environment_and_a_health_file(
    make: Make, tmp_path: Path
) -> None:
    supervisor = make(2, {"SWITCHYARD_TEST_MARK": "local", "SWITCHYARD_STAGE": "dev"})
    state = tmp_path / "state"
    described = supervisor.describe()
    assert [w["slot"] for w in described] == [1, 2]
    assert all(w["alive"] for w in described)
    assert len({w["pid"] for w in described}) == 2
    for worker in described:
        slot = worker["slot"]
        log = state / "logs" / f"worker-{slot}.log"
        assert worker["log"] == str(log) == str(supervisor.log_path(slot))
        (said,) = starts(log)
        assert said["pid"] == worker["pid"]
        env = said["env"]
        assert env["SWITCHYARD_TEST_MARK"] == "local"
        assert env["SWITCHYARD_STAGE"] == "dev"
        assert env["SWITCHYARD_WORKER_HEALTH_FILE"] == str(state / f"worker-{slot}.health")
        # The given environment, not this process's (the autouse fixture sets this one).
        assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
        assert "AWS_ACCESS_KEY_ID" not in env


def test_a_killed_worker_is_replaced(make: Make) -> None:
    lines: list[str] = []
    supervisor = make(2, report=lines.append)
    before = {w["slot"]: w["pid"] for w in supervisor.describe()}
    os.kill(before[1], signal.SIGKILL)
    wait_for(lambda: supervisor.replaced == 1, "the killed worker to be replaced")
    after = {w["slot"]: w for w in supervisor.describe()}
    assert after[1]["pid"] != before[1]
    assert after[1]["alive"]
    assert after[2]["pid"] == before[2]  # the other one is left alone
    # The replacement writes to the same slot's log, after the first one.
    log = supervisor.log_path(1)
    wait_for(started(log, 2), "the replacement to start")
    assert [s["pid"] for s in starts(log)] == [before[1], after[1]["pid"]]
    assert lines == [
        f"worker 1 (pid {before[1]}) exited with signal SIGKILL; replaced by pid {after[1]['pid']}"
    ]
    assert supervisor.replaced == 1


def test_stop_sends_sigterm_and_the_workers_exit(make: Make) -> None:
    supervisor = make(2, stop_timeout_s=10.0)
    processes = [task.process for task in supervisor.tasks.values()]
    started = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - started < 5.0  # they did not need the stop timeout
    assert [p.returncode for p in processes] == [-signal.SIGTERM, -signal.SIGTERM]
    assert supervisor.replaced == 0  # a stopping supervisor replaces nothing
    assert all(not w["alive"] for w in supervisor.describe())


def test_a_worker_that_ignores_sigterm_is_killed_after_the_stop_timeout(make: Make) -> None:
    supervisor = make(1, {"IGNORE_TERM": "1"}, stop_timeout_s=0.5)
    (task,) = supervisor.tasks.values()
    started = time.monotonic()
    supervisor.stop()
    elapsed = time.monotonic() - started
    assert task.process.returncode == -signal.SIGKILL
    assert elapsed >= 0.5
    with pytest.raises(ProcessLookupError):
        os.kill(task.pid, 0)
    assert supervisor.replaced == 0


def test_worker_output_goes_to_its_log(make: Make, tmp_path: Path) -> None:
    supervisor = make(3)
    logs = sorted((tmp_path / "state" / "logs").iterdir())
    assert [p.name for p in logs] == ["worker-1.log", "worker-2.log", "worker-3.log"]
    pids = {w["slot"]: w["pid"] for w in supervisor.describe()}
    for slot in (1, 2, 3):
        assert [s["pid"] for s in starts(supervisor.log_path(slot))] == [pids[slot]]
