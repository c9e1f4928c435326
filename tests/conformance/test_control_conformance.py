"""The control store contract (``shared.tenancy.base.ControlStore``), checked against every
backend.

Each test in the parametrized part runs once per backend (``memory``, ``dynamodb`` on moto);
the last section checks what only the DynamoDB layout promises (keys, TTL, staying out of the
tenant index, requests per call).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import Settings
from shared.dal.dynamodb import Item, Key, RunTable
from shared.dal.metering import RequestMeter
from shared.dal.schema import (
    BY_TENANT,
    IDEMPOTENCY_SK,
    SK,
    TENANT_PK,
    THREAD_SK,
    TTL_ATTRIBUTE,
    idempotency_pk,
    tenant_pk,
    thread_pk,
)
from shared.errors import ConflictError, NotFoundError
from shared.tenancy.base import ApiKeyRecord, ControlStore, IdempotencyRecord, ThreadRecord
from shared.tenancy.dynamodb import DynamoControlStore
from tests.conformance.conftest import REGION, Aws

AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = AT + timedelta(minutes=5)


def key_record(key_id: str = "0123456789abcdef", **fields: object) -> ApiKeyRecord:
    values: dict[str, object] = {
        "key_id": key_id,
        "tenant": "acme",
        "name": "ci key",
        "key_hash": hashlib.sha256(f"sy_{key_id}_secret".encode()).hexdigest(),
        "created_at": AT,
    }
    values.update(fields)
    return ApiKeyRecord.model_validate(values)


def idem(key: str = "idem-1", **fields: object) -> IdempotencyRecord:
    values: dict[str, object] = {
        "tenant": "acme",
        "key": key,
        "body_hash": "hash-1",
        "run_id": "run_1",
        "created_at": AT,
    }
    values.update(fields)
    return IdempotencyRecord.model_validate(values)


async def add(
    control: ControlStore,
    run_id: str,
    *,
    only_if_idle: bool = False,
    tenant: str = "acme",
    thread_id: str = "thread-1",
    at: datetime = AT,
) -> ThreadRecord:
    return await control.add_thread_run(tenant, thread_id, run_id, only_if_idle=only_if_idle, at=at)


async def finish(
    control: ControlStore,
    run_id: str,
    *,
    tenant: str = "acme",
    thread_id: str = "thread-1",
    at: datetime = LATER,
) -> ThreadRecord:
    return await control.finish_thread_run(tenant, thread_id, run_id, at)


# ---- API keys ------------------------------------------------------------------------------


async def test_put_then_get_a_key(control: ControlStore) -> None:
    record = key_record()
    await control.put_key(record)
    assert await control.get_key(record.key_id) == record
    assert await control.get_key("ffffffffffffffff") is None


async def test_put_a_duplicate_key_id_conflicts_and_keeps_the_original(
    control: ControlStore,
) -> None:
    original = key_record()
    await control.put_key(original)
    with pytest.raises(ConflictError):
        await control.put_key(key_record(tenant="intruder", key_hash="0" * 64, name="other"))
    assert await control.get_key(original.key_id) == original


async def test_revoke_is_idempotent_and_keeps_the_first_time(control: ControlStore) -> None:
    record = key_record()
    other = key_record("fedcba9876543210")
    await control.put_key(record)
    await control.put_key(other)
    revoked = await control.revoke_key(record.key_id, LATER)
    assert revoked == record.model_copy(update={"revoked_at": LATER})
    assert await control.get_key(record.key_id) == revoked
    again = await control.revoke_key(record.key_id, LATER + timedelta(hours=1))
    assert again == revoked
    assert await control.get_key(record.key_id) == revoked
    assert await control.get_key(other.key_id) == other  # untouched


async def test_revoke_an_unknown_key_raises(control: ControlStore) -> None:
    with pytest.raises(NotFoundError):
        await control.revoke_key("0000000000000000", LATER)
    assert await control.get_key("0000000000000000") is None


# ---- idempotency ---------------------------------------------------------------------------


async def test_claim_returns_none_first_then_the_first_record(control: ControlStore) -> None:
    first = idem()
    assert await control.claim_idempotency(first) is None
    retry = idem(body_hash="hash-2", run_id="run_2", created_at=LATER)
    assert await control.claim_idempotency(retry) == first
    assert await control.claim_idempotency(first) == first


async def test_claims_are_per_tenant_and_per_key(control: ControlStore) -> None:
    first = idem()
    assert await control.claim_idempotency(first) is None
    other_tenant = idem(tenant="globex", run_id="run_g")
    other_key = idem("idem-2", run_id="run_k")
    assert await control.claim_idempotency(other_tenant) is None
    assert await control.claim_idempotency(other_key) is None
    assert await control.claim_idempotency(idem(run_id="x")) == first
    assert await control.claim_idempotency(idem(tenant="globex", run_id="x")) == other_tenant
    assert await control.claim_idempotency(idem("idem-2", run_id="x")) == other_key


async def test_racing_claims_of_one_key_exactly_one_wins(control: ControlStore) -> None:
    rivals = [idem("race", run_id=f"run_{i}") for i in range(8)]
    outcomes = await asyncio.gather(*(control.claim_idempotency(r) for r in rivals))
    winners = [r for r, o in zip(rivals, outcomes, strict=True) if o is None]
    assert len(winners) == 1, outcomes
    assert all(o == winners[0] for o in outcomes if o is not None)


# ---- threads -------------------------------------------------------------------------------


async def test_unknown_thread_is_none(control: ControlStore) -> None:
    assert await control.get_thread("acme", "nope") is None


async def test_first_add_creates_the_thread(control: ControlStore) -> None:
    thread = await add(control, "run_1", only_if_idle=True)
    expected = ThreadRecord(
        thread_id="thread-1",
        tenant="acme",
        runs=["run_1"],
        finished=0,
        created_at=AT,
        updated_at=AT,
    )
    assert thread == expected
    assert (thread.active, thread.busy) == ("run_1", True)
    assert await control.get_thread("acme", "thread-1") == expected


async def test_adds_keep_submission_order_and_enqueue_while_busy(control: ControlStore) -> None:
    await add(control, "run_1")
    await add(control, "run_2", at=LATER)
    thread = await add(control, "run_3", at=LATER + timedelta(seconds=1))
    assert thread.runs == ["run_1", "run_2", "run_3"]
    assert (thread.finished, thread.active) == (0, "run_1")
    assert (thread.created_at, thread.updated_at) == (AT, LATER + timedelta(seconds=1))
    assert await control.get_thread("acme", "thread-1") == thread


async def test_only_if_idle_conflicts_with_the_active_run(control: ControlStore) -> None:
    await add(control, "run_1")
    before = await add(control, "run_2")
    with pytest.raises(ConflictError) as err:
        await add(control, "run_3", only_if_idle=True, at=LATER)
    assert err.value.details == {"active_run_id": "run_1"}
    assert await control.get_thread("acme", "thread-1") == before  # nothing appended
    await finish(control, "run_1")
    with pytest.raises(ConflictError) as err:
        await add(control, "run_3", only_if_idle=True, at=LATER)
    assert err.value.details == {"active_run_id": "run_2"}


async def test_finish_advances_only_for_the_active_run(control: ControlStore) -> None:
    for run_id in ("run_1", "run_2", "run_3"):
        await add(control, run_id)
    not_yet = await finish(control, "run_2")  # not its turn: a no-op
    assert (not_yet.finished, not_yet.active, not_yet.updated_at) == (0, "run_1", AT)
    assert (await finish(control, "run_unknown")).finished == 0

    done_1 = await finish(control, "run_1")
    assert (done_1.finished, done_1.active, done_1.updated_at) == (1, "run_2", LATER)
    again = await finish(control, "run_1", at=LATER + timedelta(hours=1))  # idempotent
    assert again == done_1
    assert await control.get_thread("acme", "thread-1") == done_1

    await finish(control, "run_2")
    idle = await finish(control, "run_3")
    assert (idle.finished, idle.active, idle.busy) == (3, None, False)
    assert idle.runs == ["run_1", "run_2", "run_3"]
    assert await finish(control, "run_3") == idle

    # Idle again: a run that must not wait is accepted.
    resumed = await add(control, "run_4", only_if_idle=True, at=LATER)
    assert (resumed.runs[-1], resumed.finished, resumed.active) == ("run_4", 3, "run_4")


@pytest.mark.parametrize("only_if_idle", [True, False])
async def test_re_adding_a_run_is_a_no_op(control: ControlStore, only_if_idle: bool) -> None:
    await add(control, "run_1", only_if_idle=True)
    await add(control, "run_2", only_if_idle=False)
    # A retried submit re-adds its own run: neither duplicated nor refused as "busy".
    again = await add(control, "run_2", only_if_idle=only_if_idle)
    assert again.runs == ["run_1", "run_2"]
    stored = await control.get_thread("acme", "thread-1")
    assert stored is not None
    assert stored.runs == ["run_1", "run_2"]


async def test_finish_on_an_unknown_thread_raises(control: ControlStore) -> None:
    with pytest.raises(NotFoundError):
        await finish(control, "run_1", thread_id="missing")


async def test_thread_ids_are_per_tenant(control: ControlStore) -> None:
    acme = await add(control, "run_a", tenant="acme", thread_id="shared")
    globex = await add(control, "run_g", tenant="globex", thread_id="shared", only_if_idle=True)
    assert (acme.runs, globex.runs) == (["run_a"], ["run_g"])
    assert (globex.tenant, globex.thread_id) == ("globex", "shared")
    await finish(control, "run_g", tenant="globex", thread_id="shared")
    assert (await control.get_thread("acme", "shared")) == acme  # untouched
    with pytest.raises(NotFoundError):
        await finish(control, "run_a", tenant="initech", thread_id="shared")
    # Ids that would run together in a naive composite key stay apart.
    one = await add(control, "run_x", tenant="a#b", thread_id="c")
    two = await add(control, "run_y", tenant="a", thread_id="b#c", only_if_idle=True)
    assert (one.runs, two.runs) == (["run_x"], ["run_y"])
    assert (await control.get_thread("a#b", "c")) == one
    assert (await control.get_thread("a", "b#c")) == two


async def test_racing_only_if_idle_adds_exactly_one_wins(control: ControlStore) -> None:
    for round_ in range(2):  # on a new thread, then on one that went idle
        rivals = [f"run_{round_}_{i}" for i in range(8)]
        outcomes = await asyncio.gather(
            *(add(control, r, only_if_idle=True) for r in rivals), return_exceptions=True
        )
        winners = [r for r, o in zip(rivals, outcomes, strict=True) if isinstance(o, ThreadRecord)]
        losers = [o for o in outcomes if not isinstance(o, ThreadRecord)]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, ConflictError) for o in losers), losers
        assert all(
            isinstance(o, ConflictError) and o.details == {"active_run_id": winners[0]}
            for o in losers
        )
        thread = await control.get_thread("acme", "thread-1")
        assert thread is not None
        assert (thread.runs[-1], thread.active) == (winners[0], winners[0])
        assert thread.runs.count(winners[0]) == 1
        assert len(thread.runs) == round_ + 1
        await finish(control, winners[0])


async def test_racing_enqueues_are_all_kept(control: ControlStore) -> None:
    rivals = [f"run_{i}" for i in range(10)]
    await asyncio.gather(*(add(control, r) for r in rivals))
    thread = await control.get_thread("acme", "thread-1")
    assert thread is not None
    assert sorted(thread.runs) == sorted(rivals)
    assert thread.finished == 0


async def test_racing_finishes_of_the_active_run_advance_once(control: ControlStore) -> None:
    for run_id in ("run_1", "run_2", "run_3"):
        await add(control, run_id)
    outcomes = await asyncio.gather(*(finish(control, "run_1") for _ in range(8)))
    assert all(o.finished == 1 for o in outcomes), outcomes
    thread = await control.get_thread("acme", "thread-1")
    assert thread is not None
    assert (thread.finished, thread.active) == (1, "run_2")


# ---- DynamoDB layout -----------------------------------------------------------------------


@pytest.fixture
def dynamo(aws: Aws) -> Iterator[DynamoControlStore]:
    store = DynamoControlStore(aws.table, retention_days=7, max_workers=4)
    yield store
    store.close()


def _item(aws: Aws, pk: str, sk: str) -> Item:
    item = aws.table.get({"pk": pk, SK: sk})
    assert item is not None
    return item


async def test_dynamodb_idempotency_item_hashes_the_key_and_lives_a_day(
    aws: Aws, dynamo: DynamoControlStore
) -> None:
    client_key = "client key with spaces/and#hashes " * 80  # longer than a key may be
    first = idem(client_key)
    assert await dynamo.claim_idempotency(first) is None
    pk = idempotency_pk("acme", client_key)
    assert pk == f"IDEM#acme#{hashlib.sha256(client_key.encode()).hexdigest()}"
    item = _item(aws, pk, IDEMPOTENCY_SK)
    assert item["key"] == client_key
    assert item[TTL_ATTRIBUTE] == int(AT.timestamp()) + 86_400  # a day

    # Still a day old minus a second: the record holds.
    almost = idem(client_key, run_id="run_2", created_at=AT + timedelta(seconds=86_399))
    assert await dynamo.claim_idempotency(almost) == first
    # Past its TTL (which moto, like DynamoDB for a while, has not acted on): replaced.
    expired = idem(client_key, run_id="run_3", created_at=AT + timedelta(days=1))
    assert await dynamo.claim_idempotency(expired) is None
    assert await dynamo.claim_idempotency(idem(client_key, run_id="run_4")) == expired


async def test_dynamodb_thread_writes_move_the_ttl(aws: Aws, dynamo: DynamoControlStore) -> None:
    week = 7 * 86_400
    await add(dynamo, "run_1")
    item = _item(aws, thread_pk("acme", "thread-1"), THREAD_SK)
    assert item[TTL_ATTRIBUTE] == int(AT.timestamp()) + week
    await add(dynamo, "run_2", at=LATER)
    assert _item(aws, thread_pk("acme", "thread-1"), THREAD_SK)[TTL_ATTRIBUTE] == (
        int(LATER.timestamp()) + week
    )
    done = LATER + timedelta(hours=3)
    await finish(dynamo, "run_1", at=done)
    item = _item(aws, thread_pk("acme", "thread-1"), THREAD_SK)
    assert item[TTL_ATTRIBUTE] == int(done.timestamp()) + week
    assert (item["runs"], item["finished"]) == (["run_1", "run_2"], 1)


async def test_dynamodb_control_items_stay_out_of_the_tenant_index(
    aws: Aws, dynamo: DynamoControlStore
) -> None:
    await dynamo.put_key(key_record())
    await dynamo.revoke_key(key_record().key_id, LATER)
    await dynamo.claim_idempotency(idem())
    await add(dynamo, "run_1")
    await finish(dynamo, "run_1")
    scanned = aws.dynamodb.scan(TableName=aws.table_name)["Items"]
    assert len(scanned) == 3
    assert all(TENANT_PK not in i for i in scanned)
    assert aws.table.query(TENANT_PK, tenant_pk("acme"), index=BY_TENANT) == []


async def test_dynamodb_requests_per_call(aws: Aws, dynamo: DynamoControlStore) -> None:
    meter = RequestMeter()
    meter.attach(aws.table.client)

    async def counted(action: Awaitable[object]) -> dict[str, int]:
        meter.reset()  # the coroutine has not started yet: nothing of it is counted before
        await action
        return requests()

    def requests() -> dict[str, int]:
        return {op: counts["requests"] for op, counts in meter.snapshot().items()}

    assert await counted(dynamo.put_key(key_record())) == {"dynamodb.PutItem": 1}
    assert await counted(dynamo.revoke_key(key_record().key_id, LATER)) == {
        "dynamodb.UpdateItem": 1
    }
    assert await counted(dynamo.claim_idempotency(idem())) == {"dynamodb.PutItem": 1}
    # A repeated claim gets the stored record back with the failed condition.
    assert await counted(dynamo.claim_idempotency(idem(run_id="x"))) == {"dynamodb.PutItem": 1}
    assert await counted(add(dynamo, "run_1", only_if_idle=True)) == {"dynamodb.UpdateItem": 1}
    assert await counted(add(dynamo, "run_2")) == {"dynamodb.UpdateItem": 1}
    meter.reset()
    with pytest.raises(ConflictError):
        await add(dynamo, "run_3", only_if_idle=True)
    assert requests() == {"dynamodb.UpdateItem": 1}
    assert await counted(finish(dynamo, "run_1")) == {
        "dynamodb.GetItem": 1,
        "dynamodb.UpdateItem": 1,
    }
    assert await counted(finish(dynamo, "run_1")) == {"dynamodb.GetItem": 1}


class InterferingTable(RunTable):
    """The store's table, on which another writer acts once, right after the next read."""

    def __init__(self, table: RunTable, interfere: Callable[[], object]) -> None:
        super().__init__(table.name, table.client)
        self._interfere: Callable[[], object] | None = interfere

    def get(self, key: Key, *, consistent: bool = True) -> Item | None:
        item = super().get(key, consistent=consistent)
        interfere, self._interfere = self._interfere, None
        if interfere is not None:
            interfere()
        return item


