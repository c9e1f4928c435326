"""Trigger functions: S3 object-created events (``s3.handler``) and schedules
(``schedule.handler``). Both start runs through ``shared.logic.triggers``.

Each function container builds its ``Services`` and reads its rules once, at the first
invocation (``Settings.from_env()``; backend from ``SWITCHYARD_BACKEND``, ``aws`` unless
set; completion webhooks wired), and runs every invocation on the container's event loop
(``functions.run_sync``). Tests and the local stack hand in their own with ``configure()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from functions import PerContainer
from shared.config import Settings
from shared.logic.service import Services
from shared.logic.triggers import TriggerRules, load_triggers


@dataclass(frozen=True)
class Container:
    """What one function container keeps between invocations."""

    services: Services
    rules: TriggerRules


def build_container(env: Mapping[str, str] | None = None) -> Container:
    from shared.logic.webhooks import completion_hook
    from shared.wiring import build_services, load_settings

    settings = (
        load_settings() if env is None else Settings.from_env(env)  # tests pass their own
    )
    rules = load_triggers(settings)  # bad rules fail here, before any client is built
    services = build_services(
        settings,
        on_complete=completion_hook(settings),
    )
    rules.check_agents(services.registry, services.pipelines)
    return Container(services=services, rules=rules)


_container: PerContainer[Container] = PerContainer(build_container)


def container() -> Container:
    return _container.get()


def configure(services: Services | None, rules: TriggerRules | None = None) -> None:
    """Use ``services`` and ``rules`` (default: those ``services.settings`` point at) from
    now on; ``None`` forgets them, so the next invocation builds from the environment."""
    if services is None:
        _container.set(None)
        return
    chosen = rules if rules is not None else load_triggers(services.settings)
    chosen.check_agents(services.registry, services.pipelines)
    _container.set(Container(services=services, rules=chosen))


__all__ = ["Container", "build_container", "configure", "container"]
