"""The offline model: deterministic, and good enough to drive the example agents."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.agents import AgentRegistry
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.messages import ModelRequest, ToolSpec
from shared.models.run import RunStatus
from shared.providers.offline import OfflineProvider
from shared.runtime import AgentRuntime
from shared.runtime.state import replay

SEARCH = ToolSpec(
    name="search",
    description="search",
    input_schema={
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 2}},
        "required": ["query", "limit"],
    },
)
READ = ToolSpec(
    name="read",
    description="read",
    input_schema={
        "type": "object",
        "properties": {"url": {"type": "string"}},
        "required": ["url"],
    },
)


def _request(messages: list[dict[str, object]], tools: list[ToolSpec]) -> ModelRequest:
    return ModelRequest(model="claude-x", system="sys", messages=messages, tools=tools)


async def test_same_request_same_response() -> None:
    request = _request([{"role": "user", "content": "find durable things"}], [SEARCH, READ])
    a = await OfflineProvider().complete(request)
    b = await OfflineProvider().complete(request)
    assert a == b
    assert a.id.startswith("msg_offline_")
    assert a.tool_uses() == [
        {
            "type": "tool_use",
            "id": "toolu_offline_001",
            "name": "search",
            "input": {"query": "find durable things", "limit": 2},
        }
    ]
    other = await OfflineProvider().complete(
        _request([{"role": "user", "content": "something else"}], [SEARCH, READ])
    )
    assert other.id != a.id
    assert other.tool_uses()[0]["id"] == "toolu_offline_001"  # ids depend on the step only


async def test_later_tools_are_filled_from_earlier_results() -> None:
    provider = OfflineProvider()
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_offline_001", "name": "search", "input": {}}
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_offline_001",
                    "content": '{"results":[{"url":"https://a.example"}]}',
                }
            ],
        },
    ]
    response = await provider.complete(_request(messages, [SEARCH, READ]))
    [use] = response.tool_uses()
    assert use["name"] == "read"
    assert use["id"] == "toolu_offline_002"
    assert use["input"] == {"url": "https://a.example"}
    assert provider.calls == 1


async def test_answers_once_every_tool_was_called() -> None:
    messages: list[dict[str, object]] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "search"}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t", "content": "found it"}],
        },
    ]
    response = await OfflineProvider().complete(_request(messages, [SEARCH]))
    assert response.stop_reason == "end_turn"
    assert response.tool_uses() == []
    assert "found it" in response.text()
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


async def test_classifier_picks_the_named_label(registry: AgentRegistry) -> None:
    journal = MemoryJournal()
    runtime = AgentRuntime(journal, OfflineProvider(), registry)
    run = await submit_run(
        journal,
        registry,
        SubmitRun(agent="ticket-triage", input="I was charged twice, billing is wrong"),
    )
    done = await runtime.execute(run.run_id)
    assert done.status is RunStatus.SUCCEEDED
    assert done.output == "billing"
    assert done.steps == 1


@pytest.mark.parametrize("agent", ["researcher", "ticket-triage"])
async def test_two_runs_of_an_example_agent_are_identical(
    registry: AgentRegistry, agent: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conversations = []
    outputs = []
    for i in range(2):
        monkeypatch.setenv("SWITCHYARD_EFFECTS_DIR", str(tmp_path / f"effects-{i}"))
        journal = MemoryJournal()
        runtime = AgentRuntime(journal, OfflineProvider(), registry)
        run = await submit_run(
            journal,
            registry,
            SubmitRun(agent=agent, input="how do agents survive crashes?"),
            run_id="run_same",  # the report tool echoes its idempotency key, which has the id
        )
        done = await runtime.execute(run.run_id)
        assert done.status is RunStatus.SUCCEEDED
        records = await journal.records(run.run_id)
        conversations.append(replay(records).messages(run.input))
        outputs.append(done.output)
    assert conversations[0] == conversations[1]
    assert outputs[0] == outputs[1]


async def test_model_suffix() -> None:
    request = _request([{"role": "user", "content": "hi"}], [])
    response = await OfflineProvider(model_suffix="-offline").complete(request)
    assert response.model == "claude-x-offline"
    assert response.text() == "Offline answer to: hi"
