"""Fixtures shared by every test layer. Layer-specific fixtures live in each folder's conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shared.agents import AgentRegistry

if TYPE_CHECKING:
    from shared.dal.local import DeployedStack


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reaches real AWS or the real Anthropic API, whatever the developer's shell has."""
    for var in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SWITCHYARD_EFFECTS_DIR", str(tmp_path / "effects"))


@pytest.fixture(scope="session")
def registry() -> AgentRegistry:
    return AgentRegistry.from_modules([])


# ---- the CDK stack, deployed into moto (shared/dal/local.py) ---------------------------


@pytest.fixture(scope="session")
def cloud_assembly() -> Path:
    """``infra/app.py`` synthesized with its default settings for moto (Lambda package staged
    from sources only, no cdk-nag), once: ``shared.dal.local.synthesized_assembly`` keeps it
    for the session and on disk (about 8 s when ``infra/`` changed, else nothing)."""
    from shared.dal.local import synthesized_assembly

    return synthesized_assembly()


@pytest.fixture
def deployed_stack(
    cloud_assembly: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DeployedStack]:
    """The whole synthesized stack deployed into a fresh moto server on 127.0.0.1 (about 1 s),
    with ``AWS_ENDPOINT_URL`` pointing this test's clients (and its subprocesses) at it.
    Table, bucket and queue names are in ``outputs`` (``infra.constants.OUTPUT_*``)."""
    from shared.dal.local import deploy_assembly
    from tests.support.moto_server import fresh_moto_server

    with fresh_moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield deploy_assembly(cloud_assembly, endpoint_url=url)
