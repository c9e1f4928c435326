"""Compile a pipeline to Amazon States Language (a standard workflow).

The CDK pipelines construct calls :func:`compile_pipeline` with the deployed resources (CDK
tokens are plain strings here) and serializes the result into the state machine.

The execution input is ``{"job_id", "tenant", "pipeline", "input"}``; the first state keeps
``input`` as the data. Every task state passes ``$`` (the whole data) with the job context
from ``$$.Execution.Input``, and the code behind it applies the stage's ``input_path`` and
``result_path`` and answers with the whole data after the stage (``shared/pipelines/paths``),
so the data flows the same way whoever runs the stage.

- Agent stage: a one-branch ``Parallel`` (so Retry and Catch see the stage's own input) of
  ``dispatch`` (SQS ``sendMessage.waitForTaskToken`` to the runs queue, HeartbeatSeconds:
  the worker heartbeats while the run executes) → ``check`` (did the run pause for
  approval?) → ``wait`` (a new token the worker attaches to the paused run; no heartbeat, no
  compute, up to the approval timeout) → ``check`` … → ``done`` (the data after the stage).
- Function stage: a Lambda task on the pipeline function (``action: function``).
- Approval gate: ``lambda:invoke.waitForTaskToken`` on the pipeline function
  (``action: gate``), which records the token and returns; the API answers it.
- Map, parallel, choice: the ASL states of the same names.

Every task state has an explicit TimeoutSeconds (moto's interpreter defaults to 60 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.pipelines.definition import (
    AgentStage,
    ApprovalStage,
    Catch,
    ChoiceStage,
    FunctionStage,
    MapStage,
    ParallelStage,
    Pipeline,
    Retry,
    Stage,
)

START_STATE = "start"
SQS_WAIT = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
LAMBDA_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
DEFAULT_AGENT_TIMEOUT_S = 3600
# Heartbeat deadline of an agent stage: several lease periods, so a killed worker's run is
# resumed by another worker (lease expiry + message visibility) before Step Functions gives up.
MIN_HEARTBEAT_S = 60
HEARTBEAT_LEASES = 4
# Lambda's own ceiling, plus a little for the invoke.
FUNCTION_TIMEOUT_MARGIN_S = 10
# A year: the longest a standard workflow may run.
MAX_EXECUTION_S = 31_536_000


@dataclass(frozen=True)
class Resources:
    """What the compiled states point at."""

    runs_queue_url: str
    stage_function_arn: str
    lease_ttl_s: float = 30.0


def compile_pipeline(pipeline: Pipeline, resources: Resources) -> dict[str, Any]:
    compiler = _Compiler(pipeline, resources)
    start, states = compiler.chain(pipeline.stages, None)
    root: dict[str, Any] = {
        "Comment": f"Switchyard pipeline {pipeline.name}"
        + (f": {pipeline.description}" if pipeline.description else ""),
        "StartAt": START_STATE,
        "TimeoutSeconds": pipeline.timeout_s or MAX_EXECUTION_S,
        "States": {
            START_STATE: {"Type": "Pass", "InputPath": "$.input", "Next": start},
            **states,
        },
    }
    return root


def dispatch_state(stage: str) -> str:
    """The task state whose token an agent stage's run answers first."""
    return f"{stage}.dispatch"


def wait_state(stage: str) -> str:
    return f"{stage}.wait"


