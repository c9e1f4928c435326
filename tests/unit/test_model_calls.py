"""The model call: fallback along the model chain, provider failures, pricing per step."""

from __future__ import annotations

import time

import pytest

from shared.agents import Limits
from shared.config import RateLimitSetting
from shared.errors import ProviderError, ProviderOverloadedError, ProviderRateLimitedError
from shared.gateway import LimitTable, ModelGateway
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import RunStatus, Usage
from shared.providers.pricing import PriceTable
from shared.ratelimit.memory import MemoryRateLimitStore
from tests.support.runtime_kit import Harness, Toolbox, assert_journal_consistent
from tests.support.scripted_provider import ScriptedProvider, plan

USAGE = Usage(input_tokens=1_000_000, output_tokens=0)


async def test_overload_falls_back_along_the_model_chain(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent(fallback_models=("claude-haiku-4-5", "claude-opus-4-5"))])
    provider = ScriptedProvider(responder=plan("hi", usage=USAGE))
    provider.fail_at(1, ProviderOverloadedError("529 overloaded", status=529))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)

    assert run.status is RunStatus.SUCCEEDED
    assert [r.model for r in provider.requests] == ["test-model", "claude-haiku-4-5"]
    model_record = next(r for r in await h.records(run_id) if r.kind is RecordKind.MODEL)
    assert model_record.model == "claude-haiku-4-5"
    # Priced as the model that served it: $1 per million input tokens for haiku 4.5.
    assert run.cost_usd == pytest.approx(1.0)
    step = next(e for e in await h.events(run_id) if e.type is EventType.STEP_COMPLETED)
    assert step.data["model"] == "claude-haiku-4-5"


async def test_every_model_overloaded_fails_the_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent(fallback_models=("backup",))])
    provider = ScriptedProvider(responder=plan("hi"))
    provider.fail_at(1, ProviderOverloadedError("529", status=529))
    provider.fail_at(2, ProviderOverloadedError("529 again", status=529))
    run = await h.runtime(provider).execute(await h.submit())
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == "provider_overloaded"
    assert run.error.message == "529 again"
    assert provider.calls == 2


async def test_non_retryable_provider_error_fails_the_run(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "a"})], "x"))
    provider.fail_at(2, ProviderError("400 bad request", status=400))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error.code == "provider_error"
    assert run.steps == 1
    records = await h.records(run_id)
    assert_journal_consistent(records, run)
    # The step-1 tool result, not yet journaled, is kept in the final record.
    assert [r.tool_use_id for r in records[-1].tool_results] == ["toolu_01_0"]


async def test_retryable_provider_error_hands_the_run_back(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent()])
    provider = ScriptedProvider(responder=plan("hi"))
    provider.fail_at(1, ProviderError("503 unavailable", status=503, retryable=True))
    run_id = await h.submit()
    with pytest.raises(ProviderError):
        await h.runtime(provider).execute(run_id)
    run = await h.journal.get_run(run_id)
    assert run.status is RunStatus.QUEUED
    assert run.error is None
    # Nobody holds it: the next delivery resumes at once.
    assert (await h.runtime(provider).execute(run_id)).status is RunStatus.SUCCEEDED


async def test_request_shape(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", limits=Limits(max_tokens_per_call=321))])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "a"})], "x"))
    await h.runtime(provider).execute(await h.submit({"ticket": 7}))
    first, second = provider.requests
    assert first.max_tokens == 321
    assert first.messages == [{"role": "user", "content": '{"ticket":7}'}]
    assert [m["role"] for m in second.messages] == ["user", "assistant", "user"]


async def test_custom_price_table(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent()])
    provider = ScriptedProvider(responder=plan("hi", usage=Usage(input_tokens=10, output_tokens=5)))
    run_id = await h.submit()
    runtime = h.runtime(provider)
    runtime.prices = PriceTable({})  # no rows: the built-in default row applies
    run = await runtime.execute(run_id)
    assert run.cost_usd == pytest.approx((10 * 3 + 5 * 15) / 1e6)


async def test_the_step_event_shows_fallbacks_and_rate_limit_waits(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent(fallback_models=("claude-haiku-4-5",))])
    provider = ScriptedProvider(responder=plan("hi"))
    provider.fail_at(1, ProviderRateLimitedError("429", status=429, retry_after_s=3.0))
    provider.fail_at(2, ProviderOverloadedError("529", status=529, retryable=True))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    gateway = ModelGateway(provider, sleep=sleep, jitter=lambda s: s)
    run_id = await h.submit()
    run = await h.runtime(provider, gateway=gateway).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert slept == [3.0]
    step = next(e for e in await h.events(run_id) if e.type is EventType.STEP_COMPLETED)
    assert step.data["model"] == "claude-haiku-4-5"
    assert step.data["fallbacks"] == [{"model": "test-model", "reason": "overloaded"}]
    assert step.data["throttled_ms"] == 3000
    assert step.data["rate_limited"] == 1


async def test_a_sync_run_hands_over_rather_than_wait_for_rate_limits(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup")])
    provider = ScriptedProvider(responder=plan([("lookup", {"query": "a"})], "done"))
    store = MemoryRateLimitStore()
    one = {"default": RateLimitSetting(requests=1, input_tokens=10**6, output_tokens=10**6)}
    gateway = ModelGateway(provider, store=store, limits=LimitTable(one, 60.0))
    run_id = await h.submit()
    # A sync deadline 10 s out: the first call fits, the second would wait a minute.
    run = await h.runtime(provider, gateway=gateway).execute(run_id, deadline=time.monotonic() + 10)
    assert run.status is RunStatus.QUEUED
    assert run.steps == 1
    assert provider.calls == 1
    # The step-1 tool result was journaled before the hand-over: nothing runs twice.
    assert len(toolbox.calls("lookup")) == 1
    records = await h.records(run_id)
    assert any(r.tool_results for r in records)
