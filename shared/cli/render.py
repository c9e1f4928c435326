"""Human output: one-line events (the progress display of ``runs tail``), run summaries,
tables. Every line is flushed as it is printed, so a pipe sees progress as it happens.

``--json`` output does not come through here but through :func:`emit_json` (the API's body,
indented) and :func:`emit_json_line` (one compact object per line: JSON Lines).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
PREVIEW = 80


def say(line: str = "") -> None:
    print(line, flush=True)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)


def emit_json_line(value: Any) -> None:
    print(json.dumps(value, separators=(",", ":"), ensure_ascii=False), flush=True)


# ---- small formats -----------------------------------------------------------------------------


def clip(text: str, width: int = PREVIEW) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def money(value: Any) -> str:
    try:
        amount = float(value or 0)
    except (TypeError, ValueError):
        return "-"
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


def count(value: Any) -> str:
    try:
        return f"{int(value or 0):,}"
    except (TypeError, ValueError):
        return "-"


def clock(at: Any) -> str:
    """``HH:MM:SS`` of an ISO-8601 timestamp (as the API sends it, in UTC)."""
    text = str(at or "")
    return text[11:19] if len(text) >= 19 and text[10] in "T " else text or "-"


def when(at: Any) -> str:
    """``YYYY-MM-DD HH:MM:SS`` of an ISO-8601 timestamp, or ``-``."""
    text = str(at or "")
    return f"{text[:10]} {text[11:19]}" if len(text) >= 19 else text or "-"


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip()] + [fmt.format(*row).rstrip() for row in cells]


def output_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False)


# ---- events ----------------------------------------------------------------------------------


def event_line(event: Mapping[str, Any]) -> str:
    """``#seq  HH:MM:SS  type  what it says`` for one event of ``GET /v1/runs/{id}/events``."""
    kind = str(event.get("type", "?"))
    data = event.get("data") or {}
    what = _describe(kind, data if isinstance(data, Mapping) else {})
    return f"#{event.get('seq', '?'):<4} {clock(event.get('at'))}  {kind:<18} {what}".rstrip()


def _describe(kind: str, data: Mapping[str, Any]) -> str:
    step = f"step {data['step']}  " if data.get("step") not in (None, 0) else ""
    if kind == "run.status":
        extra = []
        if data.get("agent"):
            extra.append(str(data["agent"]))
        if data.get("resumed"):
            extra.append("resumed")
        if data.get("worker"):
            extra.append(f"worker {data['worker']}")
        if data.get("reason"):
            extra.append(str(data["reason"]))
        error = data.get("error")
        if isinstance(error, Mapping):
            extra.append(clip(f"{error.get('code', 'error')}: {error.get('message', '')}", 120))
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{step}-> {data.get('status', '?')}{tail}"
    if kind == "step.completed":
        parts = [
            str(data.get("model") or "model"),
            f"in {count(data.get('input_tokens'))} / out {count(data.get('output_tokens'))} tok",
        ]
        cached = int(data.get("cache_read_input_tokens") or 0)
        if cached:
            parts.append(f"cache {count(cached)}")
        parts.append(f"{money(data.get('cost_usd'))} (run {money(data.get('total_cost_usd'))})")
        if data.get("stop_reason") == "end_turn" and data.get("text"):
            parts.append(f'"{clip(str(data["text"]), 60)}"')
        return step + "  ".join(parts)
    if kind == "tool.called":
        return f"{step}{data.get('name', '?')}({clip(compact(data.get('input', '')), 60)})"
    if kind == "tool.completed":
        outcome = "error" if data.get("is_error") else "ok"
        return f"{step}{data.get('name', '?')} {outcome} ({count(data.get('output_chars'))} chars)"
    if kind == "approval.requested":
        calls = data.get("calls") or []
        named = ", ".join(
            f"{c.get('name', '?')}({clip(compact(c.get('input', {})), 50)})"
            for c in calls
            if isinstance(c, Mapping)
        )
        return f"{step}needs approval: {named or '?'}"
    if kind == "approval.decided":
        comment = f" - {clip(str(data['comment']), 60)}" if data.get("comment") else ""
        return f"{step}{data.get('decision', '?')}{comment}"
    return clip(compact(dict(data)), 100)


# ---- runs ------------------------------------------------------------------------------------


def run_headline(run: Mapping[str, Any]) -> str:
    thread = f"  thread {run['thread_id']}" if run.get("thread_id") else ""
    return (
        f"{run.get('run_id', '?')}  {run.get('status', '?')}  "
        f"({run.get('agent', '?')}, {run.get('shape', '?')}){thread}"
    )


def usage_line(run: Mapping[str, Any]) -> str:
    usage = run.get("usage") or {}
    steps = count(run.get("steps"))
    return (
        f"{steps} step{'' if steps == '1' else 's'}, in {count(usage.get('input_tokens'))} / "
        f"out {count(usage.get('output_tokens'))} tokens, "
        f"{money(run.get('cost_usd', usage.get('cost_usd')))}"
    )


def run_details(run: Mapping[str, Any]) -> list[str]:
    lines = [run_headline(run)]
    lines.append(f"  usage     {usage_line(run)}")
    lines.append(f"  created   {when(run.get('created_at'))}")
    if run.get("finished_at"):
        lines.append(f"  finished  {when(run.get('finished_at'))}")
    if run.get("metadata"):
        lines.append(f"  metadata  {compact(run['metadata'])}")
    if run.get("cancel_requested") and run.get("status") not in TERMINAL:
        lines.append("  cancel requested: it stops at its next step boundary")
    pending = run.get("pending_approval")
    if isinstance(pending, Mapping):
        for call in pending.get("calls") or []:
            lines.append(
                f"  awaits approval: {call.get('name', '?')}"
                f"({clip(compact(call.get('input', {})), 100)})"
            )
    error = run.get("error")
    if isinstance(error, Mapping):
        lines.append(f"  error     {error.get('code', 'error')}: {error.get('message', '')}")
    if run.get("output") is not None:
        lines.append("  output")
        lines.extend("    " + line for line in output_text(run["output"]).splitlines())
    return lines


def approve_hint(run_id: str) -> str:
    return (
        f"awaiting approval: switchyard runs approve {run_id}  "
        f"(or --reject; details: switchyard runs get {run_id})"
    )
