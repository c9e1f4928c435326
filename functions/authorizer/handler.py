"""Lambda authorizer of the HTTP API (payload format 2.0, simple responses).

``Authorization: Bearer <key>`` → ``{"isAuthorized": true, "context": {"tenant", "key_id"}}``;
API Gateway hands that context to the API function as ``requestContext.authorizer.lambda``.
A missing, malformed, unknown or revoked key is ``{"isAuthorized": false}`` (API Gateway then
answers 403 itself; a request without the header never reaches this function: 401). A store
failure raises, which API Gateway turns into a 500: an outage must not look like a bad key.

The key is never logged: only the reason of a refusal and, once known, the key id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions import PerContainer, run_sync
from shared.errors import AuthError
from shared.logic.keys import authenticate
from shared.observability import get_logger
from shared.tenancy.base import ControlStore

logger = get_logger("authorizer")


def _build_store() -> ControlStore:
    from shared.config import Settings
    from shared.wiring import build_control_store

    return build_control_store(Settings.from_env())


_store: PerContainer[ControlStore] = PerContainer(_build_store)


def set_store(store: ControlStore | None) -> None:
    """Check keys against ``store`` from now on (``None``: build from the environment)."""
    _store.set(store)


def get_store() -> ControlStore:
    return _store.get()


def authorization_header(event: Mapping[str, Any]) -> str | None:
    """The Authorization header (API Gateway lowercases v2 header names; be lenient)."""
    for name, value in (event.get("headers") or {}).items():
        if name.lower() == "authorization" and isinstance(value, str):
            return value
    sources = event.get("identitySource") or []
    return str(sources[0]) if sources else None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request_id = (event.get("requestContext") or {}).get("requestId")
    try:
        record = run_sync(authenticate(get_store(), authorization_header(event)))
    except AuthError as exc:
        logger.info("denied", extra={"reason": exc.message, "request_id": request_id})
        return {"isAuthorized": False}
    logger.debug(
        "allowed",
        extra={"tenant": record.tenant, "key_id": record.key_id, "request_id": request_id},
    )
    return {"isAuthorized": True, "context": {"tenant": record.tenant, "key_id": record.key_id}}
