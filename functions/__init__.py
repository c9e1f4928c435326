"""Lambda entry points: thin adapters from an AWS event to the use cases in ``shared``.

The use cases are coroutines; a Lambda handler is a plain function. ``run_sync`` runs one
coroutine to completion on an event loop kept for the life of the container (per thread),
so clients bound to a loop (httpx in the Anthropic SDK) keep working from one invocation to
the next, as ``asyncio.run`` (a new loop each call) would not allow.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_local = threading.local()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on this thread's long-lived loop. Not from inside a running loop."""
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop.run_until_complete(coro)


class PerContainer(Generic[T]):
    """One value per Lambda container (services, a store...), built on first use.

    Built lazily so importing a handler stays cheap, once (double-checked under a lock), and
    replaceable: tests and the local stack ``set`` their own; ``set(None)`` forgets it, so the
    next ``get`` builds from the environment again.
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def set(self, value: T | None) -> None:
        with self._lock:
            self._value = value
