"""Human-readable rendering of run events for the CLI (one line per event)."""

from __future__ import annotations

from shared.models.events import Event, EventType


def describe(event: Event) -> str:
    d = event.data
    match event.type:
        case EventType.RUN_STATUS:
            extra = ""
            if d.get("resumed"):
                extra = f" (resumed after step {d.get('step')})"
            if d.get("error"):
                extra = f": {d['error'].get('code')} - {d['error'].get('message')}"
            return f"status → {d.get('status')}{extra}"
        case EventType.STEP_COMPLETED:
            tokens = f"{d.get('input_tokens')} in / {d.get('output_tokens')} out"
            cost = f"${d.get('cost_usd', 0):.5f} (run ${d.get('total_cost_usd', 0):.5f})"
            text = " “{}”".format(" ".join(d["text"].split())) if d.get("text") else ""
            head = f"step {d.get('step')}: {d.get('model')} {d.get('stop_reason')}"
            return f"{head}, {tokens}, {cost}{text}"
        case EventType.TOOL_CALLED:
            return f"step {d.get('step')}:   → {d.get('name')}({d.get('input')})"
        case EventType.TOOL_COMPLETED:
            status = "error" if d.get("is_error") else "ok"
            return (
                f"step {d.get('step')}:   ← {d.get('name')} {status}, {d.get('output_chars')} chars"
            )
        case EventType.APPROVAL_REQUESTED:
            calls = ", ".join(f"{c['name']}({c['input']})" for c in d.get("calls", []))
            return f"approval requested for {calls}"
        case EventType.APPROVAL_DECIDED:
            comment = f" - {d['comment']}" if d.get("comment") else ""
            return f"approval {d.get('decision')}{comment}"
    return f"{event.type.value} {d}"


def render(event: Event) -> str:
    return f"  [{event.seq:>3}] {event.at:%H:%M:%S.%f}"[:-3] + f"  {describe(event)}"
