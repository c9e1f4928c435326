"""AnthropicProvider on the real SDK, over HTTP, against the fake Messages API server.

Nothing here mocks the SDK: retries, ``retry-after`` handling, streaming and error classes
are the SDK's own, so these tests pin down how Switchyard and the SDK behave together.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
import pytest
from anthropic import AsyncAnthropic
from pydantic import BaseModel

from shared.agents import Agent, AgentRegistry, tool
from shared.errors import ProviderError, ProviderOverloadedError, ProviderRateLimitedError
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.journal import JournalRecord, RecordKind
from shared.models.messages import ModelRequest, RateLimitInfo, RateLimitWindow, ToolSpec
from shared.models.run import Run, RunStatus, Usage
from shared.providers.anthropic import AnthropicProvider, rate_limits, retry_after_s
from shared.providers.pricing import PriceTable
from shared.runtime import AgentRuntime
from tests.integration.conftest import DUMMY_API_KEY, ProviderFactory
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Fault,
    OfflineResponder,
    Reply,
    ServerLimits,
    StepLoopResponder,
)

# Every test here takes well under a second or two; a hang should fail fast, not at the
# suite-wide 300 s.
pytestmark = pytest.mark.timeout(30)

PRIMARY = "claude-sonnet-4-6"
FALLBACK = "claude-haiku-4-5"
SYSTEM = "You record steps with record_step until told to stop."
EPHEMERAL = {"type": "ephemeral"}


class StepArgs(BaseModel):
    step: int


class NoteArgs(BaseModel):
    text: str


def looper(seen: list[int], *, fallback_models: tuple[str, ...] = ()) -> Agent:
    """A two-tool agent; the loop responder drives ``record_step``, ``note`` stays unused."""

    @tool
    def record_step(args: StepArgs) -> dict[str, int]:
        """Record that a step ran."""
        seen.append(args.step)
        return {"recorded": args.step}

    @tool
    def note(args: NoteArgs) -> str:
        """Keep a note."""
        return args.text

    return Agent(
        name="looper",
        model=PRIMARY,
        fallback_models=fallback_models,
        system=SYSTEM,
        tools=(record_step, note),
    )


async def run_agent(
    agent: Agent, provider: AnthropicProvider, *, registry: AgentRegistry | None = None
) -> tuple[Run, list[JournalRecord]]:
    registry = registry or AgentRegistry([agent])
    journal = MemoryJournal()
    runtime = AgentRuntime(journal, provider, registry)
    run = await submit_run(journal, registry, SubmitRun(agent=agent.name, input="go"))
    done = await runtime.execute(run.run_id)
    return done, await journal.records(run.run_id)


def model_records(records: list[JournalRecord]) -> list[JournalRecord]:
    return [r for r in records if r.kind is RecordKind.MODEL]


def step_usages(records: list[JournalRecord]) -> list[Usage]:
    usages = [r.usage for r in model_records(records)]
    assert all(u is not None for u in usages)
    return [u for u in usages if u is not None]


def simple_request(**overrides: Any) -> ModelRequest:
    fields: dict[str, Any] = {
        "model": PRIMARY,
        "system": "You look things up.",
        "messages": [{"role": "user", "content": "find durable execution"}],
        "tools": [
            ToolSpec(
                name="lookup",
                description="Look something up.",
                input_schema={"type": "object", "properties": {"query": {"type": "string"}}},
            )
        ],
    }
    fields.update(overrides)
    return ModelRequest(**fields)


# ---- the agent loop ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_tool_use_loop_runs_to_completion(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory, stream: bool
) -> None:
    fake_server.responder = StepLoopResponder(3, tool_name="record_step", final_text="all done")
    seen: list[int] = []

    done, records = await run_agent(looper(seen), make_provider(stream=stream))

    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "all done"
    assert done.steps == 4
    assert seen == [1, 2, 3]
    assert fake_server.status_counts == {200: 4}
    bodies = fake_server.message_bodies()
    assert all(bool(b.get("stream")) is stream for b in bodies)
    # The assistant turn goes back exactly as the API sent it, minus response-only nulls.
    assert bodies[1]["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_0001", "name": "record_step", "input": {"step": 1}}
        ],
    }
    last_result = bodies[3]["messages"][-1]["content"][0]
    assert last_result["tool_use_id"] == "toolu_0003"
    assert json.loads(last_result["content"]) == {"recorded": 3}
    assert [r.model for r in model_records(records)] == [PRIMARY] * 4


async def test_offline_responder_drives_an_example_agent(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider, registry: AgentRegistry
) -> None:
    fake_server.responder = OfflineResponder()
    researcher = registry.get("researcher")

    done, records = await run_agent(researcher, provider, registry=registry)

    assert done.status is RunStatus.SUCCEEDED, done.error
    called = [
        block["name"]
        for r in model_records(records)
        for block in (r.response or {}).get("content", [])
        if block.get("type") == "tool_use"
    ]
    assert called == [t.name for t in researcher.tools]
    assert done.steps == len(researcher.tools) + 1
    assert done.output.startswith("Summary of what the tools returned")


# ---- retries and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "min_wait_s"),
    [
        (Fault.rate_limited(retry_after_s=1), 1.0),
        (Fault.rate_limited(retry_after_ms=800), 0.8),
    ],
    ids=["retry-after", "retry-after-ms"],
)
async def test_rate_limit_waits_for_retry_after(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider, fault: Fault, min_wait_s: float
) -> None:
    # Both waits exceed the SDK's own first backoff (at most 0.5 s), so passing proves the
    # header was honoured rather than ignored.
    fake_server.script(fault, Reply.text("after the wait"))

    done, _ = await run_agent(looper([]), provider)

    assert done.status is RunStatus.SUCCEEDED, done.error
    assert done.output == "after the wait"
    first, retry = fake_server.requests
    assert (first.status, retry.status) == (429, 200)
    assert retry.received_at - first.received_at >= min_wait_s


async def test_overloaded_once_is_retried_by_the_sdk(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    fake_server.script(Fault.overloaded(), Reply.text("second try"))

    done, records = await run_agent(looper([]), provider)

    assert done.status is RunStatus.SUCCEEDED, done.error
    assert fake_server.status_counts == {529: 1, 200: 1}
    assert [r.model for r in model_records(records)] == [PRIMARY]


async def test_persistent_overload_falls_back_to_the_next_model(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    loop = StepLoopResponder(1, tool_name="record_step")

    def primary_overloaded(body: dict[str, Any]) -> Reply | Fault:
        if body["model"] == PRIMARY:
            return Fault.overloaded(retry_after_ms=10)
        return loop(body)

    fake_server.responder = primary_overloaded
    seen: list[int] = []

    done, records = await run_agent(looper(seen, fallback_models=(FALLBACK,)), provider)

    assert done.status is RunStatus.SUCCEEDED, done.error
    assert seen == [1]
    # Each step: the first try and the SDK's 2 retries on the primary, then the fallback.
    models = [r.body["model"] for r in fake_server.requests]
    assert models == [PRIMARY] * 3 + [FALLBACK] + [PRIMARY] * 3 + [FALLBACK]
    assert [r.model for r in model_records(records)] == [FALLBACK, FALLBACK]
    table = PriceTable()
    assert done.usage.cost_usd == pytest.approx(
        sum(table.cost(FALLBACK, u) for u in step_usages(records))
    )
    assert table.cost(FALLBACK, done.usage) != table.cost(PRIMARY, done.usage)


async def test_server_error_is_retried(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    fake_server.script(Fault.server_error(500), Reply.text("recovered"))

    response = await provider.complete(simple_request())

    assert response.text() == "recovered"
    assert [r.status for r in fake_server.requests] == [500, 200]


async def test_bad_request_fails_the_run_without_retrying(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    reason = "max_tokens: 999999 > 64000, which is the maximum allowed"
    fake_server.script(Fault.bad_request(reason))

    done, _ = await run_agent(looper([]), provider)

    assert done.status is RunStatus.FAILED
    assert done.error is not None
    assert done.error.code == "provider_error"
    assert reason in done.error.message
    assert "400" in done.error.message
    assert len(fake_server.requests) == 1


@pytest.mark.parametrize(
    ("fault", "wrapped", "retryable", "sdk_error"),
    [
        (Fault.rate_limited(), ProviderRateLimitedError, True, anthropic.RateLimitError),
        (Fault.overloaded(), ProviderOverloadedError, True, anthropic.OverloadedError),
        (Fault.server_error(500), ProviderError, True, anthropic.InternalServerError),
        (Fault.server_error(503), ProviderError, True, anthropic.ServiceUnavailableError),
        (Fault.bad_request("bad"), ProviderError, False, anthropic.BadRequestError),
        (
            Fault(404, "not_found_error", "model: claude-nope"),
            ProviderError,
            False,
            anthropic.NotFoundError,
        ),
    ],
    ids=["429", "529", "500", "503", "400", "404"],
)
async def test_errors_left_after_retries_are_classified(
    fake_server: FakeAnthropicServer,
    make_provider: ProviderFactory,
    fault: Fault,
    wrapped: type[ProviderError],
    retryable: bool,
    sdk_error: type[anthropic.APIStatusError],
) -> None:
    fake_server.script(fault)

    with pytest.raises(ProviderError) as caught:
        await make_provider(max_retries=0).complete(simple_request())

    error = caught.value
    assert type(error) is wrapped
    assert error.retryable is retryable
    assert error.status == fault.status
    assert type(error.__cause__) is sdk_error
    assert fault.message in str(error)


async def test_overload_inside_a_stream_is_an_overload(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory
) -> None:
    fake_server.script(Fault.overloaded(mid_stream=True))

    with pytest.raises(ProviderOverloadedError) as caught:
        await make_provider(stream=True).complete(simple_request())

    assert caught.value.retryable
    # The stream had already started with 200, so the SDK had nothing to retry.
    assert fake_server.status_counts == {200: 1}


async def test_unreachable_api_is_a_retryable_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AsyncAnthropic(
        api_key=DUMMY_API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=0
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await AnthropicProvider(client).complete(simple_request())
    finally:
        await client.close()

    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, anthropic.APIConnectionError)


async def test_slow_reply_times_out_as_a_retryable_error(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory
) -> None:
    fake_server.script(Reply.text("too late", delay_s=30))
    started = time.monotonic()

    with pytest.raises(ProviderError) as caught:
        await make_provider(max_retries=0, timeout_s=0.3).complete(simple_request())

    assert time.monotonic() - started < 5
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)


# ---- response mapping, streaming, caching ------------------------------------------------------


async def test_streaming_gives_the_same_response_as_create(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory
) -> None:
    tool_input = {"query": "durable execution", "filters": {"tags": ["a", "b"], "since": None}}
    reply = Reply.tool_use(
        "lookup", tool_input, tool_use_id="toolu_lookup", text="Let me look that up for you."
    )
    fake_server.script(reply, reply)
    request = simple_request(cache_prompt=False)

    created = await make_provider().complete(request)
    streamed = await make_provider(stream=True).complete(request)

    assert [r.streamed for r in fake_server.requests] == [False, True]
    expected = [
        {"type": "text", "text": "Let me look that up for you."},
        # A null the model put in a tool input is an argument, so it survives.
        {"type": "tool_use", "id": "toolu_lookup", "name": "lookup", "input": tool_input},
    ]
    assert created.content == expected
    assert streamed.content == expected
    assert (streamed.stop_reason, streamed.model) == (created.stop_reason, created.model)
    assert streamed.stop_reason == "tool_use"
    assert streamed.usage == created.usage


async def test_prompt_caching_marks_the_prefix_and_costs_cache_tokens(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    fake_server.responder = StepLoopResponder(2, tool_name="record_step")

    done, records = await run_agent(looper([]), provider)

    assert done.status is RunStatus.SUCCEEDED, done.error
    bodies = fake_server.message_bodies()
    assert len(bodies) == 3
    for body in bodies:
        assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
        assert [t.get("cache_control") for t in body["tools"]] == [None, EPHEMERAL]
    usages = step_usages(records)
    written = usages[0].cache_creation_input_tokens
    assert written > 0
    assert usages[0].cache_read_input_tokens == 0
    assert [(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in usages[1:]] == [
        (0, written),
        (0, written),
    ]
    assert done.usage.cache_creation_input_tokens == written
    assert done.usage.cache_read_input_tokens == 2 * written
    table = PriceTable()
    price = table.price(PRIMARY)
    without_cache = sum(
        table.cost(
            PRIMARY,
            u.model_copy(update={"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        )
        for u in usages
    )
    cache_cost = (written * price.cache_write + 2 * written * price.cache_read) / 1_000_000
    assert done.usage.cost_usd == pytest.approx(without_cache + cache_cost)


async def test_no_cache_markers_when_caching_is_off(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    fake_server.script(Reply.text("plain"))

    response = await provider.complete(simple_request(cache_prompt=False))

    (body,) = fake_server.message_bodies()
    assert body["system"] == "You look things up."
    assert "cache_control" not in json.dumps(body)
    assert (response.usage.cache_creation_input_tokens, response.usage.cache_read_input_tokens) == (
        0,
        0,
    )


async def test_missing_cache_usage_counts_as_zero(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    fake_server.script(
        Reply.text(
            "old api",
            usage={
                "input_tokens": 11,
                "output_tokens": 7,
                "cache_creation_input_tokens": None,
                "cache_read_input_tokens": None,
            },
        )
    )

    response = await provider.complete(simple_request())

    assert response.usage == Usage(input_tokens=11, output_tokens=7)


# ---- credentials -------------------------------------------------------------------------------


async def test_api_key_is_sent_but_never_appears_in_errors(
    fake_server: FakeAnthropicServer, provider: AnthropicProvider
) -> None:
    # A misbehaving proxy echoing the request header is how a key ends up in an error body.
    echo = Fault(
        401, "authentication_error", f"invalid header authorization: Bearer {DUMMY_API_KEY}"
    )
    fake_server.script(echo, echo)

    with pytest.raises(ProviderError) as caught:
        await provider.complete(simple_request())
    done, records = await run_agent(looper([]), provider)

    assert fake_server.requests[0].headers["authorization"] == f"Bearer {DUMMY_API_KEY}"
    error = caught.value
    assert not error.retryable
    assert DUMMY_API_KEY in str(error.__cause__)
    for text in (str(error), repr(error), error.message, json.dumps(error.details)):
        assert DUMMY_API_KEY not in text
    assert "[redacted]" in str(error)
    assert done.status is RunStatus.FAILED
    assert done.error is not None
    assert DUMMY_API_KEY not in done.error.model_dump_json()
    assert all(DUMMY_API_KEY not in r.model_dump_json() for r in records)


async def test_default_client_uses_the_sdk_environment(
    fake_server: FakeAnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_server.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", DUMMY_API_KEY)
    fake_server.script(Reply.text("configured from the environment"))
    provider = AnthropicProvider(max_retries=0, timeout_s=5)
    try:
        response = await provider.complete(simple_request())
    finally:
        await provider.aclose()

    assert response.text() == "configured from the environment"
    assert fake_server.requests[0].headers["authorization"] == f"Bearer {DUMMY_API_KEY}"


def test_provider_package_does_not_import_the_sdk() -> None:
    code = "import sys, shared.providers, shared.runtime; print('anthropic' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "False"


# ---- the fake server's own contract ------------------------------------------------------------


def post(server: FakeAnthropicServer, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.base_url + "/v1/messages",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


HELLO = {"model": PRIMARY, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.mark.parametrize(
    ("headers", "body", "status", "error_type"),
    [
        (VERSION, HELLO, 401, "authentication_error"),
        ({"x-api-key": "k"}, HELLO, 400, "invalid_request_error"),
        ({**VERSION, "authorization": "Bearer "}, HELLO, 401, "authentication_error"),
        (
            {**VERSION, "x-api-key": "k"},
            {
                **HELLO,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "x", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            400,
            "invalid_request_error",
        ),
    ],
    ids=["no-credentials", "no-version", "empty-bearer", "unanswered-tool-use"],
)
def test_fake_server_rejects_what_the_api_rejects(
    fake_server: FakeAnthropicServer,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    error_type: str,
) -> None:
    fake_server.responder = OfflineResponder()

    got_status, payload = post(fake_server, body, headers)

    assert got_status == status
    assert payload["type"] == "error"
    assert payload["error"]["type"] == error_type
    assert fake_server.status_counts == {status: 1}


def test_fake_server_accepts_x_api_key_and_answers_in_api_shape(
    fake_server: FakeAnthropicServer,
) -> None:
    fake_server.responder = OfflineResponder()

    status, payload = post(fake_server, HELLO, {**VERSION, "x-api-key": "k"})

    assert status == 200
    assert set(payload) >= {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert (payload["type"], payload["role"], payload["model"]) == ("message", "assistant", PRIMARY)
    assert payload["stop_reason"] == "end_turn"
    assert payload["content"][0]["text"] == "Offline answer to: hi"


# ---- rate-limit headers and retry-after --------------------------------------------------------


class FrozenClock:
    """The limiter's clock, standing still unless a test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def counted_reply(body: dict[str, Any]) -> Reply:
    return Reply.text(
        "counted",
        usage={
            "input_tokens": 120,
            "output_tokens": 30,
            "cache_creation_input_tokens": 80,
            "cache_read_input_tokens": 500,
        },
    )


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_rate_limit_headers_become_rate_limits(stream: bool) -> None:
    limits = ServerLimits(requests=50, input_tokens=10_000, output_tokens=4_000)
    with FakeAnthropicServer(counted_reply, limits=limits, clock=FrozenClock()) as server:
        client = AsyncAnthropic(api_key=DUMMY_API_KEY, base_url=server.base_url, max_retries=0)
        provider = AnthropicProvider(client, stream=stream)
        try:
            before = time.time()
            first = await provider.complete(simple_request(max_tokens=500))
            after = time.time()
            second = await provider.complete(simple_request(max_tokens=500))
        finally:
            await client.close()

    assert first.rate_limits is not None
    assert second.rate_limits is not None
    got = first.rate_limits
    assert (got.requests.limit, got.input_tokens.limit, got.output_tokens.limit) == (
        50,
        10_000,
        4_000,
    )
    # Input: 120 uncached + 80 written to the cache (reads are free). Output: the whole
    # max_tokens is reserved until the reply is sent; 470 of it came back before the second.
    assert (got.requests.remaining, got.input_tokens.remaining, got.output_tokens.remaining) == (
        49,
        9_800,
        3_500,
    )
    again = second.rate_limits
    assert (
        again.requests.remaining,
        again.input_tokens.remaining,
        again.output_tokens.remaining,
    ) == (48, 9_600, 3_470)
    # Full again after 1 request at 50 a minute (1.2 s), 200 tokens at 10,000 a minute
    # (1.2 s), 500 tokens at 4,000 a minute (7.5 s); the server rounds up to whole seconds.
    for window, refill_s in (
        (got.requests, 1.2),
        (got.input_tokens, 1.2),
        (got.output_tokens, 7.5),
    ):
        assert window.reset_at is not None
        assert window.reset_at.utcoffset() == timedelta(0)
        assert before + refill_s - 1e-3 <= window.reset_at.timestamp() <= after + refill_s + 1


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_rate_limit_headers_are_read_as_sent(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory, stream: bool
) -> None:
    fake_server.script(
        Reply.text(
            "with headers",
            headers={
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "3999",
                "anthropic-ratelimit-requests-reset": "2030-01-02T03:04:05+02:00",
                "anthropic-ratelimit-input-tokens-limit": "2000000",
                "anthropic-ratelimit-input-tokens-remaining": "lots",
                "anthropic-ratelimit-input-tokens-reset": "2030-01-02T01:04:06Z",
                "anthropic-ratelimit-output-tokens-limit": "-5",
                "anthropic-ratelimit-output-tokens-reset": "tomorrow",
            },
        )
    )

    response = await make_provider(stream=stream).complete(simple_request())

    # Malformed values (not a count, negative, not a time) read as not sent.
    assert response.rate_limits == RateLimitInfo(
        requests=RateLimitWindow(
            limit=4000, remaining=3999, reset_at=datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)
        ),
        input_tokens=RateLimitWindow(
            limit=2_000_000, reset_at=datetime(2030, 1, 2, 1, 4, 6, tzinfo=UTC)
        ),
        output_tokens=RateLimitWindow(),
    )
    assert response.rate_limits is not None
    assert response.rate_limits.requests.reset_at is not None
    assert response.rate_limits.requests.reset_at.utcoffset() == timedelta(0)  # as UTC
    assert response.text() == "with headers"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"anthropic-ratelimit-requests-limit": "many", "anthropic-ratelimit-tokens-limit": "9"}],
    ids=["none", "only-unusable"],
)
async def test_no_rate_limit_headers_give_none(
    fake_server: FakeAnthropicServer,
    make_provider: ProviderFactory,
    stream: bool,
    headers: dict[str, str],
) -> None:
    fake_server.script(Reply.text("plain", headers=headers))

    response = await make_provider(stream=stream).complete(simple_request())

    assert response.text() == "plain"
    assert response.rate_limits is None


