"""When a schedule fires next: EventBridge ``rate(N unit)`` and six-field ``cron(...)``, UTC.

The cron subset is the usual one: numbers, ``*``, ``?``, ranges ``a-b``, lists ``a,b`` and
steps ``*/n`` / ``a/n`` / ``a-b/n``, with month and weekday names. ``L``, ``W`` and ``#``
have no local evaluation: such a schedule is fired on demand only (``next_fire`` is None).
Day-of-week is 1-7 = SUN-SAT, as in EventBridge.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}
# The search bound: a cron that matches nothing within 5 years never fires.
_SEARCH_DAYS = 5 * 366


class UnsupportedExpression(ValueError):
    """The expression uses a form the local scheduler does not evaluate."""


def rate_seconds(expression: str) -> int | None:
    match = _RATE.match(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).rstrip("s")]


def _values(field: str, low: int, high: int, names: dict[str, int]) -> set[int] | None:
    """The values a cron field allows (None: any)."""
    if field in ("*", "?"):
        return None
    allowed: set[int] = set()
    for part in field.split(","):
        step = 1
        stepped = "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise UnsupportedExpression(f"cron step {step_text!r}")
        if part in ("*", ""):
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _number(a, names), _number(b, names)
        else:
            start = _number(part, names)
            end = high if stepped else start  # "a/n": from a to the end of the field
        allowed.update(range(start, end + 1, step))
    return allowed


def _number(text: str, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not upper.isdigit():  # L, W, LW, 5L, 15W, 3#2: no local evaluation
        raise UnsupportedExpression(f"cron value {text!r}")
    return int(upper)


def next_fire(
    expression: str, after: datetime, *, started: datetime | None = None
) -> datetime | None:
    """The first fire time strictly after ``after``; None if it cannot be evaluated here.
    A rate schedule fires every period from ``started`` (default ``after``)."""
    period = rate_seconds(expression)
    if period == 0:
        return None
    if period is not None:
        origin = started or after
        elapsed = (after - origin).total_seconds()
        count = int(elapsed // period) + 1
        return origin + timedelta(seconds=count * period)
    match = _CRON.match(expression.strip())
    if not match:
        return None
    fields = match.group(1).split()
    if len(fields) != 6:
        return None
    try:
        minutes = _values(fields[0], 0, 59, {})
        hours = _values(fields[1], 0, 23, {})
        days = _values(fields[2], 1, 31, {})
        months = _values(fields[3], 1, 12, _MONTHS)
        weekdays = _values(fields[4], 1, 7, _DAYS)
        years = _values(fields[5], 1970, 2199, {})
    except (UnsupportedExpression, ValueError, KeyError):
        return None
    moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    limit = moment + timedelta(days=_SEARCH_DAYS)
    while moment < limit:
        if not (
            (years is None or moment.year in years)
            and (months is None or moment.month in months)
            and (days is None or moment.day in days)
            and (weekdays is None or (moment.isoweekday() % 7) + 1 in weekdays)
        ):
            moment = (moment + timedelta(days=1)).replace(hour=0, minute=0)
            continue
        if hours is not None and moment.hour not in hours:
            moment = (moment + timedelta(hours=1)).replace(minute=0)
            continue
        if minutes is None or moment.minute in minutes:
            return moment
        moment += timedelta(minutes=1)
    return None
