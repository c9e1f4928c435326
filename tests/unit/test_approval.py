"""Human-in-the-loop: a requires_approval tool pauses the run until someone decides."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.errors import RuntimeStateError
from shared.logic.runs import ApprovalDecision, decide_approval
from shared.models.events import EventType
from shared.models.journal import RecordKind
from shared.models.run import RunStatus
from tests.support.runtime_kit import Harness, Toolbox, assert_journal_consistent, kinds
from tests.support.scripted_provider import ScriptedProvider, Turn, plan

DEPLOY = {"service": "checkout", "version": "1.2.3"}
STEP1 = [("lookup", {"query": "status"}), ("deploy", DEPLOY)]


async def _paused(toolbox: Toolbox, *turns: Turn) -> tuple[Harness, ScriptedProvider, str]:
    h = Harness([toolbox.agent("lookup", "deploy")])
    provider = ScriptedProvider(responder=plan(*(turns or (STEP1, "deployed"))))
    run_id = await h.submit()
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.AWAITING_APPROVAL
    return h, provider, run_id


async def test_requires_approval_pauses_the_run(toolbox: Toolbox) -> None:
    h, provider, run_id = await _paused(toolbox)
    run = await h.journal.get_run(run_id)

    assert run.pending_approval is not None
    requested_at = run.pending_approval.pop("requested_at")
    assert datetime.fromisoformat(requested_at) <= datetime.now(UTC)
    assert run.pending_approval == {
        "step": 1,
        "calls": [{"tool_use_id": "toolu_01_1", "name": "deploy", "input": DEPLOY}],
        "decision": None,
    }
    assert run.steps == 1
    assert toolbox.invocations == []  # not even the read-only call of the same batch
    assert provider.calls == 1
    # The lease is released: anyone may take the run now.
    probe = await h.journal.acquire_lease(run_id, "probe", 1.0)
    await h.journal.release_lease(probe)

    records = await h.records(run_id)
    assert kinds(records)[-1] is RecordKind.APPROVAL
    assert_journal_consistent(records, run)
    events = await h.events(run_id)
    requested, status = events[-2:]
    assert requested.type is EventType.APPROVAL_REQUESTED
    assert requested.data["calls"] == run.pending_approval["calls"]
    assert status.type is EventType.RUN_STATUS
    assert status.data["status"] == "awaiting_approval"

    # Without a decision, executing again is a no-op.
    writes = h.journal.writes
    again = await h.runtime(provider).execute(run_id)
    assert again.status is RunStatus.AWAITING_APPROVAL
    assert provider.calls == 1
    assert h.journal.writes == writes


async def test_approve_runs_the_tool_once(toolbox: Toolbox) -> None:
    h, provider, run_id = await _paused(toolbox)
    queued = await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    assert queued.status is RunStatus.QUEUED
    assert queued.pending_approval is not None
    assert queued.pending_approval["decision"] == {"decision": "approve"}

    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert run.output == "deployed"
    assert run.pending_approval is None
    [deploy] = toolbox.calls("deploy")
    assert deploy.input == DEPLOY
    assert deploy.ctx.idempotency_key == f"{run_id}:1:toolu_01_1"
    assert len(toolbox.calls("lookup")) == 1
    # The model saw both results, in call order, neither an error.
    blocks = provider.requests[1].messages[-1]["content"]
    assert [b["tool_use_id"] for b in blocks] == ["toolu_01_0", "toolu_01_1"]
    assert blocks[1]["content"] == '{"deployed":"checkout","version":"1.2.3"}'
    assert not any(b.get("is_error") for b in blocks)

    decided = [e for e in await h.events(run_id) if e.type is EventType.APPROVAL_DECIDED]
    assert len(decided) == 1
    assert decided[0].data["decision"] == "approve"
    assert decided[0].data["tool_use_ids"] == ["toolu_01_1"]
    assert_journal_consistent(await h.records(run_id), run)

    # Finished means finished: nothing runs twice.
    await h.runtime(provider).execute(run_id)
    assert len(toolbox.calls("deploy")) == 1
    assert provider.calls == 2


async def test_approve_with_edited_input(toolbox: Toolbox) -> None:
    h, provider, run_id = await _paused(toolbox)
    edited = {"service": "checkout", "version": "1.2.4"}
    decision = ApprovalDecision(decision="approve", comment="use the patch", edited_input=edited)
    await decide_approval(h.journal, run_id, decision)

    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    [deploy] = toolbox.calls("deploy")
    assert deploy.input == edited
    result = provider.requests[1].messages[-1]["content"][1]
    assert result["content"] == '{"deployed":"checkout","version":"1.2.4"}'


async def test_reject_gives_the_model_an_error_result_and_continues(toolbox: Toolbox) -> None:
    h, provider, run_id = await _paused(toolbox)
    decision = ApprovalDecision(decision="reject", comment="not during peak hours")
    await decide_approval(h.journal, run_id, decision)

    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert toolbox.calls("deploy") == []
    assert len(toolbox.calls("lookup")) == 1
    lookup_block, deploy_block = provider.requests[1].messages[-1]["content"]
    assert "is_error" not in lookup_block
    assert deploy_block["is_error"] is True
    assert deploy_block["content"] == "The user rejected this tool call: not during peak hours"
    decided = [e for e in await h.events(run_id) if e.type is EventType.APPROVAL_DECIDED]
    assert decided[0].data["decision"] == "reject"
    assert decided[0].data["comment"] == "not during peak hours"


async def test_reject_without_comment(toolbox: Toolbox) -> None:
    h, provider, run_id = await _paused(toolbox)
    await decide_approval(h.journal, run_id, ApprovalDecision(decision="reject"))
    await h.runtime(provider).execute(run_id)
    block = provider.requests[1].messages[-1]["content"][1]
    assert block["content"] == "The user rejected this tool call."
    assert block["is_error"] is True


async def test_decision_on_a_run_not_awaiting_approval_raises(toolbox: Toolbox) -> None:
    h = Harness([toolbox.agent("lookup", "deploy")])
    run_id = await h.submit()
    approve = ApprovalDecision(decision="approve")
    with pytest.raises(RuntimeStateError, match="not awaiting approval"):
        await decide_approval(h.journal, run_id, approve)  # queued

    await h.runtime(ScriptedProvider(responder=plan("done"))).execute(run_id)
    with pytest.raises(RuntimeStateError) as info:
        await decide_approval(h.journal, run_id, approve)  # succeeded
    assert info.value.details == {"status": "succeeded"}


async def test_a_second_decision_raises(toolbox: Toolbox) -> None:
    h, _, run_id = await _paused(toolbox)
    await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    with pytest.raises(RuntimeStateError):
        await decide_approval(h.journal, run_id, ApprovalDecision(decision="reject"))
    stored = await h.journal.get_run(run_id)
    assert stored.pending_approval is not None
    assert stored.pending_approval["decision"]["decision"] == "approve"


async def test_edited_input_needs_exactly_one_pending_call(toolbox: Toolbox) -> None:
    two = [("deploy", DEPLOY), ("deploy", {"service": "search", "version": "2"})]
    h, _, run_id = await _paused(toolbox, two, "done")
    run = await h.journal.get_run(run_id)
    assert run.pending_approval is not None
    assert len(run.pending_approval["calls"]) == 2
    decision = ApprovalDecision(decision="approve", edited_input=DEPLOY)
    with pytest.raises(RuntimeStateError, match="exactly one"):
        await decide_approval(h.journal, run_id, decision)


async def test_each_approval_pauses_again(toolbox: Toolbox) -> None:
    second = {"service": "search", "version": "9"}
    h, provider, run_id = await _paused(toolbox, [("deploy", DEPLOY)], [("deploy", second)], "ok")
    await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert run.pending_approval is not None
    assert run.pending_approval["step"] == 2
    assert run.pending_approval["calls"][0]["input"] == second
    assert [c.input for c in toolbox.calls("deploy")] == [DEPLOY]

    await decide_approval(h.journal, run_id, ApprovalDecision(decision="approve"))
    run = await h.runtime(provider).execute(run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert [c.input for c in toolbox.calls("deploy")] == [DEPLOY, second]
    assert provider.calls == 3
    assert_journal_consistent(await h.records(run_id), run)
