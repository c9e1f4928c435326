"""The provider gateway: shared rate limits, retries and failover for every model call."""

from shared.gateway.gateway import (
    Fallback,
    GatewayCall,
    GatewayObserver,
    GatewayOptions,
    ModelGateway,
    NullGatewayObserver,
    ThrottledTooLong,
)
from shared.gateway.limits import LimitTable

__all__ = [
    "Fallback",
    "GatewayCall",
    "GatewayObserver",
    "GatewayOptions",
    "LimitTable",
    "ModelGateway",
    "NullGatewayObserver",
    "ThrottledTooLong",
]
