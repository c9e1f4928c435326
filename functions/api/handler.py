"""Lambda entry point of the HTTP API (API Gateway HTTP API, payload format 2.0).

Thin on purpose: everything is in ``functions.api.app``. Importing this module builds the
routes but no AWS client and no model provider; those come at the first request that needs
them (and the async submit path never needs a provider, so ``anthropic`` is never imported).
"""

from __future__ import annotations

from typing import Any

from functions.api.app import handle


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context)
