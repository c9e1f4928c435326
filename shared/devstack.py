"""`switchyard dev` for now: the demo tour in-process, on moto, with the offline model.

(The full local stack — gateway, workers, pollers — comes with the API and worker tiers; this
runs the same runtime and journal code paths those will use.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.agents import AgentRegistry
from shared.config import Settings
from shared.journal.base import Journal
from shared.journal.memory import MemoryJournal
from shared.logic.demo import run_tour, summary
from shared.providers.factory import build_provider


@contextlib.contextmanager
def _journal(settings: Settings, kind: str) -> Iterator[tuple[Journal, str]]:
    if kind == "memory":
        yield MemoryJournal(), "in-memory journal"
        return
    from shared.dal.local import local_aws

    with local_aws(settings) as journal:
        yield (
            journal,
            f"DynamoDB table {settings.table_name} + S3 bucket {settings.bucket_name} on moto",
        )


async def run_demo(settings: Settings, *, journal_kind: str, latency_s: float) -> int:
    registry = AgentRegistry.from_modules(settings.agent_modules)
    provider = build_provider(settings, offline_latency_s=latency_s)
    model = "the Anthropic API" if settings.provider == "anthropic" else "the offline model"
    with _journal(settings, journal_kind) as (journal, where):
        print(f"Switchyard dev: {len(registry)} agents, {model}, {where}")
        result = await run_tour(journal, provider, registry)
    print("\nSummary")
    for line in summary(result):
        print("  " + line)
    failed = [r for r in result.runs if r.status.value != "succeeded"]
    return 1 if failed else 0