class _Compiler:
    def __init__(self, pipeline: Pipeline, resources: Resources) -> None:
        self.pipeline = pipeline
        self.res = resources

    # ---- chains -----------------------------------------------------------------------------

    def chain(self, stages: Sequence[Stage], next_state: str | None) -> tuple[str, dict[str, Any]]:
        """States for ``stages`` in order, the last one going to ``next_state`` (None: end)."""
        states: dict[str, Any] = {}
        following = next_state
        for stage in reversed(stages):
            states.update(self.stage(stage, following))
            following = stage.name
        assert following is not None
        return following, states

    def stage(self, stage: Stage, next_state: str | None) -> dict[str, Any]:
        if isinstance(stage, AgentStage):
            return self.agent(stage, next_state)
        if isinstance(stage, FunctionStage):
            return self.function(stage, next_state)
        if isinstance(stage, ApprovalStage):
            return self.approval(stage, next_state)
        if isinstance(stage, MapStage):
            return self.map(stage, next_state)
        if isinstance(stage, ParallelStage):
            return self.parallel(stage, next_state)
        return self.choice(stage, next_state)

    # ---- stages -----------------------------------------------------------------------------

    def _context(self, stage: Stage) -> dict[str, Any]:
        return {
            "job_id.$": "$$.Execution.Input.job_id",
            "tenant.$": "$$.Execution.Input.tenant",
            "pipeline": self.pipeline.name,
            "stage": stage.name,
            "data.$": "$",
        }

    def agent(self, stage: AgentStage, next_state: str | None) -> dict[str, Any]:
        heartbeat = stage.heartbeat_s or max(
            MIN_HEARTBEAT_S, int(HEARTBEAT_LEASES * self.res.lease_ttl_s)
        )
        timeout = stage.timeout_s or DEFAULT_AGENT_TIMEOUT_S
        dispatch, check, wait, finish = (
            dispatch_state(stage.name),
            f"{stage.name}.check",
            wait_state(stage.name),
            f"{stage.name}.done",
        )
        branch = {
            "StartAt": dispatch,
            "States": {
                dispatch: {
                    "Type": "Task",
                    "Resource": SQS_WAIT,
                    "Parameters": {
                        "QueueUrl": self.res.runs_queue_url,
                        "MessageBody": {
                            "task_token.$": "$$.Task.Token",
                            "stage": {**self._context(stage), "heartbeat_s": heartbeat},
                        },
                    },
                    "HeartbeatSeconds": heartbeat,
                    "TimeoutSeconds": max(timeout, heartbeat + 1),
                    "Next": check,
                },
                check: {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.paused", "IsPresent": True, "Next": wait}],
                    "Default": finish,
                },
                wait: {
                    "Type": "Task",
                    "Resource": SQS_WAIT,
                    "Parameters": {
                        "QueueUrl": self.res.runs_queue_url,
                        "MessageBody": {
                            "task_token.$": "$$.Task.Token",
                            "run_id.$": "$.paused.run_id",
                            "resume": True,
                        },
                    },
                    "TimeoutSeconds": stage.approval_timeout_s + timeout,
                    "Next": check,
                },
                finish: {"Type": "Pass", "OutputPath": "$.done", "End": True},
            },
        }
        state: dict[str, Any] = {
            "Type": "Parallel",
            "Comment": f"agent {stage.agent}",
            "Branches": [branch],
            "OutputPath": "$[0]",
        }
        return self._finish(stage, state, next_state)

    def function(self, stage: FunctionStage, next_state: str | None) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": "function stage",
            "Resource": self.res.stage_function_arn,
            "Parameters": {"action": "function", **self._context(stage)},
            "TimeoutSeconds": stage.timeout_s + FUNCTION_TIMEOUT_MARGIN_S,
        }
        return self._finish(stage, state, next_state)

    def approval(self, stage: ApprovalStage, next_state: str | None) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Type": "Task",
            "Comment": "approval gate",
            "Resource": LAMBDA_WAIT,
            "Parameters": {
                "FunctionName": self.res.stage_function_arn,
                "Payload": {
                    "action": "gate",
                    "task_token.$": "$$.Task.Token",
                    **self._context(stage),
                },
            },
            "TimeoutSeconds": stage.timeout_s,
        }
        return self._finish(stage, state, next_state)

    def map(self, stage: MapStage, next_state: str | None) -> dict[str, Any]:
        start, states = self.chain(stage.stages, None)
        state: dict[str, Any] = {
            "Type": "Map",
            "InputPath": stage.input_path,
            "ItemsPath": stage.items_path,
            "MaxConcurrency": stage.max_concurrency,
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": start,
                "States": states,
            },
            "ResultPath": stage.result_path,
        }
        return self._finish(stage, state, next_state)

    def parallel(self, stage: ParallelStage, next_state: str | None) -> dict[str, Any]:
        names = list(stage.branches)
        branches = []
        for name in names:
            start, states = self.chain(stage.branches[name], None)
            branches.append({"StartAt": start, "States": states})
        state: dict[str, Any] = {
            "Type": "Parallel",
            "InputPath": stage.input_path,
            "Branches": branches,
            "ResultSelector": {f"{name}.$": f"$[{i}]" for i, name in enumerate(names)},
            "ResultPath": stage.result_path,
        }
        return self._finish(stage, state, next_state)

    def choice(self, stage: ChoiceStage, next_state: str | None) -> dict[str, Any]:
        states: dict[str, Any] = {}
        # A Choice cannot end an execution: a pipeline that ends on one goes to a Succeed.
        after = next_state or f"{stage.name}.end"
        if next_state is None:
            states[after] = {"Type": "Succeed"}
        choices = []
        for value, stages in stage.cases.items():
            start, branch = self.chain(stages, after)
            states.update(branch)
            choices.append({"Variable": stage.on, "StringEquals": value, "Next": start})
        default = after
        if stage.default:
            default, branch = self.chain(stage.default, after)
            states.update(branch)
        states[stage.name] = {"Type": "Choice", "Choices": choices, "Default": default}
        return states

    # ---- retry, catch, next -----------------------------------------------------------------

    def _finish(
        self, stage: Stage, state: dict[str, Any], next_state: str | None
    ) -> dict[str, Any]:
        states: dict[str, Any] = {}
        if stage.retry:
            state["Retry"] = [_retry(r) for r in stage.retry]
        if stage.catch is not None:
            catch_next, fallback = self._catch(stage, stage.catch, next_state)
            states.update(fallback)
            state["Catch"] = [
                {
                    "ErrorEquals": list(stage.catch.errors),
                    "ResultPath": stage.catch.result_path,
                    "Next": catch_next,
                }
            ]
        if next_state is None:
            state["End"] = True
        else:
            state["Next"] = next_state
        states[stage.name] = state
        return states

    def _catch(
        self, stage: Stage, catch: Catch, next_state: str | None
    ) -> tuple[str, dict[str, Any]]:
        if catch.then:
            return self.chain(catch.then, next_state)
        if next_state is not None:
            return next_state, {}
        end = f"{stage.name}.caught"
        return end, {end: {"Type": "Succeed"}}


def _retry(retry: Retry) -> dict[str, Any]:
    return {
        "ErrorEquals": list(retry.errors),
        "MaxAttempts": retry.max_attempts,
        "IntervalSeconds": retry.interval_s,
        "BackoffRate": retry.backoff_rate,
    }
