"""Function containers: one invocation at a time per container, more containers on demand
up to the function's concurrency, the function's own environment, errors and crashes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import ContainerPool, FunctionError, LocalFunctions
from devstack.topology import LocalFunction

ECHO = LocalFunction(
    logical_id="EchoFunction",
    handler="tests.support.echo_function.handler",
    environment={"ECHO_SETTING": "from-template"},
)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ContainerPool]:
    env = {**os.environ, **ECHO.environment}
    created = ContainerPool(ECHO, env, tmp_path / "echo.log", concurrency=2)
    yield created
    created.stop()


def test_a_warm_container_is_reused(pool: ContainerPool) -> None:
    first = pool.invoke({"n": 1})
    second = pool.invoke({"n": 2})
    assert (first["n"], second["n"]) == (1, 2)
    assert first["pid"] == second["pid"]
    assert first["request_id"] != second["request_id"]
    assert pool.cold_starts == 1


def test_concurrent_invocations_get_containers_of_their_own(
    pool: ContainerPool, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    answers: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda n=n: answers.append(pool.invoke({"n": n, "gate": str(gate)}))
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.start()
    # Both are inside a container (blocked on the gate) once two containers exist and are busy.
    while pool.describe()["containers"] < 2:
        threading.Event().wait(0.01)
    gate.touch()
    for thread in threads:
        thread.join(30)
    assert sorted(a["n"] for a in answers) == [1, 2]
    assert len({a["pid"] for a in answers}) == 2
    assert pool.cold_starts == 2


def test_function_output_goes_to_its_log_not_the_protocol(
    pool: ContainerPool, tmp_path: Path
) -> None:
    assert pool.invoke({"n": 7})["n"] == 7
    pool.stop()
    assert "echo handling 7" in (tmp_path / "echo.log").read_text()


def test_an_exception_is_a_function_error_and_the_container_lives_on(pool: ContainerPool) -> None:
    with pytest.raises(FunctionError, match="ValueError: boom"):
        pool.invoke({"raise": "boom"})
    assert pool.invoke({"n": 1})["n"] == 1
    assert pool.cold_starts == 1


def test_a_crashed_container_is_replaced_by_a_cold_start(pool: ContainerPool) -> None:
    before = pool.invoke({"n": 1})["pid"]
    with pytest.raises(FunctionError, match="exited"):
        pool.invoke({"exit": True})
    after = pool.invoke({"n": 2})["pid"]
    assert after != before
    assert pool.cold_starts == 2


def test_each_function_gets_its_environment_over_the_base_and_under_overrides(
    tmp_path: Path,
) -> None:
    probe = LocalFunction(
        logical_id="EnvFunction",
        handler="tests.support.echo_function.environment",
        environment={"A": "template", "B": "template"},
    )
    functions = LocalFunctions(
        {"EnvFunction": probe},
        {"B": "local"},
        base_env={**os.environ, "A": "base", "C": "base"},
        log_dir=tmp_path,
    )
    try:
        seen = functions.invoke(probe, {"names": ["A", "B", "C"]})
    finally:
        functions.stop()
    assert seen == {"A": "template", "B": "local", "C": "base"}
