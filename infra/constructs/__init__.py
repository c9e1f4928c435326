"""One construct per unit of the stack (storage, queues, auth, api, workers, triggers,
monitoring), plus the Lambda function pattern they share (``function.py``).

Constructs create resources and expose them; ``infra/stack.py`` wires them together (the
environment each process reads, and every IAM grant).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

NAG_PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Accept a cdk-nag AwsSolutions finding on ``scope`` (and below) with a written reason.

    ``rule`` is the rule id, optionally with a finding: ``"IAM5[Resource::*]"``.
    """
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    Validations.of(scope).acknowledge(
        Acknowledgment(id=f"{NAG_PACK}::{NAG_PACK}-{rule}", reason=reason)
    )


__all__ = ["NAG_PACK", "acknowledge"]
