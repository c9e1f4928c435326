"""A user's pipeline module, as ``agent_modules`` lists it (conftest ``OTHER_SETTINGS``): one
pipeline of a function stage and an approval gate, no agent stage, so its state machine gets no
grant on the runs queue. The synth imports it; the functions never run it."""

from __future__ import annotations

from typing import Any

from shared.pipelines import ApprovalStage, FunctionStage, Pipeline, StageContext


def stamp(data: Any, ctx: StageContext) -> dict[str, Any]:
    return {"job_id": ctx.job_id}


stamp_and_approve = Pipeline(
    name="stamp-and-approve",
    description="Stamp the input, then wait for a reviewer.",
    stages=(
        FunctionStage(name="stamp", fn=stamp, result_path="$.stamp", timeout_s=20),
        ApprovalStage(name="sign-off", prompt="Keep the stamp?", result_path="$.review"),
    ),
)
