"""Unit-test fixtures: everything in memory, deterministic, no network."""

from __future__ import annotations

import pytest

from tests.support.runtime_kit import Toolbox


@pytest.fixture
def toolbox() -> Toolbox:
    return Toolbox()
