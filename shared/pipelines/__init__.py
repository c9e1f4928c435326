"""Pipelines: multi-stage jobs on Step Functions (definition, registry, ASL compiler)."""

from shared.pipelines.definition import (
    ANY_ERROR,
    APPROVAL_REJECTED,
    RUN_CANCELLED,
    RUN_FAILED,
    STAGE_FAILED,
    TIMEOUT,
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
    StageContext,
)
from shared.pipelines.registry import PipelineRegistry

__all__ = [
    "ANY_ERROR",
    "APPROVAL_REJECTED",
    "RUN_CANCELLED",
    "RUN_FAILED",
    "STAGE_FAILED",
    "TIMEOUT",
    "AgentStage",
    "ApprovalStage",
    "Catch",
    "ChoiceStage",
    "FunctionStage",
    "MapStage",
    "ParallelStage",
    "Pipeline",
    "PipelineRegistry",
    "Retry",
    "Stage",
    "StageContext",
]
