"""The pinned cdk CLI (package.json) synthesizes the app offline, as `make synth` does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.constants import STACK_NAME_PREFIX

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_pinned_cli_synthesizes_offline(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    assert npx is not None, "node and npm are required (the Makefile installs the CLI)"
    assert (ROOT / "node_modules" / "aws-cdk").is_dir(), "run `make test` (it runs npm ci)"
    version = subprocess.run(
        [npx, "--no", "--", "cdk", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert version.stdout.startswith(pinned)
    out = tmp_path / "cdk.out"
    done = subprocess.run(
        [npx, "--no", "--", "cdk", "synth", "--quiet", "--output", str(out)],
        cwd=ROOT,
        env={
            **os.environ,
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            "CDK_DISABLE_CLI_TELEMETRY": "true",
            "SWITCHYARD_BUNDLE": "skip",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    templates = list(out.glob(f"{STACK_NAME_PREFIX}*.template.json"))
    assert len(templates) == 1
    resources = json.loads(templates[0].read_text())["Resources"]
    assert any(r["Type"] == "AWS::DynamoDB::Table" for r in resources.values())
