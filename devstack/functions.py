"""The stack's Lambda functions, run in this process.

In AWS each function is its own container with its own environment; here they share one
process, so each function's container (what its ``PerContainer`` would build from the
environment on the first invocation) is built up front from *that function's* deployed
environment and installed through the hook the function exposes for tests and this stack.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


def _install_api(env: Mapping[str, str]) -> None:
    from functions.api.app import set_services
    from shared.config import Settings
    from shared.logic.webhooks import completion_hook
    from shared.wiring import build_services

    settings = Settings.from_env(env)
    set_services(
        build_services(settings, on_complete=completion_hook(settings), service_name="api")
    )


def _install_authorizer(env: Mapping[str, str]) -> None:
    from functions.authorizer.handler import set_store
    from shared.config import Settings
    from shared.wiring import build_control_store

    set_store(build_control_store(Settings.from_env(env)))


def _install_triggers(env: Mapping[str, str]) -> None:
    from functions.triggers import build_container, configure

    built = build_container(env)
    configure(built.services, built.rules)


def _install_dlq(env: Mapping[str, str]) -> None:
    from functions.dlq.handler import build_container, configure

    built = build_container(env)
    configure(built.services, built.dlq)


def _forget() -> None:
    from functions.api.app import set_services
    from functions.authorizer.handler import set_store
    from functions.dlq.handler import configure as configure_dlq
    from functions.triggers import configure as configure_triggers

    set_services(None)
    set_store(None)
    configure_triggers(None)
    configure_dlq(None)


# handler -> how its container is installed. The two trigger functions share one module-level
# container in this process (their environments are the same: the stack gives both the rules).
INSTALLERS: dict[str, Callable[[Mapping[str, str]], None]] = {
    "functions.api.handler.handler": _install_api,
    "functions.authorizer.handler.handler": _install_authorizer,
    "functions.triggers.s3.handler": _install_triggers,
    "functions.triggers.schedule.handler": _install_triggers,
    "functions.dlq.handler.handler": _install_dlq,
}


def resolve(handler: str) -> Handler:
    module, _, name = handler.rpartition(".")
    resolved: Handler = getattr(importlib.import_module(module), name)
    return resolved


class LocalFunctions:
    """Install every function of the stack with its environment (plus ``overrides``, the
    local stack's own settings), and invoke them by handler."""

    def __init__(
        self, functions: Mapping[str, LocalFunction], overrides: Mapping[str, str]
    ) -> None:
        self.functions = dict(functions)
        self.overrides = dict(overrides)

    def install(self) -> None:
        done: set[Callable[[Mapping[str, str]], None]] = set()
        for fn in self.functions.values():
            installer = INSTALLERS.get(fn.handler)
            if installer is None or installer in done:
                continue
            installer({**fn.environment, **self.overrides})
            done.add(installer)

    def uninstall(self) -> None:
        _forget()

    def invoke(self, fn: LocalFunction, event: dict[str, Any]) -> Any:
        context = LambdaContext(function_name=fn.logical_id, aws_request_id=uuid.uuid4().hex)
        return resolve(fn.handler)(event, context)
