"""Pipelines on `make dev`: the state machines of the synthesized template, executed by
moto's Step Functions interpreter, with the worker fleet for agent stages and the pipeline
function's containers for function stages and gates. Driven only over HTTP, S3 on moto, the
local controls and the `switchyard` CLI.

- The example pipeline (`document-review`) started by an S3 upload runs extract → a map of
  agent runs → an approval gate (given with the CLI) → publish, and its summary lands in S3.
- A failing function stage shows its cause in the job.
- A worker SIGKILLed while agent stages run does not fail the job.
- An approval inside an agent stage (`incident-response`) waits while every worker is
  stopped and started again, then resumes on a new worker.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.make_dev import DevStack, kill_make_dev, start_make_dev
from tests.support.moto_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DOCUMENT = """# Quarterly operations review

## Incidents
Two outages in checkout, 41 minutes in total. Root cause: connection pool exhaustion.

## Costs
Compute spend fell 12 percent after moving batch work to Spot capacity.

## Decisions
Adopt a journal for every agent run; review again in January.
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state_dir = tmp_path_factory.mktemp("dev-pipelines")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ANTHROPIC_"))}
    env["SWITCHYARD_PORT"] = str(free_port())
    env["SWITCHYARD_EFFECTS_DIR"] = str(state_dir / "effects")
    stack = start_make_dev(state_dir, env, "--latency 0.5 --workers 2")
    yield stack
    kill_make_dev(stack)


def s3_client(dev: DevStack) -> Any:
    from shared.dal import aws_client

    outputs = dev.outputs()
    return aws_client("s3", region=outputs["Region"], endpoint_url=outputs["AwsEndpointUrl"])


def wait_for(
    what: str, probe: Callable[[], Any], *, timeout_s: float = 120.0, every_s: float = 0.5
) -> Any:
    """Poll ``probe`` (another process does the work) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def job_status(dev: DevStack, job_id: str, *statuses: str) -> Callable[[], Any]:
    def probe() -> Any:
        job = dev.ok("GET", f"/v1/jobs/{job_id}")
        return job if job["status"] in statuses else None

    return probe


def upload(dev: DevStack, key: str, body: bytes) -> str:
    bucket = dev.outputs()["InboxBucketName"]
    s3_client(dev).put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def job_of_document(dev: DevStack, key: str) -> str:
    """The job an uploaded document started: its summarizer runs carry the job's id."""

    def probe() -> str | None:
        for item in dev.ok("GET", "/v1/runs?agent=section-summarizer&limit=50")["runs"]:
            run = dev.ok("GET", f"/v1/runs/{item['run_id']}")
            job_id = run["metadata"].get("job_id")
            if job_id:
                detail = dev.ok("GET", f"/v1/jobs/{job_id}")
                if detail["input"].get("key") == key:
                    return str(job_id)
        return None

    return str(wait_for(f"the job of {key}", probe))


def stage(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in job["stages"] if s["name"] == name)


# ---- the example pipeline ------------------------------------------------------------------


def test_pipelines_are_deployed_from_the_template(dev: DevStack) -> None:
    pipelines = {p["name"]: p for p in dev.ok("GET", "/v1/pipelines")["pipelines"]}
    assert {"document-review", "incident-response"} <= set(pipelines)
    assert pipelines["document-review"]["deployed"] is True
    kinds = [s["kind"] for s in pipelines["document-review"]["stages"]]
    assert kinds == ["function", "map", "approval", "function"]


def test_an_uploaded_document_is_reviewed_and_published(dev: DevStack) -> None:
    key = f"docs/review-{time.time_ns()}.md"
    bucket = upload(dev, key, DOCUMENT.encode())
    job_id = job_of_document(dev, key)
    job = wait_for("the approval gate", job_status(dev, job_id, "awaiting_approval", "failed"))
    assert job["status"] == "awaiting_approval", job
    assert stage(job, "extract")["status"] == "succeeded"
    summarize = stage(job, "summarize-section")
    assert summarize["status"] == "succeeded"
    assert len(summarize["runs"]) == 4  # the title section and three more
    assert summarize["cost_usd"] > 0
    (gate,) = job["pending_approvals"]
    assert gate["stage"] == "review"
    assert gate["kind"] == "gate"
    assert len(gate["data"]["summaries"]) == 4
    assert "task_token" not in json.dumps(job)

    shown = dev.cli("jobs", "get", job_id)
    assert shown.returncode == 0, shown.stderr
    assert "awaiting_approval" in shown.stdout
    approved = dev.cli("jobs", "approve", job_id, "--comment", "ship it")
    assert approved.returncode == 0, approved.stderr

    done = wait_for("the job to finish", job_status(dev, job_id, "succeeded", "failed"))
    assert done["status"] == "succeeded", done
    published = done["output"]["published"]
    assert published["key"] == f"published/{key}.summary.json"
    body = json.loads(s3_client(dev).get_object(Bucket=bucket, Key=published["key"])["Body"].read())
    assert body["job_id"] == job_id
    assert body["approved_by"] == "ship it"
    assert [s["heading"] for s in body["summaries"]] == [
        "Quarterly operations review",
        "Incidents",
        "Costs",
        "Decisions",
    ]
    assert stage(done, "publish")["status"] == "succeeded"
    assert done["finished_at"]


