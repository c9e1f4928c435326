"""`make dev` as a test's subprocess: started in its own process group (the test plays the
terminal), driven over HTTP and the CLI, its console followed. Used by tests/e2e."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"succeeded", "failed", "cancelled"}
START_TIMEOUT_S = 240.0  # a first synth of the local stack's template included


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    url: str
    key: str
    state_dir: Path
    lines: list[str] = field(default_factory=list)
    output: threading.Condition = field(default_factory=threading.Condition)
    reader: threading.Thread | None = None

    def follow_output(self) -> None:
        """Keep reading the stack's console (so it never blocks on a full pipe)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.output:
                self.lines.append(line.rstrip("\n"))
                self.output.notify_all()

    def lines_with(self, text: str, count: int, timeout_s: float = 60.0) -> list[str]:
        """The console lines containing ``text``, once there are ``count`` of them."""
        with self.output:
            self.output.wait_for(
                lambda: (
                    sum(text in line for line in self.lines) >= count
                    or self.process.poll() is not None
                ),
                timeout=timeout_s,
            )
            return [line for line in self.lines if text in line]

    # ---- HTTP -------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, *, key: str | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=40) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, payload = self.call(method, path, body)
        assert status in (200, 201, 202), (status, payload)
        return payload

    def get_until(
        self, path: str, done: Any, *, timeout_s: float = 30.0, every_s: float = 0.25
    ) -> Any:
        """GET ``path`` until ``done(payload)`` holds (e.g. usage counters, which each
        process writes every few seconds); the last payload."""
        deadline = time.monotonic() + timeout_s
        while True:
            payload = self.ok("GET", path)
            if done(payload):
                return payload
            if time.monotonic() >= deadline:
                raise AssertionError(f"GET {path}: condition not reached; last {payload}")
            time.sleep(every_s)  # polling an eventually-written value, bounded by the deadline

    def events_until(
        self, run_id: str, done: Any, *, after: int = 0, timeout_s: float = 90.0
    ) -> list[dict[str, Any]]:
        """Long-poll the run's events until ``done(events)`` holds; every event so far."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            page = self.ok("GET", f"/v1/runs/{run_id}/events?after={after}&wait=10")
            seen.extend(page["events"])
            after = page["next_after"]
            if done(seen):
                return seen
        raise AssertionError(f"run {run_id}: condition not reached; events {seen}")

    def finish(self, run_id: str, timeout_s: float = 90.0) -> dict[str, Any]:
        self.events_until(run_id, lambda evs: run_status(evs) in TERMINAL, timeout_s=timeout_s)
        run: dict[str, Any] = self.ok("GET", f"/v1/runs/{run_id}")
        return run

    # ---- the CLI -------------------------------------------------------------------------

    def cli(self, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "SWITCHYARD_URL": self.url,
            "SWITCHYARD_API_KEY": self.key,
            "SWITCHYARD_OUTPUTS": str(self.state_dir / "local-outputs.json"),
        }
        return subprocess.run(
            [sys.executable, "-m", "shared.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=timeout_s,
            check=False,
        )

    def outputs(self) -> dict[str, str]:
        document = json.loads((self.state_dir / "local-outputs.json").read_text())
        (stack,) = document.values()
        return dict(stack)


def run_status(events: list[dict[str, Any]]) -> str | None:
    statuses = [e["data"].get("status") for e in events if e["type"] == "run.status"]
    return statuses[-1] if statuses else None


def session_processes(sid: int) -> list[int]:
    """Pids of live processes in session ``sid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            found.append(int(entry.name))
    return found


def start_make_dev(state_dir: Path, env: Mapping[str, str], dev_args: str) -> DevStack:
    """`make dev DEV_ARGS=...` once it has printed its two lines; its console is followed
    from then on (``DevStack.lines``). Fails the test if it does not become ready."""
    import pytest

    process = subprocess.Popen(
        ["make", "--no-print-directory", "dev", f"DEV_ARGS=--state-dir {state_dir} {dev_args}"],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test's "terminal"
    )
    assert process.stdout is not None
    lines: list[str] = []
    values: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(values) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        for name in ("SWITCHYARD_URL", "SWITCHYARD_API_KEY"):
            if line.startswith(name + "="):
                values[name] = line.strip().split("=", 1)[1]
    if len(values) < 2:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail("make dev did not become ready:\n" + "\n".join(lines[-40:]))
    stack = DevStack(process, values["SWITCHYARD_URL"], values["SWITCHYARD_API_KEY"], state_dir)
    stack.lines = lines
    stack.reader = threading.Thread(target=stack.follow_output, daemon=True)
    stack.reader.start()
    return stack


def kill_make_dev(stack: DevStack) -> None:
    """What is left of it, whatever happened in the tests."""
    if stack.process.poll() is None:
        os.killpg(stack.process.pid, signal.SIGKILL)
        stack.process.wait()
