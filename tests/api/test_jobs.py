"""GET /v1/pipelines and the jobs routes: start (idempotent), get, approval, cancel, on the
memory backend. Step Functions is ``MemoryWorkflows``: it runs nothing, so each test moves the
job on the way the platform would (``open_gate`` for a gate, ``set_execution`` for the end)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest

from agents.documents import document_review
from devstack.apigw import Gateway
from shared.config import Settings
from shared.errors import WorkflowError
from shared.jobs.base import ExecutionStatus
from shared.jobs.memory import MemoryWorkflows
from shared.logic import stages
from shared.logic.service import Services
from shared.models.job import FunctionCall
from shared.pipelines import ApprovalStage, FunctionStage, ParallelStage, Pipeline
from shared.pipelines.registry import PipelineRegistry
from shared.wiring import build_services
from tests.api.conftest import assert_error, new_key

MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:switchyard-test-document-review"
TWO_GATES_MACHINE = "arn:aws:states:us-east-1:000000000000:stateMachine:switchyard-test-two-gates"
DOCUMENT = {"bucket": "docs", "key": "inbox/q3.md"}
START = {"pipeline": "document-review", "input": DOCUMENT}
STAGES = ["extract", "summarize-section", "review", "publish"]


def _noop(data: Any, ctx: Any) -> Any:
    return data


two_gates = Pipeline(
    name="two-gates",
    stages=(
        ParallelStage(
            name="sign-off",
            branches={
                "legal": (ApprovalStage(name="legal", prompt="Legal OK?"),),
                "finance": (ApprovalStage(name="finance", prompt="Finance OK?"),),
            },
        ),
        FunctionStage(name="done", fn=_noop),
    ),
)


@pytest.fixture
def svc() -> Services:
    """Memory services with document-review (and two-gates) deployed."""
    registry = PipelineRegistry([document_review, two_gates])
    settings = Settings(pipeline_arns={"document-review": MACHINE, "two-gates": TWO_GATES_MACHINE})
    return build_services(settings, backend="memory", pipeline_registry=registry)


def workflows(svc: Services) -> MemoryWorkflows:
    assert isinstance(svc.workflows, MemoryWorkflows)
    return svc.workflows


def start(gw: Gateway, key: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    response = gw.post("/v1/jobs", json_body=START if body is None else body, key=key, **kwargs)
    assert response.status == 201, response.body
    job: dict[str, Any] = response.json()
    return job


def execution_arn(svc: Services, job_id: str) -> str:
    return asyncio.run(svc.jobs.get_job(job_id)).execution_arn


def open_gate(
    svc: Services, job_id: str, token: str, *, stage: str = "review", data: Any = None
) -> None:
    call = FunctionCall(
        job_id=job_id,
        tenant="acme",
        pipeline="document-review" if stage == "review" else "two-gates",
        stage=stage,
        action="gate",
        task_token=token,
        data=data,
    )
    asyncio.run(stages.open_gate(svc, call))


REVIEW_DATA = {
    "document": DOCUMENT,
    "title": "Q3",
    "sections": [{"heading": "Q3", "text": "Revenue up."}],
    "summaries": ["Revenue rose."],
}


def awaiting_review(gw: Gateway, acme: str, svc: Services, token: str = "tok-1") -> str:
    job_id = str(start(gw, acme)["job_id"])
    open_gate(svc, job_id, token, data=REVIEW_DATA)
    return job_id


# ---- pipelines -------------------------------------------------------------------------------


def test_pipelines_list_their_stages_and_whether_they_are_deployed(gw: Gateway, acme: str) -> None:
    response = gw.get("/v1/pipelines", key=acme)
    assert response.status == 200
    pipelines = {p["name"]: p for p in response.json()["pipelines"]}
    assert set(pipelines) == {"document-review", "two-gates"}
    review = pipelines["document-review"]
    assert review["deployed"] is True
    assert [s["name"] for s in review["stages"]] == ["extract", "summarize", "review", "publish"]
    assert review["stages"][1]["stages"][0] == {
        "name": "summarize-section",
        "kind": "agent",
        "agent": "section-summarizer",
        "retry": [{"errors": ["RunFailed", "States.Timeout"], "max_attempts": 1}],
    }
    assert review["stages"][2]["prompt"] == "Publish these section summaries?"


# ---- start -----------------------------------------------------------------------------------


def test_start_is_201_with_the_running_job_and_starts_its_execution(
    gw: Gateway, acme: str, svc: Services
) -> None:
    response = gw.post("/v1/jobs", json_body={**START, "metadata": {"ticket": "T-1"}}, key=acme)
    assert response.status == 201, response.body
    job = response.json()
    job_id = job["job_id"]
    assert job_id.startswith("job_")
    assert job["status"] == "running"
    assert job["pipeline"] == "document-review"
    assert job["tenant"] == "acme"
    assert job["input"] == DOCUMENT
    assert job["metadata"] == {"ticket": "T-1"}
    assert job["output"] is None
    assert job["error"] is None
    assert job["finished_at"] is None
    assert response.headers["location"] == f"/v1/jobs/{job_id}"
    assert "idempotent-replayed" not in response.headers
    ((machine, name, execution_input),) = workflows(svc).starts
    assert (machine, name) == (MACHINE, job_id)
    assert execution_input == {
        "job_id": job_id,
        "tenant": "acme",
        "pipeline": "document-review",
        "input": DOCUMENT,
    }


def test_the_new_job_shows_every_task_stage_pending_in_definition_order(
    gw: Gateway, acme: str
) -> None:
    job_id = start(gw, acme)["job_id"]
    job = gw.get(f"/v1/jobs/{job_id}", key=acme).json()
    assert job["status"] == "running"
    assert [s["name"] for s in job["stages"]] == STAGES
    assert [s["kind"] for s in job["stages"]] == ["function", "agent", "approval", "function"]
    for stage in job["stages"]:
        assert stage["status"] == "pending"
        assert stage["runs"] == []
        assert stage["attempts"] == []
        assert stage["cost_usd"] == 0
    assert job["pending_approvals"] == []
    assert job["cost_usd"] == 0


def test_an_idempotent_retry_is_200_with_the_same_job(
    gw: Gateway, acme: str, svc: Services
) -> None:
    first = gw.post("/v1/jobs", json_body=START, key=acme, headers={"Idempotency-Key": "q3-1"})
    again = gw.post("/v1/jobs", json_body=START, key=acme, headers={"Idempotency-Key": "q3-1"})
    assert (first.status, again.status) == (201, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    # Step Functions' own idempotency (same name, same input) keeps it one execution.
    assert len({arn for arn in workflows(svc).executions}) == 1


def test_the_same_key_with_another_body_is_409(gw: Gateway, acme: str) -> None:
    key = {"Idempotency-Key": "q3-2"}
    assert gw.post("/v1/jobs", json_body=START, key=acme, headers=key).status == 201
    other = {**START, "input": {"bucket": "docs", "key": "inbox/q4.md"}}
    error = assert_error(
        gw.post("/v1/jobs", json_body=other, key=acme, headers=key), 409, "conflict"
    )
    assert error["details"]["job_id"].startswith("job_")


def test_idempotency_keys_are_per_tenant(gw: Gateway, acme: str, globex: str) -> None:
    key = {"Idempotency-Key": "same"}
    mine = gw.post("/v1/jobs", json_body=START, key=acme, headers=key)
    theirs = gw.post("/v1/jobs", json_body=START, key=globex, headers=key)
    assert (mine.status, theirs.status) == (201, 201)
    assert mine.json()["job_id"] != theirs.json()["job_id"]


def test_an_unknown_pipeline_is_422_like_an_unknown_agent(gw: Gateway, acme: str) -> None:
    error = assert_error(
        gw.post("/v1/jobs", json_body={"pipeline": "nightly"}, key=acme), 422, "unknown_pipeline"
    )
    assert error["details"]["known"] == ["document-review", "two-gates"]


def test_a_pipeline_this_stack_did_not_deploy_is_503(install: Any) -> None:
    undeployed = build_services(
        Settings(), backend="memory", pipeline_registry=PipelineRegistry([document_review])
    )
    gw: Gateway = install(undeployed)
    key = new_key(undeployed, "acme")
    error = assert_error(
        gw.post("/v1/jobs", json_body=START, key=key), 503, "pipeline_not_deployed"
    )
    assert "not deployed" in error["message"]
    assert error["details"] == {"pipeline": "document-review", "deployed": []}
    listed = gw.get("/v1/pipelines", key=key).json()["pipelines"]
    assert [(p["name"], p["deployed"]) for p in listed] == [("document-review", False)]
    assert workflows(undeployed).starts == []


class _RefusingWorkflows(MemoryWorkflows):
    async def start(self, state_machine_arn: str, name: str, input: Any) -> str:
        raise WorkflowError(f"ThrottlingException on {state_machine_arn}")


def test_step_functions_trouble_is_503_and_says_nothing_of_it(install: Any, svc: Services) -> None:
    broken = dataclasses.replace(svc, workflows=_RefusingWorkflows())
    gw: Gateway = install(broken)
    key = new_key(broken, "acme")
    start_once = {"Idempotency-Key": "q3-start"}
    response = gw.post("/v1/jobs", json_body=START, key=key, headers=start_once)
    error = assert_error(response, 503, "unavailable")
    assert set(error["details"]) == {"request_id"}
    assert response.headers["retry-after"] == "1"
    assert "arn:aws" not in response.body
    # The job is recorded as failed to start; a retry with its key says so, and never
    # starts an execution its job would not follow.
    healed = dataclasses.replace(broken, workflows=MemoryWorkflows())
    gw = install(healed)
    again = gw.post("/v1/jobs", json_body=START, key=key, headers=start_once)
    assert again.status == 200, again.body
    job = again.json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "StartFailed"
    assert workflows(healed).starts == []


@pytest.mark.parametrize("value", ["a string", [1, 2], 3, None])
def test_input_must_be_an_object(gw: Gateway, acme: str, value: Any) -> None:
    error = assert_error(
        gw.post("/v1/jobs", json_body={**START, "input": value}, key=acme),
        422,
        "invalid_request",
    )
    assert error["details"][0]["loc"] == ["body", "input"]


@pytest.mark.parametrize(
    "body",
    [{}, {"pipeline": ""}, {**START, "extra": 1}, {**START, "metadata": {"n": 1}}],
)
def test_a_body_that_breaks_the_schema_is_422(gw: Gateway, acme: str, body: Any) -> None:
    assert_error(gw.post("/v1/jobs", json_body=body, key=acme), 422, "invalid_request")


def test_a_malformed_idempotency_key_is_400(gw: Gateway, acme: str) -> None:
    response = gw.post(
        "/v1/jobs", json_body=START, key=acme, headers={"Idempotency-Key": "has space"}
    )
    assert_error(response, 400, "invalid_parameter")


# ---- tenancy ---------------------------------------------------------------------------------


def test_another_tenants_job_is_404_on_every_route(
    gw: Gateway, acme: str, globex: str, svc: Services
) -> None:
    job_id = awaiting_review(gw, acme, svc)
    for response in (
        gw.get(f"/v1/jobs/{job_id}", key=globex),
        gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "approve"}, key=globex),
        gw.post(f"/v1/jobs/{job_id}/cancel", key=globex),
    ):
        assert_error(response, 404, "not_found")
    missing = gw.get("/v1/jobs/job_NOPE", key=globex).json()["error"]
    theirs = gw.get(f"/v1/jobs/{job_id}", key=globex).json()["error"]
    assert theirs["message"].replace(job_id, "ID") == missing["message"].replace("job_NOPE", "ID")
    # Nothing globex tried touched the job.
    assert workflows(svc).answers == {}
    assert workflows(svc).stops == []
    assert gw.get(f"/v1/jobs/{job_id}", key=acme).json()["status"] == "awaiting_approval"


@pytest.mark.parametrize("job_id", ["..", "a b", "x" * 200])
def test_a_malformed_job_id_is_404(gw: Gateway, acme: str, job_id: str) -> None:
    assert_error(gw.get(f"/v1/jobs/{job_id}", key=acme), 404, "not_found")


# ---- approval gates --------------------------------------------------------------------------


def test_an_open_gate_is_pending_with_its_prompt_and_data_but_never_its_token(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = awaiting_review(gw, acme, svc, token="tok-SECRET-1")
    response = gw.get(f"/v1/jobs/{job_id}", key=acme)
    job = response.json()
    assert job["status"] == "awaiting_approval"
    (pending,) = job["pending_approvals"]
    assert pending["stage"] == "review"
    assert pending["kind"] == "gate"
    assert pending["prompt"] == "Publish these section summaries?"
    assert pending["data"] == REVIEW_DATA
    assert pending["requested_at"]
    review = next(s for s in job["stages"] if s["name"] == "review")
    assert review["status"] == "awaiting_approval"
    (attempt,) = review["attempts"]
    assert set(attempt) == {
        "attempt_id",
        "status",
        "run_id",
        "output",
        "error",
        "cost_usd",
        "started_at",
        "finished_at",
    }
    assert "tok-SECRET-1" not in response.body
    assert "task_token" not in response.body
    assert "input_path" not in response.body
    assert "result_path" not in response.body


def test_approve_answers_the_gate_with_its_data_and_the_decision(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = awaiting_review(gw, acme, svc)
    response = gw.post(
        f"/v1/jobs/{job_id}/approval",
        json_body={"decision": "approve", "comment": "ship it"},
        key=acme,
    )
    assert response.status == 202, response.body
    job = response.json()
    assert job["status"] == "running"
    assert job["pending_approvals"] == []
    review = next(s for s in job["stages"] if s["name"] == "review")
    assert review["status"] == "succeeded"
    kind, answered = workflows(svc).answers["tok-1"]
    assert kind == "success"
    decision = answered.pop("review")
    assert answered == REVIEW_DATA  # the data carries on...
    assert decision["decision"] == "approve"  # ...with the decision at $.review
    assert decision["comment"] == "ship it"
    assert decision["decided_at"]
    assert "tok-1" not in response.body


def test_a_second_decision_is_409(gw: Gateway, acme: str, svc: Services) -> None:
    job_id = awaiting_review(gw, acme, svc)
    approve = {"decision": "approve"}
    assert gw.post(f"/v1/jobs/{job_id}/approval", json_body=approve, key=acme).status == 202
    again = gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "reject"}, key=acme)
    assert_error(again, 409, "invalid_state")
    assert workflows(svc).answers["tok-1"][0] == "success"


def test_reject_fails_the_gate_with_approval_rejected(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = awaiting_review(gw, acme, svc)
    response = gw.post(
        f"/v1/jobs/{job_id}/approval",
        json_body={"decision": "reject", "comment": "section 2 is wrong"},
        key=acme,
    )
    assert response.status == 202, response.body
    assert workflows(svc).answers["tok-1"] == (
        "failure",
        {"error": "ApprovalRejected", "cause": "section 2 is wrong"},
    )
    review = next(s for s in response.json()["stages"] if s["name"] == "review")
    assert review["attempts"][0]["status"] == "failed"
    assert review["attempts"][0]["error"]["code"] == "ApprovalRejected"
    # The execution fails on the rejection (moto drops the cause: the attempt keeps it).
    workflows(svc).set_execution(
        execution_arn(svc, job_id), ExecutionStatus.FAILED, error="ApprovalRejected"
    )
    job = gw.get(f"/v1/jobs/{job_id}", key=acme).json()
    assert job["status"] == "failed"
    assert job["error"] == {
        "code": "ApprovalRejected",
        "message": "section 2 is wrong",
        "stage": "review",
    }


def test_approval_with_nothing_pending_is_409(gw: Gateway, acme: str) -> None:
    job_id = start(gw, acme)["job_id"]
    error = assert_error(
        gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "approve"}, key=acme),
        409,
        "invalid_state",
    )
    assert "no pending approval" in error["message"]


def test_an_expired_gate_is_409(gw: Gateway, acme: str, svc: Services) -> None:
    job_id = awaiting_review(gw, acme, svc)
    workflows(svc).close_token("tok-1")
    error = assert_error(
        gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "approve"}, key=acme),
        409,
        "invalid_state",
    )
    assert "expired" in error["message"]


def test_with_two_gates_open_the_decision_names_its_stage(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = start(gw, acme, {"pipeline": "two-gates", "input": {"n": 1}})["job_id"]
    open_gate(svc, job_id, "tok-legal", stage="legal", data={"n": 1})
    open_gate(svc, job_id, "tok-finance", stage="finance", data={"n": 1})
    assert len(gw.get(f"/v1/jobs/{job_id}", key=acme).json()["pending_approvals"]) == 2
    ambiguous = assert_error(
        gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "approve"}, key=acme),
        409,
        "invalid_state",
    )
    assert {p["stage"] for p in ambiguous["details"]["pending"]} == {"legal", "finance"}
    decided = gw.post(
        f"/v1/jobs/{job_id}/approval",
        json_body={"decision": "approve", "stage": "finance"},
        key=acme,
    )
    assert decided.status == 202
    assert [p["stage"] for p in decided.json()["pending_approvals"]] == ["legal"]
    assert set(workflows(svc).answers) == {"tok-finance"}
    unknown = gw.post(
        f"/v1/jobs/{job_id}/approval",
        json_body={"decision": "approve", "stage": "finance"},
        key=acme,
    )
    assert_error(unknown, 409, "invalid_state")


def test_an_approval_body_that_breaks_the_schema_is_422(gw: Gateway, acme: str) -> None:
    job_id = start(gw, acme)["job_id"]
    for body in ({"decision": "maybe"}, {"decision": "approve", "edited_input": {}}):
        assert_error(
            gw.post(f"/v1/jobs/{job_id}/approval", json_body=body, key=acme),
            422,
            "invalid_request",
        )


# ---- the end of a job ------------------------------------------------------------------------


def test_a_succeeded_execution_is_a_succeeded_job_with_its_output(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = start(gw, acme)["job_id"]
    output = {"published": {"bucket": "docs", "key": "published/inbox/q3.md.summary.json"}}
    workflows(svc).set_execution(
        execution_arn(svc, job_id), ExecutionStatus.SUCCEEDED, output=output
    )
    job = gw.get(f"/v1/jobs/{job_id}", key=acme).json()
    assert job["status"] == "succeeded"
    assert job["output"] == output
    assert job["error"] is None
    assert job["finished_at"]
    # Kept on the job: a later read does not need Step Functions.
    workflows(svc).set_execution(execution_arn(svc, job_id), ExecutionStatus.RUNNING)
    assert gw.get(f"/v1/jobs/{job_id}", key=acme).json()["status"] == "succeeded"
    assert_error(gw.post(f"/v1/jobs/{job_id}/cancel", key=acme), 409, "invalid_state")
    assert_error(
        gw.post(f"/v1/jobs/{job_id}/approval", json_body={"decision": "approve"}, key=acme),
        409,
        "invalid_state",
    )


def _no_context(attempt_id: str) -> Any:
    return None  # extract fails on its input before it reads the document


def test_a_failed_execution_keeps_the_cause_the_stage_recorded(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = start(gw, acme, {"pipeline": "document-review", "input": {"bucket": "docs"}})["job_id"]
    call = FunctionCall(
        job_id=job_id,
        tenant="acme",
        pipeline="document-review",
        stage="extract",
        data={"bucket": "docs"},
    )
    with pytest.raises(stages.StageFailed):
        asyncio.run(stages.run_function_stage(svc, call, _no_context))
    # The local interpreter ends the execution with the error name and no cause.
    workflows(svc).set_execution(
        execution_arn(svc, job_id), ExecutionStatus.FAILED, error="StageFailed", cause=None
    )
    job = gw.get(f"/v1/jobs/{job_id}", key=acme).json()
    assert job["status"] == "failed"
    error = job["error"]
    assert error["code"] == "StageFailed"
    assert error["stage"] == "extract"
    assert error["message"].startswith("DocumentError: the job input needs the document's bucket")
    extract = job["stages"][0]
    assert extract["status"] == "failed"
    assert extract["error"]["message"] == error["message"]
    assert [s["status"] for s in job["stages"][1:]] == ["pending"] * 3
    assert job["finished_at"]


def test_cancel_stops_the_execution_and_a_second_cancel_is_409(
    gw: Gateway, acme: str, svc: Services
) -> None:
    job_id = awaiting_review(gw, acme, svc)
    response = gw.post(f"/v1/jobs/{job_id}/cancel", key=acme)
    assert response.status == 200, response.body
    job = response.json()
    assert job["status"] == "cancelled"
    assert job["error"]["code"] == "Cancelled"
    assert job["pending_approvals"] == []
    assert job["finished_at"]
    ((arn, error, _cause),) = workflows(svc).stops
    assert (arn, error) == (execution_arn(svc, job_id), "Cancelled")
    assert gw.get(f"/v1/jobs/{job_id}", key=acme).json()["status"] == "cancelled"
    again = assert_error(gw.post(f"/v1/jobs/{job_id}/cancel", key=acme), 409, "invalid_state")
    assert again["details"] == {"status": "cancelled"}


# ---- the OpenAPI document --------------------------------------------------------------------


def test_openapi_documents_the_job_views(gw: Gateway) -> None:
    doc = gw.get("/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"JobCreate", "JobApprovalBody", "JobView", "PipelineList"} <= set(schemas)
    view = json.dumps(schemas["JobView"])
    for private in ("task_token", "input_path", "result_path"):
        assert private not in view
        assert private not in json.dumps(schemas.get("AttemptView", {}))
    started = doc["paths"]["/v1/jobs"]["post"]
    assert {"200", "201", "409", "422", "503"} <= set(started["responses"])
    assert [p["name"] for p in started["parameters"] if p["in"] == "header"] == ["idempotency-key"]
