"""Cost from a maintained price table: USD per million tokens, by model family.

Cache writes (5-minute TTL) cost 1.25x the input price and cache reads 0.1x, as the
Anthropic price list states. Unknown models fall back to the ``default`` row rather than
costing nothing, so budgets still bind on a model the table does not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from shared.config import PriceSetting
from shared.models.run import Usage


class ModelPrice(BaseModel):
    model_config = ConfigDict(frozen=True)

    input: float
    output: float
    cache_write: float
    cache_read: float

    @classmethod
    def from_input_output(cls, input_per_mtok: float, output_per_mtok: float) -> ModelPrice:
        return cls(
            input=input_per_mtok,
            output=output_per_mtok,
            cache_write=round(input_per_mtok * 1.25, 6),
            cache_read=round(input_per_mtok * 0.1, 6),
        )


# Longest matching prefix wins. List prices, USD per million tokens.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-5": ModelPrice.from_input_output(5.0, 25.0),
    "claude-opus-4-1": ModelPrice.from_input_output(15.0, 75.0),
    "claude-opus-4": ModelPrice.from_input_output(15.0, 75.0),
    "claude-sonnet-4": ModelPrice.from_input_output(3.0, 15.0),
    "claude-3-7-sonnet": ModelPrice.from_input_output(3.0, 15.0),
    "claude-haiku-4-5": ModelPrice.from_input_output(1.0, 5.0),
    "claude-3-5-haiku": ModelPrice.from_input_output(0.8, 4.0),
    "default": ModelPrice.from_input_output(3.0, 15.0),
}


class PriceTable:
    @classmethod
    def from_settings(cls, overrides: Mapping[str, PriceSetting]) -> PriceTable:
        """The maintained table with the deployment's overrides (``SWITCHYARD_PRICES``); an
        override without cache prices gets them from its input price, as the list does."""
        prices = dict(DEFAULT_PRICES)
        for prefix, p in overrides.items():
            base = ModelPrice.from_input_output(p.input, p.output)
            prices[prefix] = base.model_copy(
                update={
                    "cache_write": base.cache_write if p.cache_write is None else p.cache_write,
                    "cache_read": base.cache_read if p.cache_read is None else p.cache_read,
                }
            )
        return cls(prices)

    def __init__(self, prices: dict[str, ModelPrice] | None = None) -> None:
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._prefixes = sorted((k for k in self._prices if k != "default"), key=len, reverse=True)

    def price(self, model: str) -> ModelPrice:
        for prefix in self._prefixes:
            if model.startswith(prefix):
                return self._prices[prefix]
        return self._prices.get("default", DEFAULT_PRICES["default"])

    def cost(self, model: str, usage: Usage) -> float:
        p = self.price(model)
        total = (
            usage.input_tokens * p.input
            + usage.output_tokens * p.output
            + usage.cache_creation_input_tokens * p.cache_write
            + usage.cache_read_input_tokens * p.cache_read
        ) / 1_000_000
        return round(total, 10)


def price_usage(model: str, usage: Usage, table: PriceTable | None = None) -> Usage:
    """Return ``usage`` with ``cost_usd`` filled in from the table."""
    return usage.model_copy(update={"cost_usd": (table or PriceTable()).cost(model, usage)})
