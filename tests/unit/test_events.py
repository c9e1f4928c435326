"""Events: contiguous seqs, sensible types and steps, cursor paging that never skips."""

from __future__ import annotations

import pytest

from shared.models.events import Event, EventType
from shared.models.run import RunStatus
from shared.runtime.events import PREVIEW_CHARS, preview
from tests.support.runtime_kit import Harness, Toolbox
from tests.support.scripted_provider import ScriptedProvider, plan

TURNS = plan(
    [("lookup", {"query": "a"}), ("lookup_sync", {"query": "b"})],
    [("send_email", {"to": "x", "body": "y"})],
    "done",
)


async def _finished_run(toolbox: Toolbox) -> tuple[Harness, str]:
    h = Harness([toolbox.agent("lookup", "lookup_sync", "send_email")])
    run_id = await h.submit()
    run = await h.runtime(ScriptedProvider(responder=TURNS)).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    return h, run_id


def _statuses(events: list[Event]) -> list[str]:
    return [e.data["status"] for e in events if e.type is EventType.RUN_STATUS]


async def test_seqs_are_contiguous_from_one(toolbox: Toolbox) -> None:
    h, run_id = await _finished_run(toolbox)
    events = await h.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for record in await h.records(run_id):
        assert record.events
        assert record.events[0].seq == record.seq


async def test_types_and_steps_tell_the_story(toolbox: Toolbox) -> None:
    h, run_id = await _finished_run(toolbox)
    events = await h.events(run_id)
    assert [(e.type.value, e.data.get("step"), e.data.get("name")) for e in events] == [
        ("run.status", None, None),  # queued
        ("run.status", 0, None),  # running
        ("step.completed", 1, None),
        ("tool.called", 1, "lookup"),
        ("tool.called", 1, "lookup_sync"),
        ("tool.completed", 1, "lookup"),
        ("tool.completed", 1, "lookup_sync"),
        ("step.completed", 2, None),
        ("tool.called", 2, "send_email"),
        ("tool.completed", 2, "send_email"),
        ("step.completed", 3, None),
        ("run.status", 3, None),
    ]
    assert _statuses(events) == ["queued", "running", "succeeded"]
    assert events[0].data["agent"] == "tester"


async def test_step_events_carry_usage_and_running_cost(toolbox: Toolbox) -> None:
    h, run_id = await _finished_run(toolbox)
    run = await h.journal.get_run(run_id)
    steps = [e.data for e in await h.events(run_id) if e.type is EventType.STEP_COMPLETED]
    assert [s["model"] for s in steps] == ["test-model"] * 3
    assert [s["stop_reason"] for s in steps] == ["tool_use", "tool_use", "end_turn"]
    assert all(s["input_tokens"] == 100 and s["output_tokens"] == 20 for s in steps)
    running = [s["total_cost_usd"] for s in steps]
    assert running == sorted(running)
    assert running[-1] == pytest.approx(run.cost_usd)
    assert sum(s["cost_usd"] for s in steps) == pytest.approx(run.cost_usd)
    assert steps[-1]["text"] == "done"


async def test_tool_events_are_small(toolbox: Toolbox) -> None:
    h, run_id = await _finished_run(toolbox)
    events = await h.events(run_id)
    called = next(e for e in events if e.type is EventType.TOOL_CALLED)
    assert called.data["input"] == '{"query":"a"}'
    assert called.data["tool_use_id"] == "toolu_01_0"
    completed = next(e for e in events if e.type is EventType.TOOL_COMPLETED)
    assert completed.data == {
        "step": 1,
        "tool_use_id": "toolu_01_0",
        "name": "lookup",
        "is_error": False,
        "output_chars": len('{"query":"a","hits":3}'),
    }


def test_preview_truncates() -> None:
    assert preview({"a": 1}) == '{"a":1}'
    long = preview("x" * 1000)
    assert len(long) == PREVIEW_CHARS
    assert long.endswith("…")
    assert preview("y" * PREVIEW_CHARS) == "y" * PREVIEW_CHARS


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 100])
async def test_paging_with_a_cursor_never_skips_or_repeats(toolbox: Toolbox, limit: int) -> None:
    h, run_id = await _finished_run(toolbox)
    everything = await h.events(run_id)
    seen: list[Event] = []
    after = 0
    pages = 0
    while True:
        page = await h.journal.events(run_id, after=after, limit=limit)
        if not page:
            break
        assert len(page) <= limit
        assert page[0].seq == after + 1
        seen.extend(page)
        after = page[-1].seq  # the next cursor
        pages += 1
    assert seen == everything
    assert pages == -(-len(everything) // limit)


async def test_cursor_inside_a_record(toolbox: Toolbox) -> None:
    h, run_id = await _finished_run(toolbox)
    records = await h.records(run_id)
    multi = next(r for r in records if len(r.events) >= 3)
    middle = multi.events[1].seq
    page = await h.journal.events(run_id, after=middle, limit=2)
    assert [e.seq for e in page] == [middle + 1, middle + 2]
    total = len(await h.events(run_id))
    assert await h.journal.events(run_id, after=total) == []
    assert await h.journal.events(run_id, after=total + 50) == []


async def test_events_stay_contiguous_across_a_resume(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", "lookup_sync", "send_email")])
    run_id = await h.submit()
    crashing = ScriptedProvider(responder=TURNS)
    crashing.fail_at(2, RuntimeError("crash"))
    with pytest.raises(RuntimeError):
        await h.runtime(crashing).execute(run_id)
    seen_before = await h.events(run_id)
    await h.runtime(ScriptedProvider(responder=TURNS)).execute(run_id)
    events = await h.events(run_id)
    assert events[: len(seen_before)] == seen_before  # history never rewritten
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert _statuses(events) == ["queued", "running", "running", "succeeded"]


async def test_approval_and_failure_events(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("deploy")])
    run_id = await h.submit()
    provider = ScriptedProvider(responder=plan([("deploy", {"service": "s", "version": "1"})]))
    await h.runtime(provider).execute(run_id)
    events = await h.events(run_id)
    assert [e.type for e in events[-2:]] == [EventType.APPROVAL_REQUESTED, EventType.RUN_STATUS]
    assert events[-2].data["calls"][0]["name"] == "deploy"
    assert _statuses(events) == ["queued", "running", "awaiting_approval"]
