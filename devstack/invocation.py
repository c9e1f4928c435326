"""What a handler is invoked with: the Lambda context object, and the handler resolved from
its ``module.function`` name (the template's ``Handler``). Light on purpose: every function
container imports it before the function's own module."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from devstack.topology import LocalFunction

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class LambdaContext:
    """The context object a handler receives (the fields Powertools reads)."""

    function_name: str
    timeout_s: float = 30.0
    memory_limit_in_mb: int = 512
    aws_request_id: str = ""
    invoked_function_arn: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return int(self.timeout_s * 1000)


def resolve(handler: str) -> Handler:
    module, _, name = handler.rpartition(".")
    resolved: Handler = getattr(importlib.import_module(module), name)
    return resolved


class Invoker(Protocol):
    """What pollers and the scheduler invoke functions through (``LocalFunctions``)."""

    def invoke(self, fn: LocalFunction, event: dict[str, Any]) -> Any: ...
