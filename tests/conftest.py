"""Fixtures shared by every test layer. Layer-specific fixtures live in each folder's conftest."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.agents import AgentRegistry


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
