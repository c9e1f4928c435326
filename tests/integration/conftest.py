"""Integration fixtures: the real Anthropic SDK talking HTTP to the fake Messages API server.

The client always gets a dummy key passed explicitly, so no test depends on (or could spend)
a real key, whatever the developer's environment holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from anthropic import AsyncAnthropic

from shared.providers.anthropic import AnthropicProvider
from tests.support.fake_anthropic import FakeAnthropicServer

DUMMY_API_KEY = "sk-ant-test-dummy-0123456789abcdef"

ProviderFactory = Callable[..., AnthropicProvider]


@pytest.fixture
def fake_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as server:
        yield server


def _client(server: FakeAnthropicServer, *, max_retries: int, timeout_s: float) -> AsyncAnthropic:
    return AsyncAnthropic(
        api_key=DUMMY_API_KEY,
        base_url=server.base_url,
        max_retries=max_retries,
        timeout=timeout_s,
    )


@pytest.fixture
async def anthropic_client(fake_server: FakeAnthropicServer) -> AsyncIterator[AsyncAnthropic]:
    client = _client(fake_server, max_retries=2, timeout_s=10.0)
    yield client
    await client.close()


@pytest.fixture
def provider(anthropic_client: AsyncAnthropic) -> AnthropicProvider:
    return AnthropicProvider(anthropic_client)


@pytest.fixture
async def make_provider(fake_server: FakeAnthropicServer) -> AsyncIterator[ProviderFactory]:
    """Providers with their own retry, timeout and streaming settings, closed at teardown."""
    clients: list[AsyncAnthropic] = []

    def make(
        *, stream: bool = False, max_retries: int = 2, timeout_s: float = 10.0
    ) -> AnthropicProvider:
        client = _client(fake_server, max_retries=max_retries, timeout_s=timeout_s)
        clients.append(client)
        return AnthropicProvider(client, stream=stream)

    yield make
    for client in clients:
        await client.close()
