"""API keys: created for a tenant, stored hashed, checked on every request, revocable.

A key reads ``sy_<key_id>_<secret>``. The key_id finds the record; the SHA-256 of the whole
key is compared in constant time with the stored hash. A key carries 256 random bits, so a
fast hash is enough (slow hashes exist for guessable passwords); the plaintext is shown once,
at creation, and stored nowhere.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from shared.errors import AuthError, ValidationFailedError
from shared.tenancy.base import ApiKeyRecord, ControlStore

_KEY = re.compile(r"^sy_([a-z0-9]{16})_([A-Za-z0-9_-]{43})$")
_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(store: ControlStore, tenant: str, name: str = "") -> tuple[str, ApiKeyRecord]:
    """Return (the plaintext key, to hand to the user once; its stored record)."""
    if not _TENANT.match(tenant):
        raise ValidationFailedError(
            f"tenant {tenant!r} must be lowercase letters, digits and -, at most 63 characters"
        )
    key_id = secrets.token_hex(8)
    key = f"sy_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKeyRecord(
        key_id=key_id,
        tenant=tenant,
        name=name,
        key_hash=hash_key(key),
        created_at=datetime.now(UTC),
    )
    await store.put_key(record)
    return key, record


async def revoke_key(store: ControlStore, key_id: str) -> ApiKeyRecord:
    return await store.revoke_key(key_id, datetime.now(UTC))


async def authenticate(store: ControlStore, authorization: str | None) -> ApiKeyRecord:
    """The key record behind an ``Authorization: Bearer <key>`` header, or ``AuthError``.

    The error never repeats the presented key.
    """
    if not authorization:
        raise AuthError("missing Authorization header (expected: Bearer <api key>)")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthError("Authorization must be: Bearer <api key>")
    match = _KEY.match(key.strip())
    if match is None:
        raise AuthError("malformed API key")
    record = await store.get_key(match.group(1))
    if record is None or not hmac.compare_digest(record.key_hash, hash_key(key.strip())):
        raise AuthError("unknown API key")
    if record.revoked_at is not None:
        raise AuthError("API key revoked")
    return record
