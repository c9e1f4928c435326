"""Build the configured provider. The Anthropic SDK is imported only if it is chosen."""

from __future__ import annotations

from shared.config import Settings
from shared.providers.base import Provider
from shared.providers.offline import OfflineProvider


def build_provider(settings: Settings, *, offline_latency_s: float = 0.0) -> Provider:
    if settings.provider == "anthropic":
        from shared.providers.anthropic import AnthropicProvider

        return AnthropicProvider()
    return OfflineProvider(latency_s=offline_latency_s)
