"""The dotted subset of JSONPath a stage uses to read its input and place its result.

``select(data, "$.a.b")`` reads; ``merge(data, "$.a.b", value)`` returns a copy of ``data``
with ``value`` at that path (``"$"``: ``value`` itself), creating objects on the way, as ASL's
``ResultPath`` does.
"""

from __future__ import annotations

import copy
from typing import Any

from shared.errors import PipelineError


def _parts(path: str) -> list[str]:
    if path == "$":
        return []
    if not path.startswith("$."):
        raise PipelineError(f"{path!r} is not a path like $ or $.a.b")
    return path[2:].split(".")


def select(data: Any, path: str) -> Any:
    value = data
    for part in _parts(path):
        if not isinstance(value, dict) or part not in value:
            raise PipelineError(f"the stage's data has nothing at {path}")
        value = value[part]
    return value


def merge(data: Any, path: str, value: Any) -> Any:
    parts = _parts(path)
    if not parts:
        return value
    if not isinstance(data, dict):
        raise PipelineError(f"cannot place a result at {path}: the data is not an object")
    out = copy.copy(data)
    node = out
    for part in parts[:-1]:
        child = node.get(part)
        child = copy.copy(child) if isinstance(child, dict) else {}
        node[part] = child
        node = child
    node[parts[-1]] = value
    return out
