"""Typed tools: schema, validation, errors the model sees, flags, sync/async, context."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import BaseModel, Field

from shared.agents import Tool, ToolContext, tool
from shared.agents.tools import SecretNotFoundError, render_result
from shared.errors import AgentError, ToolInputError
from shared.models.run import RunStatus
from tests.support.runtime_kit import SECRET, Harness, Toolbox
from tests.support.scripted_provider import ScriptedProvider, plan


def _ctx(secrets: dict[str, str] | None = None) -> ToolContext:
    return ToolContext(
        run_id="run_1",
        tenant="acme",
        step=2,
        tool_use_id="toolu_1",
        idempotency_key="run_1:2:toolu_1",
        _secrets=secrets or {},
    )


def _results_seen(provider: ScriptedProvider, call: int) -> list[dict[str, Any]]:
    """The tool_result blocks the model received in its ``call``-th request (1-based)."""
    last = provider.requests[call - 1].messages[-1]
    assert last["role"] == "user"
    blocks: list[dict[str, Any]] = last["content"]
    assert all(b["type"] == "tool_result" for b in blocks)
    return blocks


# ---- definition ----------------------------------------------------------------------------


def test_schema_sent_for_pydantic_input_model(toolbox: Toolbox) -> None:
    spec = toolbox.tools["lookup"].spec()
    assert spec.name == "lookup"
    assert spec.description == "Look something up (read-only)."
    assert spec.input_schema == {
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "description": "What to look up",
                "maxLength": 50,
                "title": "Query",
            },
            "limit": {
                "type": "integer",
                "default": 3,
                "minimum": 1,
                "maximum": 10,
                "title": "Limit",
            },
        },
        "required": ["query"],
    }


async def test_model_request_carries_every_tool_spec(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", "send_email")])
    provider = ScriptedProvider(responder=plan("done"))
    await h.runtime(provider).execute(await h.submit())
    request = provider.requests[0]
    assert [t.name for t in request.tools] == ["lookup", "send_email"]
    assert request.tools[0] == toolbox.tools["lookup"].spec()
    assert request.tools[1].input_schema["required"] == ["to", "body"]
    assert request.system == "You are a test agent."


class _Args(BaseModel):
    n: int = Field(ge=0)


def test_name_and_description_overrides() -> None:
    @tool(name="count_up", description="Counts.")
    def f(args: _Args) -> int:
        return args.n + 1

    assert (f.name, f.description) == ("count_up", "Counts.")
    assert f.takes_context is False
    assert f.spec().input_schema["properties"]["n"]["minimum"] == 0


def test_decorator_rejects_functions_without_a_pydantic_input() -> None:
    def no_params() -> str:
        return ""

    def plain(x: int) -> str:
        return str(x)

    with pytest.raises(AgentError, match="needs a pydantic input"):
        tool(no_params)
    with pytest.raises(AgentError, match="must be annotated with a pydantic model"):
        tool(plain)


def test_decorator_reports_unresolvable_annotations_as_agent_error() -> None:
    class LocalArgs(BaseModel):  # local: invisible to get_type_hints under future annotations
        n: int

    def f(args: LocalArgs) -> int:
        return args.n

    with pytest.raises(AgentError, match="LocalArgs"):
        tool(f)


def test_flags(toolbox: Toolbox) -> None:
    lookup, email, deploy = (toolbox.tools[n] for n in ("lookup", "send_email", "deploy"))
    assert (lookup.side_effect, lookup.requires_approval) == (False, False)
    assert (email.side_effect, email.requires_approval) == (True, False)
    assert (deploy.side_effect, deploy.requires_approval) == (True, True)
    described = {t["name"]: t for t in toolbox.agent("lookup", "deploy").describe()["tools"]}
    assert described["deploy"]["requires_approval"] is True
    assert described["lookup"]["side_effect"] is False
    assert described["deploy"]["input_schema"]["required"] == ["service", "version"]


def test_parse_input_raises_tool_input_error_with_details(toolbox: Toolbox) -> None:
    with pytest.raises(ToolInputError) as info:
        toolbox.tools["lookup"].parse_input({"query": "x" * 51, "limit": 0})
    assert "2 error(s)" in info.value.message
    assert {tuple(e["loc"]) for e in info.value.details} == {("query",), ("limit",)}


def test_render_result() -> None:
    class Out(BaseModel):
        a: int

    assert render_result("plain") == "plain"
    assert render_result(Out(a=1)) == '{"a":1}'
    assert render_result({"b": [1, 2]}) == '{"b":[1,2]}'
    assert render_result(7) == "7"


# ---- invocation ----------------------------------------------------------------------------


class _Num(BaseModel):
    n: int


async def test_sync_tool_runs_off_the_event_loop_thread() -> None:
    seen: list[int] = []

    @tool
    def sync_double(args: _Num) -> int:
        seen.append(threading.get_ident())
        return args.n * 2

    assert await sync_double.invoke({"n": 21}, _ctx()) == "42"
    assert seen
    assert seen[0] != threading.get_ident()


async def test_async_tool_with_context() -> None:
    @tool
    async def whoami(args: _Num, ctx: ToolContext) -> dict[str, object]:
        return {"n": args.n, "tenant": ctx.tenant, "key": ctx.idempotency_key}

    assert whoami.takes_context is True
    out = await whoami.invoke({"n": 1}, _ctx())
    assert out == '{"n":1,"tenant":"acme","key":"run_1:2:toolu_1"}'


async def test_invoke_validates_before_calling() -> None:
    called: list[int] = []

    @tool
    def never(args: _Num) -> int:
        called.append(args.n)
        return 0

    with pytest.raises(ToolInputError):
        await never.invoke({"n": "not a number"}, _ctx())
    assert called == []


def test_tool_context_secret_and_repr() -> None:
    ctx = _ctx({"api_key": SECRET})
    assert ctx.secret("api_key") == SECRET
    with pytest.raises(SecretNotFoundError, match="'other' is not configured"):
        ctx.secret("other")
    assert SECRET not in repr(ctx)


# ---- what the model sees in a run ----------------------------------------------------------


async def test_invalid_input_is_an_error_result_and_the_run_continues(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(
        responder=plan([("lookup", {"query": "ok", "limit": 99})], [("lookup", {"q": 1})], "done")
    )
    run = await h.runtime(provider).execute(await h.submit())

    assert run.status is RunStatus.SUCCEEDED
    assert run.output == "done"
    assert toolbox.invocations == []  # never called with bad input
    for call in (2, 3):
        [block] = _results_seen(provider, call)
        assert block["is_error"] is True
        assert block["content"].startswith("Error: invalid input for tool 'lookup'")
    assert "limit" in _results_seen(provider, 2)[0]["content"]
    assert "query" in _results_seen(provider, 3)[0]["content"]


async def test_unknown_tool_is_an_error_result(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan([("no_such_tool", {})], "done"))
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED
    [block] = _results_seen(provider, 2)
    assert block == {
        "type": "tool_result",
        "tool_use_id": "toolu_01_0",
        "content": "Error: no tool named 'no_such_tool'",
        "is_error": True,
    }


async def test_raising_tool_gives_error_result_with_exception_text(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("explode", "lookup")])
    provider = ScriptedProvider(
        responder=plan([("explode", {}), ("lookup", {"query": "after"})], "recovered")
    )
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == "recovered"
    failed, ok = _results_seen(provider, 2)
    assert failed["is_error"] is True
    assert failed["content"] == "Error: ValueError: kaboom: disk on fire"
    assert "is_error" not in ok
    assert ok["content"] == '{"query":"after","hits":3}'


async def test_sync_and_async_tools_in_one_step_keep_call_order(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", "lookup_sync")])
    provider = ScriptedProvider(
        responder=plan(
            [("lookup_sync", {"query": "s"}), ("lookup", {"query": "a", "limit": 2})], "done"
        )
    )
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED
    blocks = _results_seen(provider, 2)
    assert [b["tool_use_id"] for b in blocks] == ["toolu_01_0", "toolu_01_1"]
    assert [b["content"] for b in blocks] == ["sync result for s", '{"query":"a","hits":2}']
    assert sorted(i.name for i in toolbox.invocations) == ["lookup", "lookup_sync"]


async def test_tool_context_in_a_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", "send_email")], secrets={"api_key": SECRET})
    provider = ScriptedProvider(
        responder=plan([("lookup", {"query": "a"}), ("send_email", {"to": "x", "body": "y"})], "ok")
    )
    run_id = await h.submit()
    await h.runtime(provider).execute(run_id)
    for inv, use_id in zip(toolbox.invocations, ["toolu_01_0", "toolu_01_1"], strict=True):
        assert inv.ctx.run_id == run_id
        assert inv.ctx.tenant == "default"
        assert inv.ctx.step == 1
        assert inv.ctx.tool_use_id == use_id
        assert inv.ctx.idempotency_key == f"{run_id}:1:{use_id}"
        assert inv.ctx.secret("api_key") == SECRET
    records = await h.records(run_id)
    results = {r.tool_use_id: r for rec in records for r in rec.tool_results}
    # Only side-effecting results carry their idempotency key into the journal.
    assert results["toolu_01_0"].idempotency_key is None
    assert results["toolu_01_1"].idempotency_key == f"{run_id}:1:toolu_01_1"


async def test_missing_secret_is_an_error_result(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("missing_secret")])
    provider = ScriptedProvider(responder=plan([("missing_secret", {})], "done"))
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.SUCCEEDED
    [block] = _results_seen(provider, 2)
    assert block["is_error"] is True
    assert block["content"] == "Error: secret 'not_configured' is not configured"


def test_tool_is_a_frozen_dataclass(toolbox: Toolbox) -> None:
    t: Tool = toolbox.tools["lookup"]
    with pytest.raises(AttributeError):
        t.name = "renamed"  # type: ignore[misc]
