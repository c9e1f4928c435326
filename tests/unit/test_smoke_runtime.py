from __future__ import annotations

from shared.agents import AgentRegistry
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.run import RunStatus
from shared.providers.offline import OfflineProvider
from shared.runtime import AgentRuntime


async def test_research_agent_runs_to_completion(registry: AgentRegistry) -> None:
    journal = MemoryJournal()
    runtime = AgentRuntime(journal, OfflineProvider(), registry)
    run = await submit_run(journal, registry, SubmitRun(agent="researcher", input="crashes?"))
    done = await runtime.execute(run.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.steps == 4
    assert done.usage.cost_usd > 0
