"""The job store contract (``shared.jobs.base.JobStore``), checked against every backend.

Each test in the parametrized part runs once per backend (``memory``, ``dynamodb`` on moto);
the last section checks what only the DynamoDB layout promises (keys, TTL, JSON strings,
staying out of the tenant index, requests per call, item size).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config import Settings
from shared.dal.dynamodb import Item
from shared.dal.metering import RequestMeter
from shared.dal.schema import (
    BY_TENANT,
    CREATED,
    JOB_SK,
    SK,
    TENANT_PK,
    TTL_ATTRIBUTE,
    attempt_sk,
    job_pk,
    tenant_pk,
)
from shared.errors import JobExistsError, JobNotFoundError, JobStateConflictError, JobStoreError
from shared.jobs.base import JobStore
from shared.jobs.dynamodb import MAX_JSON_BYTES, DynamoJobStore
from shared.models.job import (
    AttemptPatch,
    AttemptStatus,
    Job,
    JobError,
    JobStatus,
    StageAttempt,
    StageKind,
)
from tests.conformance.conftest import REGION, T0, Aws, Clock

AT = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
LATER = AT + timedelta(minutes=5)
DAY_S = 86_400

# Values that any JSON carries and a naive DynamoDB encoding would not give back as written.
AWKWARD: Any = {
    "floats": [0.1, 1.5, -2.25, 1e-7, 1e300, 3.0],
    "ints": [0, -1, 2**53 + 1, 10**30],
    "nested": {"a": [{"b": None, "c": True, "d": False}], "empty": {}, "list": []},
    "text": 'näive ✓ \u0000 "quoted" #hash%',
    "zero": 0.0,
}


def job(job_id: str = "job_1", **fields: Any) -> Job:
    values: dict[str, Any] = {
        "job_id": job_id,
        "tenant": "acme",
        "pipeline": "document-review",
        "input": {"doc": "s3://bucket/key", "pages": 3},
        "execution_arn": f"arn:aws:states:us-east-1:123456789012:execution:review:{job_id}",
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(fields)
    return Job.model_validate(values)


def attempt(
    stage: str = "extract", attempt_id: str = "run_1", job_id: str = "job_1", **fields: Any
) -> StageAttempt:
    values: dict[str, Any] = {
        "job_id": job_id,
        "stage": stage,
        "attempt_id": attempt_id,
        "kind": StageKind.AGENT,
        "run_id": attempt_id,
        "task_token": f"token-{stage}-{attempt_id}",
        "data": {"doc": "s3://bucket/key"},
        "started_at": AT,
    }
    values.update(fields)
    return StageAttempt.model_validate(values)


async def finish(
    jobs: JobStore,
    job_id: str = "job_1",
    *,
    status: JobStatus = JobStatus.SUCCEEDED,
    output: Any = None,
    error: JobError | None = None,
    at: datetime = LATER,
) -> Job:
    return await jobs.finish_job(job_id, status=status, output=output, error=error, at=at)


# ---- jobs ----------------------------------------------------------------------------------


async def test_create_then_get_a_job(jobs: JobStore) -> None:
    created = job(
        idempotency_key="idem-1",
        metadata={"team": "legal", "ticket": "T-1"},
        status=JobStatus.AWAITING_APPROVAL,
    )
    await jobs.create_job(created)
    assert await jobs.get_job("job_1") == created
    assert await jobs.get_job("job_1") == job(
        idempotency_key="idem-1",
        metadata={"team": "legal", "ticket": "T-1"},
        status=JobStatus.AWAITING_APPROVAL,
    )


async def test_a_minimal_job_round_trips(jobs: JobStore) -> None:
    minimal = Job(job_id="job_min", tenant="acme", pipeline="p", created_at=AT, updated_at=AT)
    await jobs.create_job(minimal)
    stored = await jobs.get_job("job_min")
    assert stored == minimal
    assert (stored.input, stored.output, stored.error, stored.metadata) == (None, None, None, {})


async def test_get_an_unknown_job_raises(jobs: JobStore) -> None:
    with pytest.raises(JobNotFoundError):
        await jobs.get_job("job_missing")


async def test_create_a_duplicate_job_raises_and_keeps_the_original(jobs: JobStore) -> None:
    original = job()
    await jobs.create_job(original)
    with pytest.raises(JobExistsError):
        await jobs.create_job(job(tenant="intruder", input={"other": True}))
    assert await jobs.get_job("job_1") == original


async def test_json_values_round_trip_as_written(jobs: JobStore) -> None:
    await jobs.create_job(job(input=AWKWARD))
    stored = await jobs.get_job("job_1")
    assert stored.input == AWKWARD
    assert [type(v) for v in stored.input["floats"]] == [float] * 6
    assert type(stored.input["zero"]) is float
    assert stored.input["ints"][2] == 2**53 + 1

    finished = await finish(jobs, output={"result": AWKWARD, "score": 0.3})
    assert finished.output == {"result": AWKWARD, "score": 0.3}
    assert (await jobs.get_job("job_1")).output == {"result": AWKWARD, "score": 0.3}

    for value in (AWKWARD, [1, "two", 3.5], "just text", 42, 2.5, True):
        key = f"run_{type(value).__name__}"
        await jobs.put_attempt(attempt(attempt_id=key, data=value))
        got = await jobs.get_attempt("job_1", "extract", key)
        assert got is not None
        assert got.data == value
        assert type(got.data) is type(value)


async def test_finish_records_the_end(jobs: JobStore) -> None:
    await jobs.create_job(job())
    error = JobError(code="StageFailed", message="the model refused", stage="extract")
    finished = await finish(jobs, status=JobStatus.FAILED, error=error, at=LATER)
    expected = job(status=JobStatus.FAILED, error=error, updated_at=LATER, finished_at=LATER)
    assert finished == expected
    assert await jobs.get_job("job_1") == expected


async def test_finish_with_an_output(jobs: JobStore) -> None:
    await jobs.create_job(job(status=JobStatus.AWAITING_APPROVAL))
    finished = await finish(jobs, output={"summary": "ok", "score": 0.75})
    assert finished.status == JobStatus.SUCCEEDED
    assert finished.output == {"summary": "ok", "score": 0.75}
    assert (finished.error, finished.finished_at, finished.updated_at) == (None, LATER, LATER)
    assert finished.input == job().input  # untouched
    assert await jobs.get_job("job_1") == finished


async def test_finish_twice_keeps_the_first_end(jobs: JobStore) -> None:
    await jobs.create_job(job())
    first = await finish(jobs, output={"n": 1})
    again = await finish(
        jobs,
        status=JobStatus.CANCELLED,
        output={"n": 2},
        error=JobError(code="Cancelled"),
        at=LATER + timedelta(hours=1),
    )
    assert again == first
    assert await jobs.get_job("job_1") == first


async def test_racing_finishes_one_end_stands(jobs: JobStore) -> None:
    await jobs.create_job(job())
    ends = [
        (JobStatus.SUCCEEDED if i % 2 else JobStatus.FAILED, LATER + timedelta(seconds=i))
        for i in range(8)
    ]
    outcomes = await asyncio.gather(
        *(
            finish(jobs, status=status, output={"i": i}, at=at)
            for i, (status, at) in enumerate(ends)
        )
    )
    stored = await jobs.get_job("job_1")
    assert all(o == stored for o in outcomes), outcomes
    assert stored.finished_at is not None
    end = (stored.status, stored.finished_at)
    assert end in ends
    assert stored.output == {"i": ends.index(end)}


async def test_finish_an_unknown_job_raises_and_writes_nothing(jobs: JobStore) -> None:
    with pytest.raises(JobNotFoundError):
        await finish(jobs, "job_missing")
    with pytest.raises(JobNotFoundError):
        await jobs.get_job("job_missing")


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.AWAITING_APPROVAL])
async def test_finish_needs_a_final_status(jobs: JobStore, status: JobStatus) -> None:
    await jobs.create_job(job())
    with pytest.raises(JobStoreError):
        await finish(jobs, status=status)
    assert await jobs.get_job("job_1") == job()


# ---- attempts ------------------------------------------------------------------------------


async def test_put_then_get_an_attempt(jobs: JobStore) -> None:
    new = attempt(
        output={"partial": [1.5]},
        prompt="approve?",
        cost_usd=0.0123,
        input_path="$.doc",
        result_path="$.extracted",
    )
    assert await jobs.put_attempt(new) is True
    assert await jobs.get_attempt("job_1", "extract", "run_1") == new


async def test_get_an_unknown_attempt_is_none(jobs: JobStore) -> None:
    await jobs.put_attempt(attempt())
    assert await jobs.get_attempt("job_1", "extract", "run_2") is None
    assert await jobs.get_attempt("job_1", "review", "run_1") is None
    assert await jobs.get_attempt("job_2", "extract", "run_1") is None


async def test_put_an_existing_attempt_is_false_and_writes_nothing(jobs: JobStore) -> None:
    original = attempt()
    assert await jobs.put_attempt(original) is True
    retry = attempt(status=AttemptStatus.FAILED, data={"other": 1}, task_token="token-other")
    assert await jobs.put_attempt(retry) is False
    assert await jobs.get_attempt("job_1", "extract", "run_1") == original


async def test_racing_puts_of_one_attempt_exactly_one_wins(jobs: JobStore) -> None:
    rivals = [attempt(data={"writer": i}) for i in range(8)]
    outcomes = await asyncio.gather(*(jobs.put_attempt(a) for a in rivals))
    assert outcomes.count(True) == 1, outcomes
    stored = await jobs.get_attempt("job_1", "extract", "run_1")
    assert stored == rivals[outcomes.index(True)]


async def test_attempt_keys_are_per_job_stage_and_id(jobs: JobStore) -> None:
    items = [
        attempt("extract", "a"),
        attempt("extract", "b"),
        attempt("review", "a"),
        attempt("extract", "a", job_id="job_2"),
        # Ids that would run together in a naive composite key stay apart.
        attempt("x#y", "z", job_id="job_3"),
        attempt("x", "y#z", job_id="job_3"),
    ]
    assert [await jobs.put_attempt(a) for a in items] == [True] * len(items)
    for a in items:
        assert await jobs.get_attempt(a.job_id, a.stage, a.attempt_id) == a
    assert len(await jobs.attempts("job_1")) == 3
    assert await jobs.attempts("job_2") == [items[3]]
    assert len(await jobs.attempts("job_3")) == 2


async def test_attempts_oldest_first_then_by_id(jobs: JobStore) -> None:
    await jobs.create_job(job())  # the job item is not an attempt
    t = [AT + timedelta(seconds=s) for s in range(4)]
    order = [
        attempt("extract", "run_b", started_at=t[0]),
        attempt("review", "run_a", started_at=t[1]),  # ties: by attempt id
        attempt("extract", "run_c", started_at=t[1]),
        attempt("approve", "gate_1", kind=StageKind.APPROVAL, started_at=t[2]),
        attempt("aaa", "run_z", started_at=t[3]),
    ]
    for a in (order[3], order[0], order[4], order[2], order[1]):
        await jobs.put_attempt(a)
    assert await jobs.attempts("job_1") == order


async def test_attempts_of_an_unknown_job_are_empty(jobs: JobStore) -> None:
    assert await jobs.attempts("job_missing") == []
    await jobs.create_job(job())
    assert await jobs.attempts("job_1") == []


async def test_update_applies_only_the_given_fields(jobs: JobStore) -> None:
    original = attempt(output={"keep": True}, cost_usd=0.5)
    await jobs.put_attempt(original)
    updated = await jobs.update_attempt(
        "job_1", "extract", "run_1", AttemptPatch(status=AttemptStatus.AWAITING_APPROVAL)
    )
    assert updated == original.model_copy(update={"status": AttemptStatus.AWAITING_APPROVAL})
    assert await jobs.get_attempt("job_1", "extract", "run_1") == updated


async def test_update_every_field(jobs: JobStore) -> None:
    await jobs.put_attempt(attempt())
    error = JobError(code="RunFailed", message="budget exceeded", stage="extract")
    patch = AttemptPatch(
        status=AttemptStatus.FAILED,
        run_id="run_other",
        output=AWKWARD,
        error=error,
        cost_usd=1.25,
        decision={"approved": False, "by": "alice", "score": 0.5, "notes": [None, 1.5]},
        finished_at=LATER,
        task_token="token-new",
    )
    updated = await jobs.update_attempt("job_1", "extract", "run_1", patch)
    expected = attempt().model_copy(
        update={
            "status": AttemptStatus.FAILED,
            "run_id": "run_other",
            "output": AWKWARD,
            "error": error,
            "cost_usd": 1.25,
            "decision": {"approved": False, "by": "alice", "score": 0.5, "notes": [None, 1.5]},
            "finished_at": LATER,
            "task_token": "token-new",
        }
    )
    assert updated == expected
    assert await jobs.get_attempt("job_1", "extract", "run_1") == expected


async def test_an_empty_patch_changes_nothing(jobs: JobStore) -> None:
    original = attempt()
    await jobs.put_attempt(original)
    assert await jobs.update_attempt("job_1", "extract", "run_1", AttemptPatch()) == original
    assert await jobs.get_attempt("job_1", "extract", "run_1") == original


async def test_update_an_unknown_attempt_raises_and_creates_nothing(jobs: JobStore) -> None:
    await jobs.put_attempt(attempt())
    patch = AttemptPatch(status=AttemptStatus.SUCCEEDED)
    for job_id, stage, attempt_id in [
        ("job_1", "extract", "run_2"),
        ("job_1", "review", "run_1"),
        ("job_2", "extract", "run_1"),
    ]:
        with pytest.raises(JobNotFoundError):
            await jobs.update_attempt(job_id, stage, attempt_id, patch)
        with pytest.raises(JobNotFoundError):
            await jobs.update_attempt(
                job_id, stage, attempt_id, patch, expected_status=AttemptStatus.RUNNING
            )
        assert await jobs.get_attempt(job_id, stage, attempt_id) is None
    assert len(await jobs.attempts("job_1")) == 1


async def test_update_with_the_expected_status(jobs: JobStore) -> None:
    await jobs.put_attempt(attempt(kind=StageKind.APPROVAL, status=AttemptStatus.AWAITING_APPROVAL))
    decided = await jobs.update_attempt(
        "job_1",
        "extract",
        "run_1",
        AttemptPatch(status=AttemptStatus.SUCCEEDED, decision={"approved": True}),
        expected_status=AttemptStatus.AWAITING_APPROVAL,
    )
    assert (decided.status, decided.decision) == (AttemptStatus.SUCCEEDED, {"approved": True})

    with pytest.raises(JobStateConflictError) as err:
        await jobs.update_attempt(
            "job_1",
            "extract",
            "run_1",
            AttemptPatch(status=AttemptStatus.FAILED, decision={"approved": False}),
            expected_status=AttemptStatus.AWAITING_APPROVAL,
        )
    assert not isinstance(err.value, JobNotFoundError)
    assert await jobs.get_attempt("job_1", "extract", "run_1") == decided  # unchanged


async def test_racing_decisions_exactly_one_wins(jobs: JobStore) -> None:
    await jobs.put_attempt(attempt(kind=StageKind.APPROVAL, status=AttemptStatus.AWAITING_APPROVAL))
    outcomes = await asyncio.gather(
        *(
            jobs.update_attempt(
                "job_1",
                "extract",
                "run_1",
                AttemptPatch(status=AttemptStatus.SUCCEEDED, decision={"by": f"user_{i}"}),
                expected_status=AttemptStatus.AWAITING_APPROVAL,
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )
    winners = [o for o in outcomes if isinstance(o, StageAttempt)]
    losers = [o for o in outcomes if not isinstance(o, StageAttempt)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, JobStateConflictError) for o in losers), losers
    assert await jobs.get_attempt("job_1", "extract", "run_1") == winners[0]


async def test_stored_values_are_isolated_from_callers(jobs: JobStore) -> None:
    created = job(input={"list": [1, 2]}, metadata={"k": "v"})
    await jobs.create_job(created)
    created.input["list"].append(3)
    created.metadata["k"] = "changed"
    got = await jobs.get_job("job_1")
    assert (got.input, got.metadata) == ({"list": [1, 2]}, {"k": "v"})
    got.input["list"].clear()
    assert (await jobs.get_job("job_1")).input == {"list": [1, 2]}

    new = attempt(data={"nested": {"x": [1]}})
    await jobs.put_attempt(new)
    new.data["nested"]["x"].append(2)
    stored = await jobs.get_attempt("job_1", "extract", "run_1")
    assert stored is not None
    assert stored.data == {"nested": {"x": [1]}}
    stored.data["nested"]["x"].append(3)
    listed = await jobs.attempts("job_1")
    assert listed[0].data == {"nested": {"x": [1]}}
    listed[0].data["nested"] = None

    decision: dict[str, Any] = {"approved": True, "notes": ["a"]}
    output: dict[str, Any] = {"out": [1]}
    updated = await jobs.update_attempt(
        "job_1", "extract", "run_1", AttemptPatch(decision=decision, output=output)
    )
    decision["notes"].append("b")
    output["out"].append(2)
    assert updated.decision is not None
    updated.decision["approved"] = False
    again = await jobs.get_attempt("job_1", "extract", "run_1")
    assert again is not None
    assert (again.decision, again.output, again.data) == (
        {"approved": True, "notes": ["a"]},
        {"out": [1]},
        {"nested": {"x": [1]}},
    )

    finish_output: dict[str, Any] = {"done": [1]}
    finished = await finish(jobs, output=finish_output)
    finish_output["done"].append(2)
    finished.output["done"].append(3)
    assert (await jobs.get_job("job_1")).output == {"done": [1]}


# ---- DynamoDB layout -----------------------------------------------------------------------


@pytest.fixture
def dynamo(aws: Aws, clock: Clock) -> Iterator[DynamoJobStore]:
    store = DynamoJobStore(aws.table, retention_days=7, clock=clock, max_workers=4)
    yield store
    store.close()


def _item(aws: Aws, pk: str, sk: str) -> Item:
    item = aws.table.get({"pk": pk, SK: sk})
    assert item is not None
    return item


def test_key_layout() -> None:
    assert (job_pk("job_1"), JOB_SK) == ("JOB#job_1", "JOB")
    assert attempt_sk("extract", "run_1") == "ATTEMPT#extract#run_1"
    assert attempt_sk("x#y", "z") != attempt_sk("x", "y#z")


async def test_dynamodb_job_item(aws: Aws, dynamo: DynamoJobStore, clock: Clock) -> None:
    week = 7 * DAY_S
    await dynamo.create_job(job(input=AWKWARD, metadata={"team": "legal"}))
    item = _item(aws, "JOB#job_1", "JOB")
    assert item[TTL_ATTRIBUTE] == int(T0) + week
    assert isinstance(item["input"], str)
    assert json.loads(item["input"]) == AWKWARD
    assert item["created_at"] == "2025-01-02T03:04:05.678901Z"
    assert (item["status"], item["tenant"], item["pipeline"]) == (
        "running",
        "acme",
        "document-review",
    )
    assert item["metadata"] == {"team": "legal"}
    assert "output" not in item
    assert "finished_at" not in item

    clock.advance(3600)
    await finish(
        dynamo,
        status=JobStatus.FAILED,
        output=[0.5],
        error=JobError(code="StageFailed", message="no"),
    )
    item = _item(aws, "JOB#job_1", "JOB")
    assert item[TTL_ATTRIBUTE] == int(T0) + 3600 + week
    assert (item["status"], item["output"]) == ("failed", "[0.5]")
    assert item["error"] == {"code": "StageFailed", "message": "no"}
    assert item["finished_at"] == item["updated_at"] == "2025-01-02T03:09:05.678901Z"

    clock.advance(3600)
    await finish(dynamo, output="ignored")  # finished already: nothing written
    assert _item(aws, "JOB#job_1", "JOB")[TTL_ATTRIBUTE] == int(T0) + 3600 + week


async def test_dynamodb_attempt_items(aws: Aws, dynamo: DynamoJobStore, clock: Clock) -> None:
    week = 7 * DAY_S
    await dynamo.put_attempt(attempt(data={"x": 1.0}, output=None))
    item = _item(aws, "JOB#job_1", "ATTEMPT#extract#run_1")
    assert item[TTL_ATTRIBUTE] == int(T0) + week
    assert item["data"] == '{"x":1.0}'
    assert item["task_token"] == "token-extract-run_1"
    assert item["started_at"] == "2025-01-02T03:04:05.678901Z"
    assert (item["kind"], item["status"]) == ("agent", "running")
    assert "output" not in item
    assert "decision" not in item

    clock.advance(60)
    await dynamo.update_attempt(
        "job_1",
        "extract",
        "run_1",
        AttemptPatch(
            status=AttemptStatus.SUCCEEDED,
            output={"y": [2.5]},
            decision={"approved": True},
            finished_at=LATER,
            cost_usd=0.25,
        ),
    )
    item = _item(aws, "JOB#job_1", "ATTEMPT#extract#run_1")
    assert item[TTL_ATTRIBUTE] == int(T0) + 60 + week
    assert (item["output"], item["decision"]) == ('{"y":[2.5]}', '{"approved":true}')
    assert item["finished_at"] == "2025-01-02T03:09:05.678901Z"
    assert (item["status"], item["cost_usd"], item["data"]) == ("succeeded", 0.25, '{"x":1.0}')

    await dynamo.put_attempt(attempt("a#b", "c"))
    _item(aws, "JOB#job_1", "ATTEMPT#a%23b#c")


async def test_dynamodb_job_items_stay_out_of_the_tenant_index(
    aws: Aws, dynamo: DynamoJobStore
) -> None:
    await dynamo.create_job(job())
    await dynamo.put_attempt(attempt())
    await dynamo.update_attempt("job_1", "extract", "run_1", AttemptPatch(cost_usd=1.0))
    await finish(dynamo)
    scanned = aws.dynamodb.scan(TableName=aws.table_name)["Items"]
    assert len(scanned) == 2
    assert all(TENANT_PK not in i and CREATED not in i for i in scanned)
    assert aws.table.query(TENANT_PK, tenant_pk("acme"), index=BY_TENANT) == []


async def test_dynamodb_requests_per_call(aws: Aws, dynamo: DynamoJobStore) -> None:
    meter = RequestMeter()
    meter.attach(aws.table.client)

    async def counted(action: Awaitable[object]) -> dict[str, int]:
        meter.reset()
        await action
        return requests()

    def requests() -> dict[str, int]:
        return {op: counts["requests"] for op, counts in meter.snapshot().items()}

    assert await counted(dynamo.create_job(job())) == {"dynamodb.PutItem": 1}
    assert await counted(dynamo.get_job("job_1")) == {"dynamodb.GetItem": 1}
    assert await counted(dynamo.put_attempt(attempt())) == {"dynamodb.PutItem": 1}
    assert await counted(dynamo.put_attempt(attempt())) == {"dynamodb.PutItem": 1}
    assert await counted(dynamo.get_attempt("job_1", "extract", "run_1")) == {"dynamodb.GetItem": 1}
    patch = AttemptPatch(status=AttemptStatus.SUCCEEDED)
    assert await counted(
        dynamo.update_attempt(
            "job_1", "extract", "run_1", patch, expected_status=AttemptStatus.RUNNING
        )
    ) == {"dynamodb.UpdateItem": 1}
    for expected_status in (AttemptStatus.RUNNING, None):
        meter.reset()
        with pytest.raises((JobStateConflictError, JobNotFoundError)):
            await dynamo.update_attempt(
                "job_1",
                "extract" if expected_status else "missing",
                "run_1",
                patch,
                expected_status=expected_status,
            )
        # The failed condition hands back the item as it stood: no second read.
        assert requests() == {"dynamodb.UpdateItem": 1}
    assert await counted(dynamo.attempts("job_1")) == {"dynamodb.Query": 1}
    assert await counted(finish(dynamo)) == {"dynamodb.UpdateItem": 1}
    assert await counted(finish(dynamo)) == {"dynamodb.UpdateItem": 1}


async def test_dynamodb_refuses_json_too_big_for_an_item(aws: Aws, dynamo: DynamoJobStore) -> None:
    big = "x" * MAX_JSON_BYTES
    with pytest.raises(JobStoreError, match="bytes of JSON"):
        await dynamo.put_attempt(attempt(data=big))
    assert await dynamo.get_attempt("job_1", "extract", "run_1") is None

    await dynamo.put_attempt(attempt())
    with pytest.raises(JobStoreError, match="bytes of JSON"):
        await dynamo.update_attempt("job_1", "extract", "run_1", AttemptPatch(output=[big]))
    assert await dynamo.get_attempt("job_1", "extract", "run_1") == attempt()

    # Step Functions' largest payload (256 KB) fits.
    payload = "y" * (256 * 1024 - 2)
    updated = await dynamo.update_attempt("job_1", "extract", "run_1", AttemptPatch(output=payload))
    assert updated.output == payload
    await dynamo.put_attempt(attempt(attempt_id="run_2", data=payload))
    assert len(await dynamo.attempts("job_1")) == 2

    # Two of them do not fit in one item: a clear error, nothing written.
    with pytest.raises(JobStoreError, match="400 KB"):
        await dynamo.put_attempt(attempt(attempt_id="run_3", data=payload, output=payload))
    assert await dynamo.get_attempt("job_1", "extract", "run_3") is None
    with pytest.raises(JobStoreError, match="400 KB"):
        await dynamo.update_attempt("job_1", "extract", "run_2", AttemptPatch(output=payload))
    stored = await dynamo.get_attempt("job_1", "extract", "run_2")
    assert stored is not None
    assert stored.output is None


async def test_dynamodb_attempts_follow_every_query_page(aws: Aws, dynamo: DynamoJobStore) -> None:
    # Four items of about 250 KB: more than one 1 MB Query page.
    payload = "z" * 250_000
    ids = [f"run_{i}" for i in range(4)]
    for i, attempt_id in enumerate(ids):
        started = AT + timedelta(seconds=-i)
        await dynamo.put_attempt(attempt(attempt_id=attempt_id, data=payload, started_at=started))
    meter = RequestMeter()
    meter.attach(aws.table.client)
    listed = await dynamo.attempts("job_1")
    assert [a.attempt_id for a in listed] == ids[::-1]
    assert meter.snapshot()["dynamodb.Query"]["requests"] >= 2


async def test_dynamodb_from_settings(aws: Aws) -> None:
    settings = Settings(table_name=aws.table_name, region=REGION, retention_days=2)
    store = DynamoJobStore.from_settings(settings, max_workers=2)
    try:
        before = int(datetime.now(UTC).timestamp())
        await store.create_job(job())
        item = _item(aws, "JOB#job_1", "JOB")
        assert before + 2 * DAY_S <= item[TTL_ATTRIBUTE] <= before + 2 * DAY_S + 5
        assert await store.get_job("job_1") == job()
    finally:
        store.close()
