"""Cost from the price table: cache prices, longest-prefix match, the default row."""

from __future__ import annotations

import pytest

from shared.models.run import Usage
from shared.providers.pricing import DEFAULT_PRICES, ModelPrice, PriceTable, price_usage

MTOK = 1_000_000


def test_cache_write_and_read_prices_follow_the_input_price() -> None:
    price = ModelPrice.from_input_output(3.0, 15.0)
    assert price.cache_write == pytest.approx(3.75)
    assert price.cache_read == pytest.approx(0.30)


@pytest.mark.parametrize(
    ("field", "per_mtok"),
    [
        ("input_tokens", 3.0),
        ("output_tokens", 15.0),
        ("cache_creation_input_tokens", 3.75),
        ("cache_read_input_tokens", 0.30),
    ],
)
def test_each_token_kind_is_priced(field: str, per_mtok: float) -> None:
    usage = Usage.model_validate({field: MTOK})
    assert PriceTable().cost("claude-sonnet-4-5", usage) == pytest.approx(per_mtok)


def test_a_mixed_call() -> None:
    usage = Usage(
        input_tokens=2_000,
        output_tokens=500,
        cache_creation_input_tokens=10_000,
        cache_read_input_tokens=40_000,
    )
    expected = (2_000 * 1.0 + 500 * 5.0 + 10_000 * 1.25 + 40_000 * 0.1) / MTOK
    assert PriceTable().cost("claude-haiku-4-5-20251001", usage) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "input_price"),
    [
        ("claude-opus-4-5-20251101", 5.0),  # not the claude-opus-4 row: longest prefix wins
        ("claude-opus-4-1-20250805", 15.0),
        ("claude-opus-4-20250514", 15.0),
        ("claude-sonnet-4-5", 3.0),
        ("claude-haiku-4-5", 1.0),
        ("claude-3-5-haiku-latest", 0.8),
    ],
)
def test_longest_prefix_wins(model: str, input_price: float) -> None:
    assert PriceTable().price(model).input == input_price


def test_unknown_models_use_the_default_row_not_zero() -> None:
    table = PriceTable()
    assert table.price("some-future-model") == DEFAULT_PRICES["default"]
    assert table.cost("some-future-model", Usage(output_tokens=MTOK)) == pytest.approx(15.0)


def test_a_custom_table() -> None:
    cheap = ModelPrice.from_input_output(0.5, 1.0)
    table = PriceTable({"my-model": cheap, "default": ModelPrice.from_input_output(9.0, 9.0)})
    assert table.price("my-model-v2") == cheap
    assert table.price("claude-sonnet-4-5").input == 9.0
    # A table without a default row still never prices a call at zero.
    assert PriceTable({"x": cheap}).price("y") == DEFAULT_PRICES["default"]


def test_price_usage_fills_in_cost_only() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=100)
    priced = price_usage("claude-sonnet-4-5", usage)
    assert priced.cost_usd == pytest.approx((1_000 * 3 + 100 * 15) / MTOK)
    assert priced.model_copy(update={"cost_usd": 0.0}) == usage


def test_usage_adds_up() -> None:
    a = Usage(input_tokens=1, output_tokens=2, cache_read_input_tokens=3, cost_usd=0.1)
    b = Usage(input_tokens=10, cache_creation_input_tokens=4, cost_usd=0.2)
    total = a + b
    assert (total.input_tokens, total.output_tokens) == (11, 2)
    assert (total.cache_read_input_tokens, total.cache_creation_input_tokens) == (3, 4)
    assert total.cost_usd == 0.3  # rounded, no 0.30000000000000004
