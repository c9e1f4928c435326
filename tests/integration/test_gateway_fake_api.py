"""The gateway with the real SDK over HTTP: failover on 529, 429s waited out, limits learned.

Runs execute on the in-memory journal with the runtime; the model is the fake Messages API
server, reached through ``AnthropicProvider`` with the SDK's own retries off (as the gateway
builds it), so every retry, wait and failover seen here is the gateway's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from shared.agents import Agent, AgentRegistry
from shared.errors import ProviderOverloadedError
from shared.gateway import GatewayOptions, LimitTable, ModelGateway
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import RunStatus
from shared.providers.anthropic import AnthropicProvider
from shared.ratelimit.memory import MemoryRateLimitStore
from shared.runtime import AgentRuntime
from tests.integration.conftest import DUMMY_API_KEY
from tests.support.fake_anthropic import (
    FakeAnthropicServer,
    Fault,
    Reply,
    ScriptItem,
    ServerLimits,
)

PRIMARY = "primary-model"
FALLBACK = "fallback-model"

agent = Agent(
    name="answerer",
    model=PRIMARY,
    fallback_models=(FALLBACK,),
    system="Answer in one line.",
)


def by_model(body: dict[str, Any]) -> ScriptItem:
    """The primary model is overloaded; the fallback answers."""
    if body["model"] == PRIMARY:
        return Fault.overloaded()
    return Reply.text(f"answered by {body['model']}")


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[AsyncAnthropic] = []

    def make(server: FakeAnthropicServer) -> AnthropicProvider:
        client = AsyncAnthropic(api_key=DUMMY_API_KEY, base_url=server.base_url, max_retries=0)
        clients.append(client)
        return AnthropicProvider(client)

    yield make
    for client in clients:
        await client.close()


async def _run(gateway: ModelGateway, provider: AnthropicProvider) -> tuple[Any, MemoryJournal]:
    journal = MemoryJournal()
    registry = AgentRegistry([agent])
    runtime = AgentRuntime(journal, provider, registry, gateway=gateway)
    run = await submit_run(journal, registry, SubmitRun(agent="answerer", input="hi"))
    return await runtime.execute(run.run_id), journal


async def test_the_primary_model_answering_529_fails_over_to_the_next(client_for: Any) -> None:
    with FakeAnthropicServer(by_model) as server:
        provider = client_for(server)
        gateway = ModelGateway(provider, options=GatewayOptions(attempts_per_model=3))
        run, journal = await _run(gateway, provider)
        models = [body["model"] for body in server.message_bodies()]
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == f"answered by {FALLBACK}"
    assert models == [PRIMARY, FALLBACK]  # an overload fails over at once, no retry
    [record] = [r for r in await journal.records(run.run_id) if r.kind is RecordKind.MODEL]
    assert record.model == FALLBACK  # the step records the model that served it
    [step] = [e for e in await journal.events(run.run_id) if e.type is EventType.STEP_COMPLETED]
    assert step.data["model"] == FALLBACK
    assert step.data["fallbacks"] == [{"model": PRIMARY, "reason": "overloaded"}]


async def test_every_model_overloaded_leaves_the_run_for_redelivery(client_for: Any) -> None:
    with FakeAnthropicServer(lambda body: Fault.overloaded()) as server:
        provider = client_for(server)
        gateway = ModelGateway(provider)
        with pytest.raises(ProviderOverloadedError):
            await _run(gateway, provider)
        assert [b["model"] for b in server.message_bodies()] == [PRIMARY, FALLBACK]


async def test_server_errors_are_retried_on_the_same_model_before_failing_over(
    client_for: Any,
) -> None:
    with FakeAnthropicServer(lambda body: Reply.text("ok")) as server:
        server.script(Fault.server_error(500), Fault.server_error(503))
        provider = client_for(server)
        gateway = ModelGateway(
            provider, options=GatewayOptions(attempts_per_model=3, backoff_s=(0.01, 0.02))
        )
        run, _ = await _run(gateway, provider)
        models = [body["model"] for body in server.message_bodies()]
    assert run.status is RunStatus.SUCCEEDED
    assert models == [PRIMARY, PRIMARY, PRIMARY]


async def test_a_429_is_waited_out_with_its_retry_after(client_for: Any) -> None:
    with FakeAnthropicServer(lambda body: Reply.text("ok")) as server:
        server.script(Fault.rate_limited(retry_after_ms=50))
        provider = client_for(server)
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        gateway = ModelGateway(provider, sleep=sleep, jitter=lambda s: s)
        run, journal = await _run(gateway, provider)
        statuses = [r.status for r in server.requests]
    assert run.status is RunStatus.SUCCEEDED
    assert statuses == [429, 200]
    assert slept == [0.05]
    [step] = [e for e in await journal.events(run.run_id) if e.type is EventType.STEP_COMPLETED]
    assert step.data["model"] == PRIMARY  # a rate limit is waited out, never failed over
    assert step.data["rate_limited"] == 1


async def test_limits_are_learned_from_the_api_headers(client_for: Any) -> None:
    # Nothing configured: the server's headers state 3 requests per window, the gateway
    # learns them from the first answer and keeps every later call inside them.
    limits = ServerLimits(requests=3, input_tokens=100_000, output_tokens=100_000, period_s=60)
    with FakeAnthropicServer(lambda body: Reply.text("ok"), limits=limits) as server:
        provider = client_for(server)
        store = MemoryRateLimitStore()
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            raise _Stop()

        gateway = ModelGateway(
            provider,
            store=store,
            limits=LimitTable({}, 60.0),
            key_id=provider.key_id,
            sleep=sleep,
            jitter=lambda s: s,
        )
        for _ in range(3):
            run, _ = await _run(gateway, provider)
            assert run.status is RunStatus.SUCCEEDED
        # The fourth would exceed the server's limit: the gateway waits instead of sending.
        with pytest.raises(_Stop):
            await _run(gateway, provider)
        assert server.rate_limited == 0
        assert len(server.message_bodies()) == 3
    assert slept[0] == pytest.approx(20.0, abs=0.5)  # a third of the 60 s window


class _Stop(Exception):
    """Ends a test's wait instead of sleeping it."""
