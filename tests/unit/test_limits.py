"""Per-run limits: each ends the run as failed with a clear reason and an intact journal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.agents import Limits
from shared.journal import RunPatch
from shared.logic.runs import Budget
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import Run, RunStatus, Usage
from shared.runtime.limits import RepeatedCalls
from shared.runtime.state import replay
from tests.support.runtime_kit import Harness, Toolbox, assert_journal_consistent, kinds
from tests.support.scripted_provider import ScriptedProvider, plan

LOOKUP_FOREVER = [[("lookup", {"query": f"q{i}"})] for i in range(10)]


async def _assert_failed(h: Harness, run: Run, *, code: str, limit: str) -> None:
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == code
    assert run.error.details is not None
    assert run.error.details["limit"] == limit
    assert (limit if code != "timeout" else "timeout") in run.error.message
    assert run.finished_at is not None
    assert run.pending_approval is None
    records = await h.records(run.run_id)
    assert_journal_consistent(records, run)
    assert records[-1].kind is RecordKind.FINISHED
    events = await h.events(run.run_id)
    last = events[-1]
    assert last.type is EventType.RUN_STATUS
    assert last.data["status"] == "failed"
    assert last.data["error"]["code"] == code
    assert last.data["error"]["details"]["limit"] == limit
    # The stored run is what the journal says.
    stored = await h.journal.get_run(run.run_id)
    assert stored == run


async def test_max_steps(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=2))])
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="max_steps")
    assert run.error is not None
    assert run.error.details is not None
    assert run.error.details["value"] == 2
    assert run.error.details["used"] == 2
    assert provider.calls == 2
    assert run.steps == 2
    records = await h.records(run.run_id)
    assert kinds(records) == [
        RecordKind.CREATED,
        RecordKind.STARTED,
        RecordKind.MODEL,
        RecordKind.MODEL,
        RecordKind.FINISHED,
    ]


async def test_max_output_tokens_is_a_total_over_the_run(toolbox: Toolbox) -> None:
    limits = Limits(max_output_tokens=100, max_tokens_per_call=64)
    h = Harness([toolbox.agent("lookup", limits=limits)])
    usage = Usage(input_tokens=10, output_tokens=40)
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="max_output_tokens")
    assert provider.calls == 3
    # Each call may only spend what is left of the run's total.
    assert [r.max_tokens for r in provider.requests] == [64, 60, 20]
    assert run.usage.output_tokens == 120
    assert run.error is not None
    assert run.error.details is not None
    assert run.error.details["used"] == 120


async def test_max_cost_usd(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_cost_usd=0.1))])
    # test-model is priced by the default row: $3 in / $15 out per million tokens.
    usage = Usage(input_tokens=10_000, output_tokens=1_000)
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="max_cost_usd")
    assert provider.calls == 3
    assert run.cost_usd == pytest.approx(3 * 0.045)
    assert run.error is not None
    assert run.error.details is not None
    assert run.error.details["used"] == pytest.approx(0.135)


async def test_timeout_while_the_model_call_is_in_flight(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(timeout_s=0.05))])
    provider = ScriptedProvider(responder=plan("never"))
    provider.block_at(1)  # never released: only the deadline ends the call
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="timeout", limit="timeout_s")
    assert provider.completed == 0
    assert RecordKind.MODEL not in kinds(await h.records(run.run_id))


async def test_timeout_while_a_tool_runs(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(timeout_s=0.05))])
    toolbox.block_next("lookup")  # never released
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "slow"})], "done"))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="timeout", limit="timeout_s")
    assert provider.calls == 1
    assert run.steps == 1


async def test_timeout_counts_time_already_spent_on_the_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(timeout_s=60))])
    run_id = await h.submit()
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    await h.journal.update_run(run_id, RunPatch(started_at=long_ago), lease=None)
    provider = ScriptedProvider(responder=plan("too late"))
    run = await h.runtime(provider).execute(run_id)
    await _assert_failed(h, run, code="timeout", limit="timeout_s")
    assert provider.calls == 0
    assert run.started_at == long_ago


async def test_limit_reached_on_the_last_step_still_succeeds(toolbox: Toolbox) -> None:
    """A limit stops the *next* model call; a run that finishes within its steps succeeds."""
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=2))])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "a"})], "done"))
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED
    assert run.steps == 2


# ---- per-request budgets -------------------------------------------------------------------


def test_tightened_only_lowers() -> None:
    base = Limits(max_steps=10, max_cost_usd=1.0, max_output_tokens=1000, timeout_s=30)
    lower = base.tightened({"max_steps": 3, "max_cost_usd": 0.25, "max_output_tokens": 100})
    assert (lower.max_steps, lower.max_cost_usd, lower.max_output_tokens) == (3, 0.25, 100)
    higher = base.tightened({"max_steps": 99, "max_cost_usd": 50.0, "max_output_tokens": 10**6})
    assert higher == base
    assert base.tightened({}) == base
    # What a budget cannot name stays the agent's.
    assert base.tightened({"timeout_s": 9999}).timeout_s == 30
    assert lower.timeout_s == 30


async def test_budget_tightens_max_steps_in_a_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=5))])
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER))
    run = await h.runtime(provider).execute(await h.submit(budget=Budget(max_steps=1)))
    await _assert_failed(h, run, code="budget_exceeded", limit="max_steps")
    assert provider.calls == 1
    assert run.budget == {"max_steps": 1}


async def test_budget_never_loosens_the_agents_limits(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=2, max_cost_usd=0.1))])
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER))
    budget = Budget(max_steps=50, max_cost_usd=100.0)
    run = await h.runtime(provider).execute(await h.submit(budget=budget))
    await _assert_failed(h, run, code="budget_exceeded", limit="max_steps")
    assert provider.calls == 2
    assert run.error is not None
    assert run.error.details is not None
    assert run.error.details["value"] == 2


async def test_budget_tightens_cost(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_cost_usd=5.0))])
    usage = Usage(input_tokens=10_000, output_tokens=1_000)  # $0.045 a call
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    run = await h.runtime(provider).execute(await h.submit(budget=Budget(max_cost_usd=0.05)))
    await _assert_failed(h, run, code="budget_exceeded", limit="max_cost_usd")
    assert provider.calls == 2


async def test_replay_of_a_failed_run_is_stable(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=1))])
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    # Executing a finished run again changes nothing and calls nothing.
    again = await h.runtime(ScriptedProvider()).execute(run_id)
    assert again == run
    records = await h.records(run_id)
    state = replay(records)
    assert state.finished
    # The last response's call never ran (the limit came first) and stays visibly unanswered.
    assert [u["id"] for u in state.pending_tool_uses()] == ["toolu_01_0"]
    assert records[-1].tool_results == []
    assert toolbox.invocations == []


async def test_max_input_tokens_counts_cache_reads_and_writes(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_input_tokens=1000))])
    usage = Usage(input_tokens=100, cache_creation_input_tokens=150, cache_read_input_tokens=150)
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="max_input_tokens")
    assert provider.calls == 3  # 400 a call: the run stops before the 4th
    assert run.error is not None
    assert run.error.details is not None
    assert run.error.details["used"] == 1200


async def test_budget_tightens_input_tokens_and_repeats(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    usage = Usage(input_tokens=500, output_tokens=10)
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    run_id = await h.submit(budget=Budget(max_input_tokens=1000))
    run = await h.runtime(provider).execute(run_id)
    await _assert_failed(h, run, code="budget_exceeded", limit="max_input_tokens")
    assert provider.calls == 2


SAME_LOOKUP = [[("lookup", {"query": "same"})] for _ in range(10)]


async def test_the_same_tool_call_repeated_ends_the_run_as_a_loop(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_repeated_tool_calls=3))])
    provider = ScriptedProvider(responder=plan(*SAME_LOOKUP))
    run = await h.runtime(provider).execute(await h.submit())
    await _assert_failed(h, run, code="loop_detected", limit="max_repeated_tool_calls")
    assert run.error is not None
    assert run.error.details == {
        "limit": "max_repeated_tool_calls",
        "value": 3,
        "tool": "lookup",
        "repeats": 3,
    }
    # The third identical call was asked for but never run; its step is journaled.
    assert provider.calls == 3
    assert len(toolbox.calls("lookup")) == 2
    assert run.steps == 3


async def test_different_inputs_are_not_a_loop(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_repeated_tool_calls=2))])
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER[:4], "done"))
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED


async def test_a_request_budget_can_lower_the_repeat_limit(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan(*SAME_LOOKUP))
    run_id = await h.submit(budget=Budget(max_repeated_tool_calls=2))
    run = await h.runtime(provider).execute(run_id)
    await _assert_failed(h, run, code="loop_detected", limit="max_repeated_tool_calls")
    assert len(toolbox.calls("lookup")) == 1


class TenantSpend:
    """A usage sink that knows what each tenant spent today and counts what it is told."""

    def __init__(self, spent: dict[str, float]) -> None:
        self.spent = dict(spent)
        self.recorded: list[tuple[str, str, float, int]] = []
        self.flushes = 0

    def record(
        self, *, tenant: str, agent: str, usage: Usage, at: datetime, steps: int = 1, runs: int = 0
    ) -> None:
        self.recorded.append((tenant, agent, usage.cost_usd, runs))
        self.spent[tenant] = self.spent.get(tenant, 0.0) + usage.cost_usd

    async def flush(self, *, force: bool = False) -> None:
        self.flushes += 1

    async def spent_today(self, tenant: str) -> float:
        return self.spent.get(tenant, 0.0)


async def test_a_tenant_over_its_daily_budget_stops_before_the_next_call(
    toolbox: Toolbox,
) -> None:
    h = Harness([toolbox.agent("lookup")])
    usage = Usage(input_tokens=10_000, output_tokens=1_000)  # $0.045 a call
    provider = ScriptedProvider(responder=plan(*LOOKUP_FOREVER, usage=usage))
    spend = TenantSpend({"default": 0.9})
    runtime = h.runtime(provider, usage=spend, daily_budget=lambda tenant: 1.0)
    run = await runtime.execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="tenant_daily_budget_usd")
    assert provider.calls == 3  # 0.9 + 3 x 0.045 >= 1.0
    assert run.error is not None
    assert "daily budget" in run.error.message
    # Every step was counted, the run once (on its first step).
    assert [r[3] for r in spend.recorded] == [1, 0, 0]
    assert spend.flushes >= 3


async def test_a_tenant_already_over_budget_makes_no_call_and_others_are_unaffected(
    toolbox: Toolbox,
) -> None:
    h = Harness([toolbox.agent()])
    provider = ScriptedProvider(responder=plan("hi"))
    spend = TenantSpend({"default": 5.0})
    budgets = {"default": 5.0}
    runtime = h.runtime(provider, usage=spend, daily_budget=budgets.get)
    run = await runtime.execute(await h.submit())
    await _assert_failed(h, run, code="budget_exceeded", limit="tenant_daily_budget_usd")
    assert provider.calls == 0
    budgets.clear()  # no budget for the tenant: it runs
    assert (await runtime.execute(await h.submit())).status is RunStatus.SUCCEEDED


def _asks(*inputs: str) -> dict[str, Any]:
    uses = [
        {"type": "tool_use", "id": f"t{i}", "name": "lookup", "input": {"query": q}}
        for i, q in enumerate(inputs)
    ]
    return {"role": "assistant", "content": uses}


def test_repeats_count_the_runs_own_calls_once_each() -> None:
    limits = Limits(max_repeated_tool_calls=3)
    same = {"type": "tool_use", "id": "tx", "name": "lookup", "input": {"query": "a"}}
    # One earlier turn of the thread asked for the same call: it does not count.
    messages = [_asks("a"), {"role": "user", "content": "again"}, _asks("a"), _asks("a")]
    repeats = RepeatedCalls(first=2)
    assert repeats.check(messages, 3, [same], limits) is None  # 2 in this run
    # Checking again at the same point counts nothing twice.
    assert repeats.check(messages, 3, [same], limits) is None
    error = repeats.check(messages, 4, [same], limits)  # 3 in this run
    assert error is not None
    assert error.details == {
        "limit": "max_repeated_tool_calls",
        "value": 3,
        "tool": "lookup",
        "repeats": 3,
    }
    # Two identical calls in one response count as two.
    assert RepeatedCalls().check([], 0, [same, same, same], limits) is not None
