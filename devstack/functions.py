"""The stack's Lambda functions, each run in containers of its own.

A function gets a pool of container processes (``devstack.container``), each serving one
invocation at a time with the function's deployed environment, as Lambda runs them: a
concurrent invocation finds an idle container or starts a new one (a cold start), up to the
function's concurrency. So handlers that keep per-request state in module globals (the
Powertools resolver keeps the current event on the app) never see two requests at once,
and each function's settings, secrets and clients are its own.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from devstack.invocation import Handler
from devstack.topology import LocalFunction


class FunctionError(RuntimeError):
    """The function raised (its message), or its container died during the invocation.

    ``error_type`` is what Lambda reports as ``errorType`` (the exception's class name, or
    ``Runtime.ExitError`` for a container that died), which Step Functions matches on."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str = "Runtime.ExitError",
        error_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.error_message = message if error_message is None else error_message


class Container:
    """One container process; ``invoke`` is called by one thread at a time."""

    def __init__(self, fn: LocalFunction, env: Mapping[str, str], log: IO[bytes]) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "devstack.container", fn.handler],
            env={**env, "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        self.broken = False

    def invoke(self, event: dict[str, Any]) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"event": event, "request_id": uuid.uuid4().hex}
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError) as exc:
            self.broken = True
            raise FunctionError(f"the container exited ({exc})") from exc
        if not line:
            self.broken = True  # it is exiting, whether or not it is gone yet
            raise FunctionError(f"the container exited with {self.process.wait(5)}")
        answer = json.loads(line)
        if "error" in answer:
            raise FunctionError(
                answer["error"],
                error_type=answer.get("error_type", "Exception"),
                error_message=answer.get("error_message"),
            )
        return answer["result"]

    @property
    def alive(self) -> bool:
        return not self.broken and self.process.poll() is None

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # its loop ends: a clean exit
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ContainerPool:
    """The containers of one function: idle ones are reused, more start on demand."""

    def __init__(
        self, fn: LocalFunction, env: Mapping[str, str], log_path: Path, *, concurrency: int
    ) -> None:
        self.fn = fn
        self.env = dict(env)
        self.concurrency = concurrency
        self.cold_starts = 0
        self._log = log_path.open("ab")
        self._idle: list[Container] = []
        self._all: list[Container] = []
        self._available = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._available:  # Lambda's concurrency limit for this function
            container = self._take()
            try:
                return container.invoke(event)
            finally:
                self._give_back(container)

    def _take(self) -> Container:
        with self._lock:
            if self._closed:
                raise FunctionError("the local stack is stopping")
            while self._idle:
                container = self._idle.pop()
                if container.alive:
                    return container
            container = Container(self.fn, self.env, self._log)
            self._all.append(container)
            self.cold_starts += 1
            return container

    def _give_back(self, container: Container) -> None:
        with self._lock:
            if container.alive and not self._closed:
                self._idle.append(container)

    def stop(self) -> None:
        with self._lock:
            self._closed = True
            containers, self._all, self._idle = self._all, [], []
        for container in containers:
            container.stop()
        self._log.close()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "function": self.fn.name,
                "containers": sum(1 for c in self._all if c.alive),
                "idle": len(self._idle),
                "cold_starts": self.cold_starts,
                "concurrency": self.concurrency,
            }


class LocalFunctions:
    """Every function of the stack, each with its container pool. A container's environment
    is this process's (the moto endpoint and dummy credentials, PATH), the function's
    deployed environment on top, the local stack's ``overrides`` last.

    Every invocation passes through ``invoke`` (the gateway's, the pollers', the scheduler's
    and Step Functions' through the moto endpoint): ``on_invoke(function name, seconds,
    failed)`` is told of each once it ends (the local stack's request meter)."""

    def __init__(
        self,
        functions: Mapping[str, LocalFunction],
        overrides: Mapping[str, str],
        *,
        base_env: Mapping[str, str],
        log_dir: Path,
        concurrency: int = 8,
        on_invoke: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.on_invoke = on_invoke
        self.functions = dict(functions)
        self.pools = {
            logical: ContainerPool(
                fn,
                {**base_env, **fn.environment, **overrides},
                log_dir / f"{fn.name}.log",
                concurrency=concurrency,
            )
            for logical, fn in functions.items()
        }

    def invoke(self, fn: LocalFunction, event: dict[str, Any]) -> Any:
        if self.on_invoke is None:
            return self.pools[fn.logical_id].invoke(event)
        started = time.perf_counter()
        failed = True
        try:
            result = self.pools[fn.logical_id].invoke(event)
            failed = False
            return result
        finally:
            self.on_invoke(fn.name, time.perf_counter() - started, failed)

    def handler(self, fn: LocalFunction) -> Handler:
        """``fn`` as a plain handler (what the gateway calls)."""
        return lambda event, context: self.invoke(fn, event)

    def describe(self) -> list[dict[str, Any]]:
        return [pool.describe() for pool in self.pools.values()]

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
