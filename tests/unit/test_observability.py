"""Structured logs and metrics from the runtime's observer."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest

from shared.agents import AgentRegistry
from shared.journal import MemoryJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.observability import PowertoolsObserver, get_logger, register_secret
from shared.providers.offline import OfflineProvider
from shared.runtime import AgentRuntime


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_every_run_line_carries_its_own_run_fields_under_concurrency(
    registry: AgentRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    observer = PowertoolsObserver(f"test-{uuid.uuid4().hex[:6]}")
    journal = MemoryJournal()
    runtime = AgentRuntime(journal, OfflineProvider(latency_s=0.01), registry, observer=observer)
    runs = [
        await submit_run(journal, registry, SubmitRun(agent="researcher", input=f"q{i}"))
        for i in range(3)
    ]
    done = await asyncio.gather(*(runtime.execute(r.run_id) for r in runs))
    lines = _lines(capsys.readouterr().out)
    logs = [line for line in lines if "message" in line]
    steps = Counter(line["run_id"] for line in logs if line["message"] == "step completed")
    assert steps == {r.run_id: r.steps for r in done}  # 4 each, none attributed to another run
    for line in logs:
        assert {"run_id", "tenant", "agent", "step"} <= set(line)
    stopped = [line for line in logs if line["message"] == "run stopped"]
    assert sorted(str(line["run_id"]) for line in stopped) == sorted(r.run_id for r in runs)
    metrics = [line for line in lines if "_aws" in line]
    names = Counter(
        m["Name"]
        for line in metrics
        for d in line["_aws"]["CloudWatchMetrics"]
        for m in d["Metrics"]
    )
    assert names["RunsStarted"] == 3
    assert names["RunsSucceeded"] == 3
    assert names["Steps"] == 12


def test_secrets_and_key_shaped_strings_never_reach_a_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = get_logger(f"test-{uuid.uuid4().hex[:6]}")
    register_secret("hunter2-very-secret")
    key = "sy_0123456789abcdef_" + "A" * 43
    logger.info("calling with hunter2-very-secret", extra={"auth": f"Bearer {key}"})
    logger.info("args %s", "sk-ant-api03-abcdefghijkl")
    out = capsys.readouterr().out
    assert "hunter2-very-secret" not in out
    assert key not in out
    assert "sk-ant-api03-abcdefghijkl" not in out
    assert out.count("[REDACTED]") == 3


def test_exception_tracebacks_are_scrubbed(capsys: pytest.CaptureFixture[str]) -> None:
    logger = get_logger(f"test-{uuid.uuid4().hex[:6]}")
    try:
        raise RuntimeError("provider said: invalid key sk-ant-api03-zzzzzzzzzzzz")
    except RuntimeError:
        logger.exception("call failed")
    out = capsys.readouterr().out
    line = json.loads(out.strip().splitlines()[-1])
    assert "sk-ant-api03-zzzzzzzzzzzz" not in out
    assert line["exception_name"] == "RuntimeError"
    assert "[REDACTED]" in line["exception"]
    assert "Traceback" in line["exception"]
