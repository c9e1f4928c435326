"""The offline model: deterministic, no network, good enough to drive every example agent.

It plays a careful, unimaginative agent: it calls each tool it was given once, in order,
filling each argument from the latest tool result that has a field of that name (so a search
result's ``url`` feeds a ``read`` tool), else from the user's input; then it answers with a
summary of what the tools returned. With no tools it answers at once; a system prompt that
says ``Answer with one of: a, b, c`` gets the option named in the input (else a stable pick).
Same conversation in, same response out: tool_use ids depend only on the step, so a repeated
call after a crash produces identical ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any

from shared.models.messages import ModelRequest, ModelResponse, ToolSpec
from shared.models.run import Usage

_OPTIONS = re.compile(r"one of:\s*([^\n.]+)", re.IGNORECASE)


class OfflineProvider:
    key_id = "offline"  # the gateway's bucket prefix: there is no key

    def __init__(self, *, latency_s: float = 0.0, model_suffix: str = "") -> None:
        self.latency_s = latency_s
        self.model_suffix = model_suffix
        self.calls = 0

    async def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        step = sum(1 for m in request.messages if m["role"] == "assistant") + 1
        called = _called_tools(request.messages)
        remaining = [t for t in request.tools if t.name not in called]
        user_text = _first_user_text(request.messages)
        content: list[dict[str, Any]]
        if remaining:
            spec = remaining[0]
            content = [
                {"type": "text", "text": f"I will use {spec.name}."},
                {
                    "type": "tool_use",
                    "id": f"toolu_offline_{step:03d}",
                    "name": spec.name,
                    "input": _fill(spec, user_text, _tool_outputs(request.messages)),
                },
            ]
            stop_reason = "tool_use"
        else:
            content = [{"type": "text", "text": _answer(request, user_text)}]
            stop_reason = "end_turn"
        prompt_chars = len(request.system) + len(json.dumps(request.messages))
        output_chars = len(json.dumps(content))
        return ModelResponse(
            id=f"msg_offline_{_digest(json.dumps(request.messages))[:16]}",
            model=request.model + self.model_suffix,
            content=content,
            stop_reason=stop_reason,
            usage=Usage(
                input_tokens=max(1, prompt_chars // 4), output_tokens=max(1, output_chars // 4)
            ),
        )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _first_user_text(messages: list[dict[str, Any]]) -> str:
    content = messages[0]["content"] if messages else ""
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if b.get("type") == "text")


def _called_tools(messages: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for m in messages:
        if m["role"] == "assistant" and isinstance(m["content"], list):
            names.update(b["name"] for b in m["content"] if b.get("type") == "tool_use")
    return names


def _tool_outputs(messages: list[dict[str, Any]]) -> list[str]:
    outputs: list[str] = []
    for m in messages:
        if m["role"] == "user" and isinstance(m["content"], list):
            for b in m["content"]:
                if b.get("type") == "tool_result" and not b.get("is_error"):
                    c = b.get("content")
                    outputs.append(c if isinstance(c, str) else json.dumps(c))
    return outputs


def _find_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value and not isinstance(value[key], dict | list):
            return value[key]
        for v in value.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    if isinstance(value, list):
        for v in value:
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def _fill(spec: ToolSpec, user_text: str, outputs: list[str]) -> dict[str, Any]:
    schema = spec.input_schema
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    parsed = []
    for out in reversed(outputs):
        try:
            parsed.append(json.loads(out))
        except ValueError:
            continue
    args: dict[str, Any] = {}
    for name, prop in properties.items():
        from_results = next((v for p in parsed if (v := _find_key(p, name)) is not None), None)
        if from_results is not None:
            args[name] = from_results
        elif name in required:
            args[name] = _default_for(prop, user_text)
    return args


def _default_for(prop: dict[str, Any], user_text: str) -> Any:
    if "enum" in prop:
        options = [str(o) for o in prop["enum"]]
        return _pick(options, user_text)
    kind = prop.get("type")
    if kind == "integer":
        return int(prop.get("minimum", 1))
    if kind == "number":
        return float(prop.get("minimum", 1))
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    limit = prop.get("maxLength")
    return user_text[:limit] if limit else user_text


def _pick(options: list[str], text: str) -> str:
    lowered = text.lower()
    for option in options:
        if option.lower().replace("_", " ") in lowered or option.lower() in lowered:
            return option
    return options[int(_digest(text), 16) % len(options)]


def _answer(request: ModelRequest, user_text: str) -> str:
    match = _OPTIONS.search(request.system)
    if match and not request.tools:
        options = [o.strip() for o in re.split(r"[,|]", match.group(1)) if o.strip()]
        if options:
            return _pick(options, user_text)
    outputs = _tool_outputs(request.messages)
    if not outputs:
        return f"Offline answer to: {user_text[:200]}"
    lines = [f"- {o[:160]}" for o in outputs]
    return "Summary of what the tools returned:\n" + "\n".join(lines)
