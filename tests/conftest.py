"""Fixtures shared by every test layer. Layer-specific fixtures live in each folder's conftest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shared.agents import AgentRegistry

if TYPE_CHECKING:
    from tests.support.cfn_moto import DeployedStack


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


# ---- the CDK stack, deployed into moto (tests/support/cfn_moto.py) ---------------------------


@pytest.fixture(scope="session")
def cloud_assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``infra/app.py`` synthesized once per session with its default settings (Lambda package
    staged from sources only, no cdk-nag): about 8 s the first time a session asks for it."""
    from tests.support.cfn_moto import synth_app

    return synth_app(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def deployed_stack(
    cloud_assembly: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DeployedStack]:
    """The synthesized stack deployed into a fresh moto server on 127.0.0.1 (about 1 s), with
    ``AWS_ENDPOINT_URL`` pointing this test's clients (and its subprocesses) at it. Table,
    bucket and queue names are in ``outputs`` (``infra.constants.OUTPUT_*``). Moto keeps its
    state per process, not per server, so the state is reset before and after."""
    from tests.support.cfn_moto import deploy_assembly, reset_moto
    from tests.support.moto_server import moto_server_url

    with moto_server_url() as url:
        reset_moto(url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        try:
            yield deploy_assembly(cloud_assembly, endpoint_url=url)
        finally:
            reset_moto(url)
