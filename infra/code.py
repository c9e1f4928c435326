"""Where the stack gets its Lambda code, runtime and architecture.

The deployment package is built by ``infra/bundling.py`` (functions/ + shared/ + agents/ and
the locked dependencies for CPython 3.12 on arm64, without Docker). The functions must use
the runtime and architecture the package was built for, so both come from there too.
"""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from infra import bundling

LAMBDA_RUNTIME: lambda_.Runtime = bundling.LAMBDA_RUNTIME
LAMBDA_ARCHITECTURE: lambda_.Architecture = bundling.LAMBDA_ARCHITECTURE


def lambda_code(function_dir: str, *, scope: IConstruct | None = None) -> lambda_.Code:
    """The code asset of ``functions/<function_dir>`` (every function shares one package;
    its handler string picks the entry point). ``scope`` lets the ``switchyard:bundle``
    context choose between the full package and sources only (unit synths)."""
    return bundling.lambda_code(function_dir, scope=scope)


__all__ = ["LAMBDA_ARCHITECTURE", "LAMBDA_RUNTIME", "lambda_code"]
