"""What a model call will take from the rate limits, before it is made.

Input tokens are estimated from the request's size: the tokenizer is the provider's, and
calling its counting endpoint would cost a request per call. At about 3.5-4 characters per
token for English and JSON, three characters a token overestimates, so a reservation
rarely falls short; the gateway reconciles it with the reported usage after the call.
Output is reserved at ``max_tokens``, as the Anthropic API itself counts it at admission.
"""

from __future__ import annotations

import json

from shared.models.messages import ModelRequest
from shared.models.run import Usage
from shared.ratelimit import Amounts

CHARS_PER_TOKEN = 3
# Role markers, tool-use framing and the like that the JSON does not show.
OVERHEAD_TOKENS = 16


def estimate_input_tokens(request: ModelRequest) -> int:
    chars = len(request.system) + len(json.dumps(request.messages))
    if request.tools:
        chars += len(json.dumps([t.model_dump() for t in request.tools]))
    return -(-chars // CHARS_PER_TOKEN) + OVERHEAD_TOKENS


def reservation(request: ModelRequest) -> Amounts:
    return Amounts(
        requests=1,
        input_tokens=estimate_input_tokens(request),
        output_tokens=request.max_tokens,
    )


def counted_input(usage: Usage) -> int:
    """Input tokens as the provider's input-token limit counts them: prompt-cache reads do
    not count against it, cache writes do."""
    return usage.input_tokens + usage.cache_creation_input_tokens


def reconciliation(reserved: Amounts, usage: Usage) -> Amounts:
    """What to give back (negative) or charge after a call that used ``usage``."""
    return Amounts(
        requests=0,
        input_tokens=counted_input(usage) - reserved.input_tokens,
        output_tokens=usage.output_tokens - reserved.output_tokens,
    )
