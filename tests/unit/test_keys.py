"""API keys: stored hashed, bound to a tenant, revocable; errors never echo the key."""

from __future__ import annotations

import pytest

from shared.errors import AuthError, ValidationFailedError
from shared.logic.keys import authenticate, create_key, hash_key, revoke_key
from shared.tenancy import MemoryControlStore


async def test_a_created_key_authenticates_as_its_tenant_and_is_stored_hashed() -> None:
    store = MemoryControlStore()
    key, record = await create_key(store, "acme", "ci")
    assert key.startswith(f"sy_{record.key_id}_")
    stored = await store.get_key(record.key_id)
    assert stored is not None
    assert stored.key_hash == hash_key(key)
    assert key not in stored.model_dump_json()
    who = await authenticate(store, f"Bearer {key}")
    assert (who.tenant, who.key_id) == ("acme", record.key_id)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization"),
        ("", "missing Authorization"),
        ("Basic abc", "Bearer <api key>"),
        ("Bearer ", "Bearer <api key>"),
        ("Bearer not-a-key", "malformed API key"),
        ("Bearer sy_0123456789abcdef_" + "A" * 43, "unknown API key"),
    ],
)
async def test_bad_credentials_are_refused_without_echoing_them(
    header: str | None, reason: str
) -> None:
    store = MemoryControlStore()
    with pytest.raises(AuthError) as err:
        await authenticate(store, header)
    assert reason in err.value.message
    if header and len(header) > 10:
        assert header.split(" ", 1)[1] not in str(err.value)


async def test_a_key_with_a_valid_id_but_wrong_secret_is_unknown() -> None:
    store = MemoryControlStore()
    key, record = await create_key(store, "acme")
    forged = f"sy_{record.key_id}_" + "B" * 43
    assert forged != key
    with pytest.raises(AuthError, match="unknown API key"):
        await authenticate(store, f"Bearer {forged}")


async def test_revoked_keys_stop_working_and_revoking_twice_is_fine() -> None:
    store = MemoryControlStore()
    key, record = await create_key(store, "acme")
    first = await revoke_key(store, record.key_id)
    second = await revoke_key(store, record.key_id)
    assert first.revoked_at == second.revoked_at is not None
    with pytest.raises(AuthError, match="revoked"):
        await authenticate(store, f"Bearer {key}")


async def test_tenant_names_are_validated() -> None:
    with pytest.raises(ValidationFailedError):
        await create_key(MemoryControlStore(), "Not A Tenant")
