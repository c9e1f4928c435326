"""When a local schedule fires next (devstack.expressions): EventBridge rate() and six-field
cron(), evaluated in UTC, strictly after the given moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from devstack.expressions import next_fire, rate_seconds

# A Friday.
AFTER = datetime(2025, 3, 14, 10, 17, 30, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, *, month: int = 3, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ---- rate() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 7 * 86400),
        ("  rate(3 hours)  ", 3 * 3600),
    ],
)
def test_rate_seconds_of_each_unit(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize(
    "expression",
    ["cron(0 6 * * ? *)", "rate(1 week)", "rate(minutes)", "rate(-1 minutes)", "rate(1.5 hours)"],
)
def test_rate_seconds_is_none_for_anything_else(expression: str) -> None:
    assert rate_seconds(expression) is None


@pytest.mark.parametrize(
    ("expression", "started", "expected"),
    [
        ("rate(5 minutes)", at(14, 10, 0), at(14, 10, 20)),
        ("rate(1 minute)", at(14, 10, 0), at(14, 10, 18)),
        ("rate(2 hours)", at(14, 8, 0), at(14, 12, 0)),
        ("rate(1 hour)", at(14, 9, 45), at(14, 10, 45)),
        ("rate(1 day)", at(10, 6, 0), at(15, 6, 0)),
        ("rate(3 days)", at(10, 6, 0), at(16, 6, 0)),
    ],
)
def test_rate_fires_on_the_grid_of_its_start(
    expression: str, started: datetime, expected: datetime
) -> None:
    assert next_fire(expression, AFTER, started=started) == expected


def test_rate_without_a_start_counts_from_after() -> None:
    assert next_fire("rate(1 hour)", AFTER) == AFTER + timedelta(hours=1)
    assert next_fire("rate(10 minutes)", AFTER) == AFTER + timedelta(minutes=10)


def test_rate_is_strictly_after_a_tick() -> None:
    started = at(14, 10, 0)
    assert next_fire("rate(5 minutes)", at(14, 10, 20), started=started) == at(14, 10, 25)
    assert next_fire("rate(5 minutes)", started, started=started) == at(14, 10, 5)


def test_successive_rate_fires_are_one_period_apart() -> None:
    started = at(14, 10, 0)
    moment = started
    fires = []
    for _ in range(4):
        fire = next_fire("rate(15 minutes)", moment, started=started)
        assert fire is not None
        fires.append(fire)
        moment = fire
    assert fires == [at(14, 10, 15), at(14, 10, 30), at(14, 10, 45), at(14, 11, 0)]


# ---- cron() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # A fixed time, daily: today's is past, so tomorrow's.
        ("cron(0 6 * * ? *)", at(15, 6, 0)),
        ("cron(45 10 * * ? *)", at(14, 10, 45)),
        # Lists.
        ("cron(0,30 9,17 * * ? *)", at(14, 17, 0)),
        ("cron(10,20 10 * * ? *)", at(14, 10, 20)),
        # Ranges.
        ("cron(0 9-11 * * ? *)", at(14, 11, 0)),
        ("cron(0 11-13 * * ? *)", at(14, 11, 0)),
        # Steps: from *, from a start, within a range.
        ("cron(*/15 * * * ? *)", at(14, 10, 30)),
        ("cron(5/20 * * * ? *)", at(14, 10, 25)),
        ("cron(0 8-18/4 * * ? *)", at(14, 12, 0)),
        ("cron(0 0/6 * * ? *)", at(14, 12, 0)),
        # Month names, a list and a range, case-insensitive.
        ("cron(0 0 1 JAN,OCT ? *)", at(1, 0, month=10)),
        ("cron(0 12 1 jun-aug ? *)", at(1, 12, month=6)),
        ("cron(0 0 1 4 ? *)", at(1, 0, month=4)),
        # Day-of-month.
        ("cron(0 9 20 * ? *)", at(20, 9)),
        ("cron(0 9 1,14 * ? *)", at(1, 9, month=4)),
        # Day names (AFTER is a Friday).
        ("cron(0 9 ? * MON-FRI *)", at(17, 9)),
        ("cron(0 11 ? * MON-FRI *)", at(14, 11)),
        ("cron(0 9 ? * SAT,SUN *)", at(15, 9)),
        # Day-of-week numbers: 1-7 = SUN-SAT.
        ("cron(0 9 ? * 1 *)", at(16, 9)),
        ("cron(0 9 ? * 7 *)", at(15, 9)),
        ("cron(0 9 ? * 2 *)", at(17, 9)),
        ("cron(0 11 ? * 6 *)", at(14, 11)),
        ("cron(0 9 ? * 2-6 *)", at(17, 9)),
        # The year field.
        ("cron(0 0 1 1 ? 2026)", at(1, 0, month=1, year=2026)),
        ("cron(30 8 * * ? 2026-2027)", at(1, 8, 30, month=1, year=2026)),
        ("cron(0 12 * * ? 2025,2026)", at(14, 12)),
    ],
)
def test_cron_next_fire(expression: str, expected: datetime) -> None:
    assert next_fire(expression, AFTER) == expected


def test_day_of_week_numbers_are_sun_to_sat() -> None:
    names = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
    for number, name in enumerate(names, 1):
        fire = next_fire(f"cron(0 9 ? * {number} *)", AFTER)
        assert fire is not None
        assert fire.strftime("%a").upper() == name
        assert AFTER < fire <= AFTER + timedelta(days=7)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Names that contain L or W are names, not the L / W wildcards.
        ("cron(0 9 ? * WED *)", at(19, 9)),
        ("cron(0 9 ? * MON-WED *)", at(17, 9)),
        ("cron(0 0 1 JUL ? *)", at(1, 0, month=7)),
        ("cron(0 0 1 JAN,JUL ? *)", at(1, 0, month=7)),
    ],
)
def test_day_and_month_names_with_l_or_w(expression: str, expected: datetime) -> None:
    assert next_fire(expression, AFTER) == expected


def test_a_step_from_a_start_runs_to_the_end_of_the_field() -> None:
    # EventBridge: "a/n" is every n from a to the field's maximum, whatever n is.
    assert next_fire("cron(50/5 * * * ? *)", at(14, 10, 56)) == at(14, 11, 50)
    assert next_fire("cron(30/1 * * * ? *)", at(14, 10, 30)) == at(14, 10, 31)


def test_cron_is_strictly_after() -> None:
    assert next_fire("cron(0 6 * * ? *)", at(14, 6, 0)) == at(15, 6, 0)
    assert next_fire("cron(0 6 * * ? *)", at(14, 5, 59)) == at(14, 6, 0)
    just_before = datetime(2025, 3, 14, 5, 59, 59, 999999, tzinfo=UTC)
    assert next_fire("cron(0 6 * * ? *)", just_before) == at(14, 6, 0)
    assert next_fire("cron(* * * * ? *)", AFTER) == at(14, 10, 18)


def test_cron_is_evaluated_in_utc() -> None:
    # 07:30 at UTC+2 is 05:30 UTC: 06:00 UTC the same day is next.
    after = datetime(2025, 3, 14, 7, 30, tzinfo=timezone(timedelta(hours=2)))
    fire = next_fire("cron(0 6 * * ? *)", after)
    assert fire == at(14, 6, 0)
    assert fire is not None
    assert fire.utcoffset() == timedelta(0)


def test_cron_crosses_a_month_and_a_year() -> None:
    new_year_eve = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert next_fire("cron(0 0 * * ? *)", new_year_eve) == at(1, 0, month=1, year=2026)
    assert next_fire("cron(0 0 31 * ? *)", at(1, 0, month=4)) == at(31, 0, month=5)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 0 L * ? *)",  # last day of the month
        "cron(0 0 15W * ? *)",  # nearest weekday
        "cron(0 0 LW * ? *)",
        "cron(0 0 ? * 6#3 *)",  # third Friday
        "cron(0 0 ? * 6L *)",  # last Friday
    ],
)
def test_unsupported_cron_forms_have_no_next_fire(expression: str) -> None:
    assert next_fire(expression, AFTER) is None


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 6 * * ?)",  # five fields
        "cron(0 6 * * ? * *)",  # seven
        "cron(x 6 * * ? *)",
        "cron(0 6 * FOO ? *)",
        "at(2025-03-15T06:00:00)",  # one-time schedules are not evaluated
        "every day",
        "",
    ],
)
def test_malformed_expressions_have_no_next_fire(expression: str) -> None:
    assert next_fire(expression, AFTER) is None


@pytest.mark.slow
def test_a_cron_that_never_matches_again_has_no_next_fire() -> None:
    # Searches its whole bound (5 years of minutes) before giving up: about 6 s.
    assert next_fire("cron(0 0 1 1 ? 2024)", AFTER) is None
