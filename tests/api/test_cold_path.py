"""The async submit path never imports the Anthropic SDK (it costs ~0.9 s of cold start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import functions.api.handler as entry
from devstack.apigw import api_event

imported_at_import = "anthropic" in sys.modules
event = api_event(
    "POST", "/v1/runs",
    headers={"content-type": "application/json"},
    body=json.dumps({"agent": "researcher", "input": "q"}),
    authorizer={"tenant": "acme", "key_id": "k"},
)
status = entry.handler(event, None)["statusCode"]
imported_after_submit = "anthropic" in sys.modules

# The check can see an import: building the provider (no network) does import the SDK.
from functions.api.app import get_services
get_services().make_provider()
print(json.dumps({
    "status": status,
    "imported_at_import": imported_at_import,
    "imported_after_submit": imported_after_submit,
    "imported_after_provider": "anthropic" in sys.modules,
}))
"""


def test_async_submit_leaves_anthropic_unimported() -> None:
    env = {
        **os.environ,
        "SWITCHYARD_BACKEND": "memory",
        # A key makes the provider the real SDK: the submit must still not touch it.
        "ANTHROPIC_API_KEY": "sk-ant-dummy-not-used-0000000000",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("ANTHROPIC_BASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "status": 202,
        "imported_at_import": False,
        "imported_after_submit": False,
        "imported_after_provider": True,
    }
