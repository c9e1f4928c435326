"""When tool results are written: with the next model response, or at once when costly."""

from __future__ import annotations

from shared.agents import Limits
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import RunStatus
from shared.runtime import RuntimeOptions
from tests.support.runtime_kit import Harness, Toolbox, assert_journal_consistent, kinds
from tests.support.scripted_provider import ScriptedProvider, plan

C, S, M, T, F = (
    RecordKind.CREATED,
    RecordKind.STARTED,
    RecordKind.MODEL,
    RecordKind.TOOLS,
    RecordKind.FINISHED,
)


async def test_read_only_results_ride_with_the_next_model_response(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    turns = [[("lookup", {"query": f"q{i}"})] for i in range(1, 5)]
    provider = ScriptedProvider(responder=plan(*turns, "done"))
    run_id = await h.submit()
    writes_before = h.journal.writes

    run = await h.runtime(provider).execute(run_id)

    assert run.status is RunStatus.SUCCEEDED
    records = await h.records(run_id)
    assert kinds(records) == [C, S, M, M, M, M, M]
    # lease + started + one record per step + release: one write per step, no more.
    assert h.journal.writes - writes_before == 1 + 1 + 5 + 1
    model_records = records[2:]
    assert model_records[0].tool_results == []
    for i, record in enumerate(model_records[1:], start=1):
        assert [(r.step, r.tool_use_id) for r in record.tool_results] == [(i, f"toolu_{i:02d}_0")]
        assert record.tool_results[0].content == f'{{"query":"q{i}","hits":3}}'
        assert record.tool_results[0].idempotency_key is None
        # The tool.completed event travels in the same record, before the step's own events.
        assert [e.type for e in record.events][:2] == [
            EventType.TOOL_COMPLETED,
            EventType.STEP_COMPLETED,
        ]
    assert_journal_consistent(records, run)


async def test_side_effecting_results_are_journaled_at_once(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("send_email", "lookup")])
    email = {"to": "a@example.com", "body": "hi"}
    provider = ScriptedProvider(
        responder=plan([("send_email", email)], [("lookup", {"query": "x"})], "done")
    )
    run_id = await h.submit()
    writes_before = h.journal.writes

    run = await h.runtime(provider).execute(run_id)

    records = await h.records(run_id)
    assert kinds(records) == [C, S, M, T, M, M]
    assert h.journal.writes - writes_before == 1 + 1 + 4 + 1
    tools = records[3]
    assert tools.step == 1
    [result] = tools.tool_results
    assert result.name == "send_email"
    assert result.idempotency_key == f"{run_id}:1:toolu_01_0"
    assert [e.type for e in tools.events] == [EventType.TOOL_COMPLETED]
    assert records[4].tool_results == []  # not journaled twice
    assert [r.name for r in records[5].tool_results] == ["lookup"]
    assert_journal_consistent(records, run)


async def test_a_side_effect_in_a_batch_flushes_the_whole_batch(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("send_email", "lookup")])
    batch = [("lookup", {"query": "x"}), ("send_email", {"to": "b", "body": "c"})]
    provider = ScriptedProvider(responder=plan(batch, "done"))
    run_id = await h.submit()
    await h.runtime(provider).execute(run_id)
    records = await h.records(run_id)
    assert kinds(records) == [C, S, M, T, M]
    assert [r.tool_use_id for r in records[3].tool_results] == ["toolu_01_0", "toolu_01_1"]


async def test_a_slow_read_only_batch_is_journaled_at_once(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "x"})], "done"))
    run_id = await h.submit()
    # Any batch takes longer than zero seconds.
    await h.runtime(provider, options=RuntimeOptions(flush_tools_after_s=0.0)).execute(run_id)
    assert kinds(await h.records(run_id)) == [C, S, M, T, M]


async def test_results_still_unjournaled_at_the_end_go_into_the_final_record(
    toolbox: Toolbox,
) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "x"})], "more"))
    run_id = await h.submit()
    runtime = h.runtime(provider)
    # Cancel once the lookup has run: its result is still carried, not journaled.
    toolbox.on_invoke = lambda name: runtime.cancel_local(run_id)
    run = await runtime.execute(run_id)
    assert run.status is RunStatus.CANCELLED
    records = await h.records(run_id)
    assert kinds(records) == [C, S, M, F]
    assert [r.tool_use_id for r in records[-1].tool_results] == ["toolu_01_0"]
    assert [e.type for e in records[-1].events] == [
        EventType.TOOL_COMPLETED,
        EventType.RUN_STATUS,
    ]


async def test_tools_do_not_run_once_no_further_model_call_is_allowed(
    toolbox: Toolbox,
) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_steps=1))])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "x"})]))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.details == {
        "limit": "max_steps",
        "value": 1,
        "used": 1,
    }
    assert toolbox.invocations == []  # its result could never reach the model
    records = await h.records(run_id)
    assert kinds(records) == [C, S, M, F]
    assert records[-1].tool_results == []


async def test_a_run_without_tools_costs_four_writes(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent()])
    run_id = await h.submit()
    writes_before = h.journal.writes
    await h.runtime(ScriptedProvider(responder=plan("hi"))).execute(run_id)
    assert h.journal.writes - writes_before == 4  # lease, started, model (final), release