def test_a_failing_stage_shows_its_cause_in_the_job(dev: DevStack) -> None:
    key = f"docs/empty-{time.time_ns()}.md"
    bucket = upload(dev, key, b"   \n\n  ")
    started = dev.ok(
        "POST", "/v1/jobs", {"pipeline": "document-review", "input": {"bucket": bucket, "key": key}}
    )
    job = wait_for("the job to fail", job_status(dev, started["job_id"], "failed", "succeeded"))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "StageFailed"
    assert job["error"]["stage"] == "extract"
    assert "is empty: nothing to summarize" in job["error"]["message"]
    extract = stage(job, "extract")
    assert extract["status"] == "failed"
    assert "DocumentError" in extract["error"]["message"]
    assert stage(job, "summarize-section")["status"] == "pending"


def test_a_worker_killed_during_an_agent_stage_does_not_fail_the_job(dev: DevStack) -> None:
    sections = "\n".join(f"## Part {i}\nFindings of part {i}, with figures." for i in range(10))
    key = f"docs/long-{time.time_ns()}.md"
    bucket = upload(dev, key, f"# Long report\n{sections}\n".encode())
    started = dev.ok(
        "POST", "/v1/jobs", {"pipeline": "document-review", "input": {"bucket": bucket, "key": key}}
    )
    job_id = started["job_id"]

    def running_stage_runs() -> Any:
        job = dev.ok("GET", f"/v1/jobs/{job_id}")
        attempts = stage(job, "summarize-section")["attempts"]
        return [a for a in attempts if a["status"] == "running"]

    wait_for("summarizer runs in flight", running_stage_runs, every_s=0.2)
    worker = dev.ok("GET", "/_local/workers")["workers"][0]
    os.kill(worker["pid"], signal.SIGKILL)
    job = wait_for(
        "the gate", job_status(dev, job_id, "awaiting_approval", "failed"), timeout_s=180
    )
    assert job["status"] == "awaiting_approval", job["error"]
    summarize = stage(job, "summarize-section")
    assert summarize["status"] == "succeeded"
    assert len(summarize["runs"]) == 11
    assert all(a["status"] == "succeeded" for a in summarize["attempts"])
    assert dev.ok("GET", "/_local/workers")["replaced"] >= 1
    rejected = dev.cli("jobs", "approve", job_id, "--reject", "--comment", "not this one")
    assert rejected.returncode == 0, rejected.stderr
    ended = wait_for("the rejection", job_status(dev, job_id, "failed", "succeeded"))
    assert ended["error"]["code"] == "ApprovalRejected"
    assert ended["error"]["stage"] == "review"
    assert "not this one" in ended["error"]["message"]


# ---- an approval inside an agent stage -----------------------------------------------------


def test_an_approval_survives_every_worker_stopped_and_restarted(dev: DevStack) -> None:
    started = dev.ok(
        "POST",
        "/v1/jobs",
        {"pipeline": "incident-response", "input": {"service": "checkout", "reason": "p99"}},
    )
    job_id = started["job_id"]
    job = wait_for("the run's approval", job_status(dev, job_id, "awaiting_approval", "failed"))
    (pending,) = job["pending_approvals"]
    assert pending["kind"] == "run"
    assert pending["stage"] == "remediate"
    assert pending["calls"][0]["name"] == "restart_service"

    dev.ok("POST", "/_local/workers/stop")
    assert dev.ok("GET", "/_local/workers")["workers"] == []
    # Nothing runs while the job waits: the job still waits, on no compute at all.
    still = dev.ok("GET", f"/v1/jobs/{job_id}")
    assert still["status"] == "awaiting_approval"
    restarted = dev.ok("POST", "/_local/workers/start")["workers"]
    assert restarted

    watched = dev.cli("jobs", "approve", job_id, "--comment", "restart it")
    assert watched.returncode == 0, watched.stderr
    done = wait_for("the job to finish", job_status(dev, job_id, "succeeded", "failed"))
    assert done["status"] == "succeeded", done
    remediate = stage(done, "remediate")
    (run_id,) = remediate["runs"]
    run = dev.ok("GET", f"/v1/runs/{run_id}")
    # Only the restarted workers were alive after the approval: one of them resumed it.
    assert run["status"] == "succeeded"
    assert remediate["status"] == "succeeded"
    assert done["output"]["remediation"]
    assert done["output"]["note"]["service"] == "checkout"
