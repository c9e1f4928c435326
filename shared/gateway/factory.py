"""Build the gateway an entry point's runtime calls models through, from Settings."""

from __future__ import annotations

from shared.config import Settings
from shared.gateway.gateway import GatewayObserver, GatewayOptions, ModelGateway
from shared.gateway.limits import LimitTable
from shared.providers.base import Provider
from shared.ratelimit import RateLimitStore


def build_gateway(
    settings: Settings,
    provider: Provider,
    store: RateLimitStore,
    observer: GatewayObserver | None = None,
) -> ModelGateway:
    """Buckets are named by the provider's key (``key_id``: a fingerprint, never the key),
    so deployments sharing a key share its limits and different keys never do."""
    return ModelGateway(
        provider,
        store=store,
        limits=LimitTable(settings.rate_limits, settings.rate_limit_period_s),
        key_id=getattr(provider, "key_id", settings.provider),
        options=GatewayOptions(
            attempts_per_model=settings.provider_attempts,
            prefetch_calls=settings.rate_limit_prefetch,
        ),
        observer=observer,
    )