@pytest.mark.parametrize(
    ("fault", "wrapped", "retry_after_s"),
    [
        (Fault.rate_limited(retry_after_s=7), ProviderRateLimitedError, 7.0),
        (Fault.rate_limited(retry_after_s=2.5), ProviderRateLimitedError, 2.5),
        (Fault.rate_limited(retry_after_ms=1500), ProviderRateLimitedError, 1.5),
        # The more precise header wins, as in the SDK.
        (
            Fault.rate_limited(retry_after_s=7, retry_after_ms=1500),
            ProviderRateLimitedError,
            1.5,
        ),
        (Fault.overloaded(retry_after_ms=250), ProviderOverloadedError, 0.25),
        (Fault.server_error(503, retry_after_ms=40), ProviderError, 0.04),
        (Fault.rate_limited(), ProviderRateLimitedError, None),
        (
            Fault(429, "rate_limit_error", "slow down", {"retry-after": "soon"}),
            ProviderRateLimitedError,
            None,
        ),
        (
            Fault(
                429, "rate_limit_error", "slow down", {"retry-after-ms": "-1", "retry-after": "3"}
            ),
            ProviderRateLimitedError,
            3.0,
        ),
    ],
    ids=["seconds", "fraction", "ms", "ms-wins", "529-ms", "503-ms", "none", "junk", "bad-ms"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_retry_after_is_reported_on_errors(
    fake_server: FakeAnthropicServer,
    make_provider: ProviderFactory,
    fault: Fault,
    wrapped: type[ProviderError],
    retry_after_s: float | None,
    stream: bool,
) -> None:
    fake_server.script(fault)

    with pytest.raises(ProviderError) as caught:
        await make_provider(max_retries=0, stream=stream).complete(simple_request())

    assert type(caught.value) is wrapped
    assert caught.value.retry_after_s == retry_after_s
    assert fake_server.status_counts == {fault.status: 1}


async def test_retry_after_as_an_http_date(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    fake_server.script(
        Fault(429, "rate_limit_error", "later", {"retry-after": format_datetime(when, usegmt=True)})
    )

    with pytest.raises(ProviderRateLimitedError) as caught:
        await make_provider(max_retries=0).complete(simple_request())

    # The date has whole seconds: up to a second early, minus the time the call took.
    assert caught.value.retry_after_s is not None
    assert 25 <= caught.value.retry_after_s <= 30


async def test_the_fake_servers_limiter_reports_retry_after() -> None:
    limits = ServerLimits(requests=2, input_tokens=100_000, output_tokens=100_000)
    with FakeAnthropicServer(counted_reply, limits=limits, clock=FrozenClock()) as server:
        client = AsyncAnthropic(api_key=DUMMY_API_KEY, base_url=server.base_url, max_retries=0)
        provider = AnthropicProvider(client)
        try:
            for _ in range(2):
                await provider.complete(simple_request())
            with pytest.raises(ProviderRateLimitedError) as caught:
                await provider.complete(simple_request())
        finally:
            await client.close()

    assert caught.value.retry_after_s == 30.0  # a request back every 60 / 2 s
    assert caught.value.status == 429
    assert server.rate_limited == 1


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
async def test_no_secret_in_a_rate_limit_error(
    fake_server: FakeAnthropicServer, make_provider: ProviderFactory, stream: bool
) -> None:
    echo = Fault(
        429,
        "rate_limit_error",
        f"too many requests for key {DUMMY_API_KEY}",
        {"retry-after": "4", "anthropic-ratelimit-requests-remaining": "0"},
    )
    fake_server.script(echo)

    with pytest.raises(ProviderRateLimitedError) as caught:
        await make_provider(max_retries=0, stream=stream).complete(simple_request())

    error = caught.value
    assert DUMMY_API_KEY in str(error.__cause__)
    for text in (str(error), repr(error), error.message, json.dumps(error.details)):
        assert DUMMY_API_KEY not in text
    assert "[redacted]" in error.message
    assert error.retry_after_s == 4.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "12"}, 12.0),
        ({"RETRY-AFTER-MS": "120"}, 0.12),
        ({"retry-after": " 3 "}, 3.0),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "inf"}, None),
        ({"retry-after": "-4"}, None),
        ({"retry-after": "Thu, 01 Jan 2032 00:00:30 GMT"}, 30.0),
        ({"retry-after": "Thu, 01 Jan 2032 00:00:30 -0000"}, 30.0),
        ({"retry-after": "Wed, 31 Dec 2031 23:59:00 GMT"}, 0.0),  # already past
        ({"retry-after": "Thu, 99 Foo 2032"}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    now = datetime(2032, 1, 1, tzinfo=UTC).timestamp()

    assert retry_after_s(headers, now=now) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2031-05-06T07:08:09Z", datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)),
        ("2031-05-06T07:08:09.5-01:00", datetime(2031, 5, 6, 8, 8, 9, 500_000, tzinfo=UTC)),
        ("2031-05-06T07:08:09", None),  # no offset: not RFC 3339
        ("", None),
        ("yesterday", None),
    ],
)
def test_rate_limit_reset_parsing(value: str, expected: datetime | None) -> None:
    headers = {
        "Anthropic-RateLimit-Requests-Limit": "10",
        "anthropic-ratelimit-requests-reset": value,
    }

    info = rate_limits(headers)

    assert info is not None
    assert info.requests == RateLimitWindow(limit=10, reset_at=expected)
    if expected is not None:
        assert info.requests.reset_at is not None
        assert info.requests.reset_at.tzinfo is not None