async def test_dynamodb_finish_that_loses_a_race_never_moves_the_thread_back(
    aws: Aws, dynamo: DynamoControlStore
) -> None:
    for run_id in ("run_1", "run_2", "run_3"):
        await add(dynamo, run_id)
    key = {"pk": thread_pk("acme", "thread-1"), SK: THREAD_SK}

    def others_finish_run_1_and_run_2() -> object:
        return aws.table.update(
            key, update="SET #f = :two", names={"#f": "finished"}, values={":two": 2}
        )

    slow = DynamoControlStore(InterferingTable(aws.table, others_finish_run_1_and_run_2))
    try:
        # Reads run_1 as active, loses the write, reads again: nothing left to do.
        thread = await finish(slow, "run_1")
    finally:
        slow.close()
    assert (thread.finished, thread.active) == (2, "run_3")
    stored = await dynamo.get_thread("acme", "thread-1")
    assert stored is not None
    assert stored.finished == 2


async def test_dynamodb_from_settings(aws: Aws) -> None:
    settings = Settings(table_name=aws.table_name, region=REGION, retention_days=2)
    store = DynamoControlStore.from_settings(settings, max_workers=2)
    try:
        await store.put_key(key_record())
        assert _item(aws, "APIKEY#0123456789abcdef", "KEY")["key_hash"] == key_record().key_hash
        assert await store.get_key(key_record().key_id) == key_record()
        thread = await add(store, "run_1")
        item = _item(aws, thread_pk("acme", "thread-1"), THREAD_SK)
        assert item[TTL_ATTRIBUTE] == int(AT.timestamp()) + 2 * 86_400
        assert await store.get_thread("acme", "thread-1") == thread
    finally:
        store.close()
