"""Build the configured provider. The Anthropic SDK is imported only if it is chosen."""

from __future__ import annotations

from shared.config import Settings
from shared.providers.base import Provider
from shared.providers.offline import OfflineProvider


def build_provider(settings: Settings, *, offline_latency_s: float = 0.0) -> Provider:
    if settings.provider == "anthropic":
        from shared.providers.anthropic import AnthropicProvider

        # The gateway decides retries (and waits out 429s for every process): the SDK's
        # own would retry behind its back and hide the 429s from the shared buckets.
        return AnthropicProvider(max_retries=0)
    return OfflineProvider(latency_s=offline_latency_s)
