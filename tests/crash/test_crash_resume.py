"""SIGKILL a process running a 30-step run at random points, resume it in a new one each time.

The journal is DynamoDB + S3 on a moto server, shared by the processes over HTTP. Kill points
are chosen from the worker's progress lines (some at random, some right after a side effect
was applied and before its result could be journaled), never from the clock. Each journal
record carries the lease fence of the process that wrote it, and each process says which fence
it got, so the test can tell which process journaled what and prove:

- the run finishes, every step journaled exactly once;
- no journaled model call is made again, no journaled tool result is executed again;
- every side-effecting call keeps one idempotency key across its retries, and the effects,
  deduplicated by key, number exactly one per call.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.effects import effects_dir
from shared.agents import AgentRegistry
from shared.config import Settings
from shared.journal.dynamodb import DynamoJournal
from shared.logic.runs import SubmitRun, submit_run
from shared.models.journal import JournalRecord, RecordKind
from shared.models.run import RunStatus
from tests.support.crash_worker import crash_agent
from tests.support.moto_server import template_on_moto_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 30
EFFECT_EVERY = 3
RANDOM_KILLS = 4
EFFECT_KILLS = 3
SEED = int(os.environ.get("SWITCHYARD_CRASH_SEED", "20261121"))


@dataclass
class Generation:
    lines: list[str] = field(default_factory=list)
    fence: int | None = None
    killed: bool = False

    def ingest(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith("lease "):
            self.fence = int(line.split()[1])


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    # The stack's table and bucket, deployed from the synthesized template.
    with template_on_moto_server() as deployed:
        settings = deployed.settings()
        env = {
            "AWS_ENDPOINT_URL": str(deployed.endpoint_url),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "SWITCHYARD_TABLE": settings.table_name,
            "SWITCHYARD_BUCKET": settings.bucket_name,
            "SWITCHYARD_EFFECTS_DIR": str(tmp_path / "effects"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env


def _spawn(run_id: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.crash_worker",
            "--run-id",
            run_id,
            "--steps",
            str(STEPS),
            "--effect-every",
            str(EFFECT_EVERY),
        ],
        cwd=ROOT,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


KillRule = Callable[[Generation, str], bool]


def _run_until(proc: subprocess.Popen[str], gen: Generation, should_kill: KillRule | None) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.strip()
        gen.ingest(line)
        if should_kill is not None and should_kill(gen, line):
            proc.send_signal(signal.SIGKILL)
            gen.killed = True
            break
    # Whatever it printed before dying is still in the pipe.
    for raw in proc.stdout:
        gen.ingest(raw.strip())
    proc.wait(timeout=60)


def test_sigkill_at_random_points_and_resume(stack: dict[str, str]) -> None:
    journal = DynamoJournal.from_settings(Settings.from_env())
    registry = AgentRegistry([crash_agent(STEPS)])
    run = asyncio.run(submit_run(journal, registry, SubmitRun(agent="loop", input="go")))
    rng = random.Random(SEED)
    plan = ["random"] * RANDOM_KILLS + ["effect"] * EFFECT_KILLS
    rng.shuffle(plan)

    generations: list[Generation] = []
    for kind in plan:
        gen = Generation()
        should_kill: KillRule
        if kind == "random":
            budget = rng.randint(4, 24)

            def kill_random(g: Generation, line: str, budget: int = budget) -> bool:
                progress = [x for x in g.lines if not x.startswith("lease ")]
                return g.fence is not None and len(progress) >= budget

            should_kill = kill_random
        else:
            nth = rng.randint(1, 2)

            def kill_after_effect(g: Generation, line: str, nth: int = nth) -> bool:
                applied = [x for x in g.lines if x.startswith("effect-applied ")]
                return line.startswith("effect-applied ") and len(applied) >= nth

            should_kill = kill_after_effect
        proc = _spawn(run.run_id, stack)
        _run_until(proc, gen, should_kill)
        generations.append(gen)
        if not gen.killed:
            break  # it finished before reaching its kill point

    final = Generation()
    proc = _spawn(run.run_id, stack)
    _run_until(proc, final, None)
    assert proc.returncode == 0, final.lines[-5:]
    generations.append(final)

    killed = [g for g in generations if g.killed]
    assert len(killed) >= RANDOM_KILLS + EFFECT_KILLS - 1, f"seed {SEED}: too few kills landed"
    assert any("finished succeeded" in line for g in generations for line in g.lines)

    stored = asyncio.run(journal.get_run(run.run_id))
    assert stored.status is RunStatus.SUCCEEDED
    assert stored.steps == STEPS + 1
    records = asyncio.run(journal.records(run.run_id))
    _assert_journal_well_formed(records)
    _assert_nothing_journaled_was_repeated(records, generations)
    _assert_effects_exactly_once(run.run_id, records, generations)


def _assert_journal_well_formed(records: list[JournalRecord]) -> None:
    seqs = [r.seq for r in records]
    assert seqs[0] == 1
    for before, after in itertools.pairwise(records):
        assert after.seq == before.next_seq, "records must be contiguous"
    steps = [r.step for r in records if r.kind is RecordKind.MODEL]
    assert steps == list(range(1, STEPS + 2)), "each step journaled exactly once, in order"
    results = [res.tool_use_id for r in records for res in r.tool_results]
    assert len(results) == len(set(results)) == STEPS, "each tool result journaled once"


def _fences(generations: list[Generation]) -> dict[int, Generation]:
    by_fence = {g.fence: g for g in generations if g.fence is not None}
    return {f: g for f, g in by_fence.items() if f is not None}


def _count(gen: Generation, prefix: str) -> int:
    return sum(1 for line in gen.lines if line == prefix or line.startswith(prefix + " "))


def _assert_nothing_journaled_was_repeated(
    records: list[JournalRecord], generations: list[Generation]
) -> None:
    fences = _fences(generations)
    for record in records:
        if record.kind is RecordKind.MODEL:
            writer = fences[record.fence]
            assert _count(writer, f"model-start {record.step}") == 1
            later = [g for f, g in fences.items() if f > record.fence]
            assert all(_count(g, f"model-start {record.step}") == 0 for g in later), (
                f"journaled model call of step {record.step} was made again"
            )
        for result in record.tool_results:
            later = [g for f, g in fences.items() if f > record.fence]
            assert all(_count(g, f"tool-start {result.tool_use_id}") == 0 for g in later), (
                f"journaled result of {result.tool_use_id} was executed again"
            )


def _assert_effects_exactly_once(
    run_id: str, records: list[JournalRecord], generations: list[Generation]
) -> None:
    calls = {
        (r.step, block["id"])
        for r in records
        if r.kind is RecordKind.MODEL and r.response is not None
        for block in r.response["content"]
        if block.get("type") == "tool_use" and block["name"] == "record_effect"
    }
    assert len(calls) == STEPS // EFFECT_EVERY
    keys_seen: dict[str, set[str]] = defaultdict(set)
    applied: dict[str, int] = defaultdict(int)
    attempts: dict[str, int] = defaultdict(int)
    for gen in generations:
        for line in gen.lines:
            parts = line.split()
            if parts[0] == "tool-start":
                keys_seen[parts[1]].add(parts[2])
                attempts[parts[1]] += 1
            if parts[0] == "effect-applied":
                applied[parts[2]] += int(parts[3])
    expected_keys = {f"{run_id}:{step}:{tool_use_id}" for step, tool_use_id in calls}
    for step, tool_use_id in calls:
        assert keys_seen[tool_use_id] == {f"{run_id}:{step}:{tool_use_id}"}, (
            "a side-effecting call changed its idempotency key across retries"
        )
    assert all(applied[key] == 1 for key in expected_keys), applied
    files = list(effects_dir().glob("*.json"))
    assert len(files) == len(expected_keys), "effects deduplicated by key: one per call"
    retried = [tid for _, tid in calls if attempts[tid] > 1]
    assert retried, "at least one side effect must have been retried after a kill"
