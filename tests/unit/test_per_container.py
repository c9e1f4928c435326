"""PerContainer: the one lazily built, replaceable value each Lambda entry point keeps."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from functions import PerContainer


def test_built_once_on_first_use_even_under_concurrent_first_calls() -> None:
    builds: list[int] = []
    gate = threading.Barrier(8)

    def build() -> object:
        builds.append(1)
        return object()

    holder: PerContainer[object] = PerContainer(build)
    assert builds == []  # nothing built at import/construction

    def first_call() -> object:
        gate.wait()
        return holder.get()

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: first_call(), range(8)))
    assert len(builds) == 1
    assert all(v is values[0] for v in values)


def test_set_replaces_and_none_rebuilds_from_scratch() -> None:
    counter = iter(range(100))
    holder: PerContainer[int] = PerContainer(lambda: next(counter))
    assert holder.get() == 0
    holder.set(42)
    assert holder.get() == 42
    holder.set(None)
    assert holder.get() == 1
