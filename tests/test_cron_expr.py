"""Cloudflare Cron Trigger expressions (edgeworks.bindings.cron.expr).

Every expected fire time below was worked out by hand from a printed calendar
(calendar.TextCalendar) and each date's weekday double-checked with datetime,
independently of the code under test.

Calendar crib (Cloudflare day-of-week: 1 = Sun, 2 = Mon, ... 6 = Fri, 7 = Sat):
  Jan 2025: Wed 1st; Sundays 5 12 19 26; Fridays 3 10 17 24 31; Sat 4 11 18 25
  Feb 2025: Sat 1st; 15th = Sat; 28 days, 28th = Fri; Fridays 7 14 21 28
  Mar 2025: Sat 1st; 15th = Sat; 31st = Mon; Fridays 7 14 21 28; Sat 29 (5th)
  Apr 2025: Tue 1st; 15th = Tue; Fridays 4 11 18 25
  May 2025: Thu 1st; 31st = Sat (5th Saturday)
  Jun 2025: Sun 1st; 15th = Sun; 30th = Mon
  Jul 2025: Tue 1st; 15th = Tue; 31st = Thu
  Aug 2025: Fri 1st; 15th = Fri; 31st = Sun; Sat 30 (5th)
  Sep 2025: 30 days;  Oct 2025: 31st = Fri;  Nov 2025: 30th = Sun
  Feb 2024 and Feb 2028 have a 29th; 2025-2027 do not.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from edgeworks.bindings.cron.expr import CronError, CronExpr, parse_cron


def dt(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


START = dt(2025, 1, 15, 10, 30)  # Wednesday 2025-01-15 10:30 UTC

SUNDAYS_17 = [dt(2025, 1, 19, 17), dt(2025, 1, 26, 17), dt(2025, 2, 2, 17)]
WEEKDAYS_0710 = [
    dt(2025, 1, 16, 7, 10),  # Thu (07:10 on Wed 15th has already passed)
    dt(2025, 1, 17, 7, 10),  # Fri
    dt(2025, 1, 20, 7, 10),  # Mon (weekend skipped)
]
LAST_FRIDAY_18 = [dt(2025, 1, 31, 18), dt(2025, 2, 28, 18), dt(2025, 3, 28, 18)]

CASES = [
    # --- Cloudflare's documented examples --------------------------------------
    ("0 17 * * 1", START, SUNDAYS_17),
    ("0 17 * * sun", START, SUNDAYS_17),
    ("0 17 * * SUN", START, SUNDAYS_17),
    ("10 7 * * 2-6", START, WEEKDAYS_0710),
    ("10 7 * * mon-fri", START, WEEKDAYS_0710),
    ("10 7 * * MON-FRI", START, WEEKDAYS_0710),
    ("0 18 * * 6L", START, LAST_FRIDAY_18),
    ("0 18 * * friL", START, LAST_FRIDAY_18),
    # last weekday of the month: May 31 is a Saturday, Jun 30 a Monday
    (
        "59 23 LW * *",
        dt(2025, 5, 1),
        [dt(2025, 5, 30, 23, 59), dt(2025, 6, 30, 23, 59), dt(2025, 7, 31, 23, 59)],
    ),
    # Aug 31 is a Sunday -> Fri 29th; Sep 30 Tue; Oct 31 Fri
    (
        "59 23 LW * *",
        dt(2025, 8, 1),
        [dt(2025, 8, 29, 23, 59), dt(2025, 9, 30, 23, 59), dt(2025, 10, 31, 23, 59)],
    ),
    # --- day-of-month L and W ----------------------------------------------------
    ("0 0 L * *", START, [dt(2025, 1, 31), dt(2025, 2, 28), dt(2025, 3, 31)]),
    ("0 0 L * *", dt(2024, 2, 10), [dt(2024, 2, 29), dt(2024, 3, 31), dt(2024, 4, 30)]),
    # 15th: Feb and Mar 2025 it's a Saturday -> Friday 14th; Apr 15 is a Tuesday
    ("0 0 15W * *", dt(2025, 1, 20), [dt(2025, 2, 14), dt(2025, 3, 14), dt(2025, 4, 15)]),
    # Jun 15 2025 is a Sunday -> Monday 16th; Jul 15 Tue; Aug 15 Fri
    ("0 0 15W * *", dt(2025, 6, 1), [dt(2025, 6, 16), dt(2025, 7, 15), dt(2025, 8, 15)]),
    # already past this month's W day (Fri 14th) although the 15th is still ahead
    ("0 0 15W * *", dt(2025, 2, 14, 12), [dt(2025, 3, 14)]),
    # 1W: Feb 1 and Mar 1 2025 are Saturdays -> Monday 3rd (never the previous month)
    ("0 0 1W * *", START, [dt(2025, 2, 3), dt(2025, 3, 3), dt(2025, 4, 1)]),
    # 31W: Aug 31 is a Sunday -> Friday 29th (stays in the month); Sep has no 31st
    ("0 0 31W * *", dt(2025, 8, 1), [dt(2025, 8, 29), dt(2025, 10, 31)]),
    # --- day-of-week L and # -----------------------------------------------------
    # second Friday: Jan 10 has passed; Feb 14, Mar 14, Apr 11
    ("0 0 * * 6#2", START, [dt(2025, 2, 14), dt(2025, 3, 14), dt(2025, 4, 11)]),
    ("0 0 * * FRI#2", START, [dt(2025, 2, 14), dt(2025, 3, 14), dt(2025, 4, 11)]),
    # first Sunday
    ("0 0 * * 1#1", START, [dt(2025, 2, 2), dt(2025, 3, 2), dt(2025, 4, 6)]),
    # fifth Saturday: only Mar, May and Aug in 2025
    (
        "15 10 * * 7#5",
        START,
        [dt(2025, 3, 29, 10, 15), dt(2025, 5, 31, 10, 15), dt(2025, 8, 30, 10, 15)],
    ),
    # a bare L in day-of-week is Saturday (7)
    ("0 0 * * L", START, [dt(2025, 1, 18), dt(2025, 1, 25), dt(2025, 2, 1)]),
    # --- plain fields, steps, lists, names ----------------------------------------
    (
        "* * * * *",
        START,
        [dt(2025, 1, 15, 10, 31), dt(2025, 1, 15, 10, 32), dt(2025, 1, 15, 10, 33)],
    ),
    ("* * * * *", dt(2025, 1, 15, 10, 30, 45), [dt(2025, 1, 15, 10, 31)]),
    (
        "*/5 * * * *",
        START,
        [dt(2025, 1, 15, 10, 35), dt(2025, 1, 15, 10, 40), dt(2025, 1, 15, 10, 45)],
    ),
    ("*/5 * * * *", dt(2025, 1, 15, 10, 58), [dt(2025, 1, 15, 11, 0), dt(2025, 1, 15, 11, 5)]),
    ("0 */6 * * *", START, [dt(2025, 1, 15, 12), dt(2025, 1, 15, 18), dt(2025, 1, 16, 0)]),
    (
        "5,35 * * * *",
        START,
        [dt(2025, 1, 15, 10, 35), dt(2025, 1, 15, 11, 5), dt(2025, 1, 15, 11, 35)],
    ),
    ("0 9-17/4 * * *", START, [dt(2025, 1, 15, 13), dt(2025, 1, 15, 17), dt(2025, 1, 16, 9)]),
    (
        "0-10/5 8 * * *",
        START,
        [
            dt(2025, 1, 16, 8, 0),
            dt(2025, 1, 16, 8, 5),
            dt(2025, 1, 16, 8, 10),
            dt(2025, 1, 17, 8, 0),
        ],
    ),
    # once a year: next fires are in 2026 and 2027
    ("30 9 1 jan *", START, [dt(2026, 1, 1, 9, 30), dt(2027, 1, 1, 9, 30)]),
    # every third month from January: Apr, Jul, Oct, then Jan of the next year
    ("0 0 1 */3 *", START, [dt(2025, 4, 1), dt(2025, 7, 1), dt(2025, 10, 1), dt(2026, 1, 1)]),
    ("0 12 * * SAT,SUN", START, [dt(2025, 1, 18, 12), dt(2025, 1, 19, 12), dt(2025, 1, 25, 12)]),
    ("0 12 * * 7,1", START, [dt(2025, 1, 18, 12), dt(2025, 1, 19, 12), dt(2025, 1, 25, 12)]),
    # mixed-case month and day names: Mondays of February
    (
        "0 9 * Feb mOn",
        START,
        [
            dt(2025, 2, 3, 9),
            dt(2025, 2, 10, 9),
            dt(2025, 2, 17, 9),
            dt(2025, 2, 24, 9),
            dt(2026, 2, 2, 9),
        ],
    ),
    ("0 0 1 mAr,sEp *", START, [dt(2025, 3, 1), dt(2025, 9, 1), dt(2026, 3, 1)]),
    # day-of-week step from Monday: Mon, Wed, Fri (never Sunday)
    ("0 0 * * 2/2", START, [dt(2025, 1, 17), dt(2025, 1, 20), dt(2025, 1, 22)]),
    # wrap-around ranges, as Cloudflare accepts them
    (
        "0 22-2 * * *",
        START,
        [
            dt(2025, 1, 15, 22),
            dt(2025, 1, 15, 23),
            dt(2025, 1, 16, 0),
            dt(2025, 1, 16, 1),
            dt(2025, 1, 16, 2),
            dt(2025, 1, 16, 22),
        ],
    ),
    (
        "0 0 * * fri-mon",
        START,
        [dt(2025, 1, 17), dt(2025, 1, 18), dt(2025, 1, 19), dt(2025, 1, 20), dt(2025, 1, 24)],
    ),
    # --- leap years and year rollover ---------------------------------------------
    ("0 0 29 2 *", START, [dt(2028, 2, 29), dt(2032, 2, 29)]),
    ("0 0 29 2 *", dt(2024, 1, 1), [dt(2024, 2, 29), dt(2028, 2, 29)]),
    ("0 0 1 1 *", dt(2024, 12, 31, 23, 59, 30), [dt(2025, 1, 1), dt(2026, 1, 1)]),
    ("*/15 * * * *", dt(2024, 12, 31, 23, 50), [dt(2025, 1, 1, 0, 0), dt(2025, 1, 1, 0, 15)]),
    ("59 23 31 12 *", dt(2025, 12, 31, 23, 59), [dt(2026, 12, 31, 23, 59)]),
    ("0 18 * * 6L", dt(2025, 12, 1), [dt(2025, 12, 26, 18), dt(2026, 1, 30, 18)]),
]


def fire_times(expr: CronExpr, start: datetime, count: int) -> list[datetime]:
    out, t = [], start
    for _ in range(count):
        t = expr.next_after(t)
        out.append(t)
    return out


@pytest.mark.parametrize(
    ("source", "start", "expected"), CASES, ids=[f"{c[0]}@{c[1]:%Y-%m-%d}" for c in CASES]
)
def test_next_fire_times(source: str, start: datetime, expected: list[datetime]) -> None:
    expr = parse_cron(source)
    got = fire_times(expr, start, len(expected))
    assert got == expected
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in got)
    assert all(expr.matches(t) for t in got)


def test_case_table_is_large_enough() -> None:
    assert len({source for source, _, _ in CASES}) >= 30


def test_expected_dates_are_what_the_comments_say() -> None:
    # Sanity checks on the hand-made table (datetime.weekday: Monday = 0).
    assert START.weekday() == 2  # Wednesday
    assert dt(2025, 2, 15).weekday() == 5 and dt(2025, 3, 15).weekday() == 5  # Saturdays
    assert dt(2025, 6, 15).weekday() == 6  # Sunday
    assert dt(2025, 5, 31).weekday() == 5 and dt(2025, 8, 31).weekday() == 6
    assert {t.weekday() for t in SUNDAYS_17} == {6}
    assert {t.weekday() for t in LAST_FRIDAY_18} == {4}


def test_next_after_is_strictly_after() -> None:
    expr = parse_cron("0 17 * * 1")
    assert expr.next_after(dt(2025, 1, 19, 17)) == dt(2025, 1, 26, 17)
    assert expr.next_after(dt(2025, 1, 19, 16, 59, 59)) == dt(2025, 1, 19, 17)
    assert expr.next_after(dt(2025, 1, 19, 17) - timedelta(microseconds=1)) == dt(2025, 1, 19, 17)


def test_naive_and_non_utc_inputs() -> None:
    expr = parse_cron("0 */6 * * *")
    naive = datetime(2025, 1, 15, 10, 30)
    assert expr.next_after(naive) == dt(2025, 1, 15, 12)
    assert expr.next_after(naive).tzinfo is not None
    plus_two = datetime(2025, 1, 15, 12, 30, tzinfo=timezone(timedelta(hours=2)))  # 10:30 UTC
    result = expr.next_after(plus_two)
    assert result == dt(2025, 1, 15, 12)
    assert result.utcoffset() == timedelta(0)
    assert (result.hour, result.minute) == (12, 0)  # reported in UTC, not +02:00


def test_matches() -> None:
    expr = parse_cron("10 7 * * mon-fri")
    assert expr.matches(dt(2025, 1, 15, 7, 10))
    assert expr.matches(dt(2025, 1, 15, 7, 10, 59))  # truncated to the minute
    assert expr.matches(datetime(2025, 1, 15, 7, 10))  # naive = UTC
    assert not expr.matches(dt(2025, 1, 15, 7, 11))
    assert not expr.matches(dt(2025, 1, 18, 7, 10))  # Saturday
    lw = parse_cron("59 23 LW * *")
    assert lw.matches(dt(2025, 5, 30, 23, 59))
    assert not lw.matches(dt(2025, 5, 31, 23, 59))
    w = parse_cron("0 0 15W * *")
    assert w.matches(dt(2025, 6, 16))
    assert not w.matches(dt(2025, 6, 15))
    assert parse_cron("0 0 * * 6#2").matches(dt(2025, 2, 14))
    assert not parse_cron("0 0 * * 6#2").matches(dt(2025, 2, 7))


def test_day_of_month_and_day_of_week_together() -> None:
    # Both restricted: either may match (classic cron OR) - the 13th *or* a Friday.
    either = parse_cron("0 0 13 * 6")
    assert fire_times(either, START, 5) == [
        dt(2025, 1, 17),
        dt(2025, 1, 24),
        dt(2025, 1, 31),
        dt(2025, 2, 7),
        dt(2025, 2, 13),  # a Thursday, but the 13th
    ]
    # A field starting with '*' makes it AND (cronsim / Debian cron): days 1, 11, 21
    # and 31 that are also Mondays - the first one after START is Mon 2025-03-31.
    both = parse_cron("0 0 */10 * 2")
    assert both.next_after(START) == dt(2025, 3, 31)


def test_cron_expr_value_semantics() -> None:
    expr = parse_cron("0 17 * * sun")
    assert expr.source == "0 17 * * sun"
    assert str(expr) == "0 17 * * sun"
    assert expr == parse_cron("0 17 * * sun")
    assert hash(expr) == hash(parse_cron("0 17 * * sun"))
    assert CronExpr("0 17 * * sun") == expr
    with pytest.raises(AttributeError):
        expr.source = "* * * * *"  # type: ignore[misc]


def test_extra_cloudflare_day_of_month_forms() -> None:
    # L-n: n days before the last day (Jan 31 -> 29th, Feb 28 -> 26th)
    assert fire_times(parse_cron("0 0 L-2 * *"), START, 2) == [dt(2025, 1, 29), dt(2025, 2, 26)]
    # L-nW: nearest weekday to that day. Apr 2025: 30 - 2 = 28th (Mon);
    # Jun 2025: 30 - 2 = 28th is a Saturday -> Friday 27th.
    assert parse_cron("0 0 L-2W * *").next_after(dt(2025, 4, 1)) == dt(2025, 4, 28)
    assert parse_cron("0 0 L-2W * *").next_after(dt(2025, 6, 1)) == dt(2025, 6, 27)


def test_w_rule_with_weekdays_in_a_short_month() -> None:
    # Both day fields restricted, so they are ORed: September 2025 has no 31st,
    # yet its Mondays (2 = Monday) still fire; Oct 31 2025 is a Friday.
    expr = parse_cron("0 0 31W 9,10 2")
    assert fire_times(expr, dt(2025, 8, 31), 6) == [
        dt(2025, 9, 1),
        dt(2025, 9, 8),
        dt(2025, 9, 15),
        dt(2025, 9, 22),
        dt(2025, 9, 29),
        dt(2025, 10, 6),
    ]
    assert expr.next_after(dt(2025, 10, 27)) == dt(2025, 10, 31)
    # Only February and Mondays: the 31W part never applies, Mondays still do.
    assert parse_cron("0 0 31W 2 2").next_after(START) == dt(2025, 2, 3)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
        ("", "expected 5 fields"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range 0-23"),
        ("* * * * 8", "day-of-week 8 is out of range 1-7 (1 = Sunday)"),
        ("* * * * 0", "day-of-week 0 is out of range 1-7 (1 = Sunday)"),
        ("* * * * 0-5", "day-of-week 0 is out of range 1-7 (1 = Sunday)"),
        ("* * * * 8L", "day-of-week 8 is out of range 1-7 (1 = Sunday)"),
        ("* * * * 0#2", "day-of-week 0 is out of range 1-7 (1 = Sunday)"),
        ("* * * * 6#6", "day-of-week occurrence #6 is out of range 1-5"),
        ("* * 32 * *", "day-of-month 32 is out of range 1-31"),
        ("* * 0 * *", "day-of-month 0 is out of range 1-31"),
        ("* * 32W * *", "day-of-month 32 is out of range 1-31"),
        ("foo * * * *", "bad minute value 'foo'"),
        ("* * * 13 *", "month 13 is out of range 1-12"),
        ("* * * foo *", "bad month value 'foo'"),
        ("* * * * funday", "bad day-of-week value 'funday'"),
        ("*/0 * * * *", "minute step 0 is out of range 1-59"),
        ("* * ? * *", "'?' is not supported"),
        ("1,,2 * * * *", "empty item in minute list"),
        ("* * 15W,20 * *", "'15W' must be the only value in the day-of-month field"),
        ("* * * * 6L,2", "'6L' must be the only value in the day-of-week field"),
        ("0 0 30 2 *", "day-of-month '30' never occurs in month '2'"),
        ("0 0 31W feb *", "day-of-month '31W' never occurs in month 'feb'"),
        ("0 0 */30 2 7#5", "never fires"),
        ("0 0 31W 2 */2", "day-of-month '31W' never occurs in month '2'"),
    ],
)
def test_invalid_expressions(source: str, reason: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(source)
    message = str(info.value)
    assert message.startswith(f"invalid cron expression {source!r}: ")
    assert reason in message
    assert info.value.reason in message
    assert isinstance(info.value, ValueError)
