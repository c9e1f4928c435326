"""Model providers: the Anthropic SDK (real or against a fake server) and the offline model.

The Anthropic SDK is imported only inside ``shared.providers.anthropic`` and only when that
provider is built, so paths that never call a model never pay for ``import anthropic``.
"""

from shared.providers.base import Provider
from shared.providers.pricing import PriceTable, price_usage

__all__ = ["PriceTable", "Provider", "price_usage"]
