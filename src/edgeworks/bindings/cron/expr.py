"""Cloudflare Cron Trigger expressions.

Cloudflare's dialect (as implemented by its ``saffron`` parser) is a 5-field,
Quartz-flavoured cron, always evaluated in UTC::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   1-7 (1 = Sunday ... 7 = Saturday)

* every field: ``*``, values, lists ``a,b``, ranges ``a-b`` and steps ``*/n``,
  ``a/n``, ``a-b/n``.  A range whose start is after its end wraps around
  (``22-2`` is 22,23,0,1,2; ``fri-mon`` is Fri,Sat,Sun,Mon), as in Cloudflare.
* month and day-of-week accept names (``JAN``..``DEC``, ``SUN``..``SAT``),
  case-insensitively.
* day-of-month, on its own: ``L`` (last day), ``LW`` (last weekday), ``nW``
  (weekday nearest to day n, never leaving the month), ``L-n`` (n days before
  the last day) and ``L-nW`` (weekday nearest to that day).
* day-of-week, on its own: ``nL`` (last weekday n of the month, e.g. ``6L`` or
  ``friL`` = last Friday), ``n#k`` (k-th weekday n, e.g. ``6#2`` = second
  Friday) and a bare ``L`` (= 7, Saturday).

As in Cloudflare, the special ``L``/``W``/``#`` forms must be the whole field;
they cannot be mixed into a list.  ``?`` is not part of Cloudflare's dialect and
is rejected.

Scheduling is delegated to the ``cronsim`` library.  Every field is validated
here first (so errors name the field and the allowed range in Cloudflare's
terms) and then rewritten into cronsim's dialect.  The main translation is the
day-of-week numbering: cronsim uses 0/7 = Sunday, 1 = Monday, so a Cloudflare
day n (1..7) becomes n - 1.  cronsim has no ``nW``/``L-n``/``L-nW``; those are
resolved month by month to a concrete day which is then handed to cronsim.

Day-of-month together with day-of-week: we keep cronsim's (Debian/Vixie cron)
rule.  If either field starts with ``*`` both must match (AND); if both are
restricted a day matching *either* fires (OR).  So ``0 0 1 * 2`` fires on the
1st of every month *and* on every Monday, while ``0 0 */2 * 2`` fires only on
odd-numbered days that are Mondays.  Cloudflare documents nothing about this;
its parser ORs whenever neither field is exactly ``*``, so the two agree except
for step expressions such as ``*/2`` combined with a restricted other field.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from cronsim import CronSim, CronSimError

__all__ = ["CronError", "CronExpr", "parse_cron"]

_MONTH_NAMES = {
    name: i + 1 for i, name in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())
}
_DOW_NAMES = {name: i + 1 for i, name in enumerate("SUN MON TUE WED THU FRI SAT".split())}
# Longest possible month length, February counted as 29 (leap years).
_MAX_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# The Gregorian calendar (weekdays included) repeats every 400 years, so a
# month-by-month search that finds nothing in 401 years never will.
_MAX_MONTHS_SEARCHED = 12 * 401
_PROBE_START = datetime(2000, 1, 1, tzinfo=UTC)


class CronError(ValueError):
    """An invalid Cloudflare cron expression."""

    def __init__(self, expr: str, reason: str) -> None:
        self.expr = expr
        self.reason = reason
        super().__init__(f"invalid cron expression {expr!r}: {reason}")


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None
    range_hint: str = ""
    lib_offset: int = 0  # cronsim value = Cloudflare value + lib_offset

    def to_lib(self, value: int) -> int:
        return value + self.lib_offset

    def out_of_range(self, value: int) -> str:
        msg = f"{self.name} {value} is out of range {self.lo}-{self.hi}{self.range_hint}"
        if self.name == "day-of-week" and value == 0:
            msg += "; Cloudflare numbers Sunday 1 (or SUN), not 0"
        return msg


_MINUTE = _FieldSpec("minute", 0, 59)
_HOUR = _FieldSpec("hour", 0, 23)
_DOM = _FieldSpec("day-of-month", 1, 31)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES, " (or JAN-DEC)")
# cronsim numbers days of the week 0-7 with 0 and 7 = Sunday, 1 = Monday.
_DOW = _FieldSpec("day-of-week", 1, 7, _DOW_NAMES, " (1 = Sunday)", lib_offset=-1)


class _Invalid(Exception):
    """Internal: a reason why a field is invalid (wrapped into CronError)."""


# --------------------------------------------------------------------------- #
# Field translation
# --------------------------------------------------------------------------- #


def _value(tok: str, spec: _FieldSpec) -> int:
    if spec.names is not None and tok.upper() in spec.names:
        return spec.names[tok.upper()]
    if not tok.isdigit() or not tok.isascii():
        if tok == "":
            raise _Invalid(f"missing {spec.name} value")
        kind = "number or name" if spec.names else "number"
        raise _Invalid(f"bad {spec.name} value {tok!r} (expected a {kind})")
    value = int(tok)
    if not spec.lo <= value <= spec.hi:
        raise _Invalid(spec.out_of_range(value))
    return value


def _step(tok: str, spec: _FieldSpec) -> int:
    if not tok.isdigit() or not tok.isascii():
        raise _Invalid(f"bad {spec.name} step {tok!r} (expected a number)")
    step = int(tok)
    top = spec.hi - spec.lo
    if not 1 <= step <= top:
        raise _Invalid(f"{spec.name} step {step} is out of range 1-{top}")
    return step


def _span(start: int, end: int, spec: _FieldSpec) -> str:
    """cronsim text for the Cloudflare values start..end (start <= end)."""
    a, b = spec.to_lib(start), spec.to_lib(end)
    return str(a) if a == b else f"{a}-{b}"


def _item(item: str, spec: _FieldSpec) -> str:
    """Translate one list item (no L/W/#) into equivalent cronsim text."""
    if item == "":
        raise _Invalid(f"empty item in {spec.name} list")
    if item == "?":
        raise _Invalid(f"'?' is not supported in {spec.name} (use '*')")
    base, slash, step_text = item.partition("/")
    step = _step(step_text, spec) if slash else None

    if base == "*":
        if step is None:
            raise _Invalid(f"'*' cannot be combined with other {spec.name} values")
        # cronsim starts '*/n' at its lowest value, which is Cloudflare's lowest
        # value in every field (day-of-week: cronsim 0 == Cloudflare 1 == Sunday).
        return f"*/{step}"

    start_text, dash, end_text = base.partition("-")
    start = _value(start_text, spec)
    if dash:
        end = _value(end_text, spec)
    else:
        end = spec.hi if step is not None else start  # 'a/n' runs to the maximum

    if start <= end:
        if step is None or start == end:
            return _span(start, end, spec)
        # (cronsim reads 'a/n' up to *its* maximum, which for day-of-week is 7 =
        # Sunday, so always spell the end out.)
        return f"{_span(start, end, spec)}/{step}"

    # Wrap-around range, e.g. 22-2 or FRI-MON: Cloudflare walks start..max then
    # min..end (stepping through the joined sequence).  cronsim rejects these,
    # so spell the values out.
    values = [*range(start, spec.hi + 1), *range(spec.lo, end + 1)][:: step or 1]
    return ",".join(str(spec.to_lib(v)) for v in sorted(values))


def _plain_field(text: str, spec: _FieldSpec) -> str:
    if text == "*":
        return "*"
    return ",".join(_item(item, spec) for item in text.split(","))


def _special_alone(text: str, token: str, spec: _FieldSpec) -> None:
    if "," in text:
        raise _Invalid(f"{token!r} must be the only value in the {spec.name} field")


def _dom_field(text: str) -> tuple[str, tuple[str, int] | None]:
    """Return (cronsim text, per-month rule or None) for a day-of-month field.

    The per-month rules ("W", n) and ("L-", n) / ("L-W", n) have no cronsim
    equivalent; they are resolved to a concrete day for each month instead.
    """
    up = text.upper()  # same positions as text; messages quote text as written
    for item, up_item in zip(text.split(","), up.split(","), strict=True):
        if up_item in ("L", "LW") or up_item.startswith("L-") or up_item.endswith("W"):
            _special_alone(text, item, _DOM)
    if up in ("L", "LW"):
        return up, None  # cronsim supports these natively
    if up.startswith("L-"):
        offset_text = up[2:].removesuffix("W")
        if not offset_text.isdigit() or not offset_text.isascii():
            raise _Invalid(f"bad day-of-month token {text!r} (expected L-n or L-nW)")
        offset = int(offset_text)
        if not 1 <= offset <= 30:
            raise _Invalid(f"day-of-month offset {offset} in {text!r} is out of range 1-30")
        return "", ("L-W" if up.endswith("W") else "L-", offset)
    if up.endswith("W"):
        day_text = text[:-1]
        if not day_text.isdigit() or not day_text.isascii():
            raise _Invalid(f"bad day-of-month token {text!r} (expected nW, e.g. 15W)")
        return "", ("W", _value(day_text, _DOM))
    if "L" in up or "#" in up:
        raise _Invalid(f"bad day-of-month token {text!r}")
    return _plain_field(text, _DOM), None


def _dow_field(text: str) -> str:
    up = text.upper()  # same positions as text; messages quote text as written
    if up == "L":  # Quartz / Cloudflare: a bare L is the last day of the week
        return str(_DOW.to_lib(7))
    for item, up_item in zip(text.split(","), up.split(","), strict=True):
        if up_item.endswith("L") or "#" in up_item:
            _special_alone(text, item, _DOW)
    if "#" in text:
        day_text, _, nth_text = text.partition("#")
        day = _value(day_text, _DOW)
        if not nth_text.isdigit() or not nth_text.isascii():
            raise _Invalid(f"bad day-of-week token {text!r} (expected e.g. 6#2)")
        nth = int(nth_text)
        if not 1 <= nth <= 5:
            raise _Invalid(f"day-of-week occurrence #{nth} is out of range 1-5")
        return f"{_DOW.to_lib(day)}#{nth}"
    if up.endswith("L"):
        return f"{_DOW.to_lib(_value(text[:-1], _DOW))}L"
    return _plain_field(text, _DOW)


def _month_set(lib_month: str) -> frozenset[int]:
    """The months selected by a month field *as translated* by _plain_field."""
    months: set[int] = set()
    for item in lib_month.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            lo, hi = 1, 12
        else:
            lo_text, _, hi_text = base.partition("-")
            lo, hi = int(lo_text), int(hi_text or lo_text)
        months.update(range(lo, hi + 1, int(step or 1)))
    return frozenset(months)


# --------------------------------------------------------------------------- #
# Per-month day-of-month rules (nW, L-n, L-nW)
# --------------------------------------------------------------------------- #


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    weekday = calendar.weekday(year, month, day)  # Monday = 0 ... Sunday = 6
    if weekday == 5:  # Saturday -> Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday -> Monday after, unless that leaves the month
        return day + 1 if day < last else day - 2
    return day


def _resolve_day(rule: tuple[str, int], year: int, month: int) -> int | None:
    kind, n = rule
    last = calendar.monthrange(year, month)[1]
    if kind == "W":
        day = n
    else:  # "L-" / "L-W": n days before the last day
        day = last - n
    if not 1 <= day <= last:
        return None  # e.g. 31W in April, L-30 in February: no fire that month
    return _nearest_weekday(year, month, day, last) if kind != "L-" else day


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #


class _Plan(NamedTuple):
    lib_expr: str  # the equivalent cronsim expression
    # ("W", n), ("L-", n) or ("L-W", n); lib_expr's day-of-month is then "{day}"
    dom_rule: tuple[str, int] | None
    months: frozenset[int]
    day_and: bool  # cronsim ANDs (not ORs) day-of-month and day-of-week


def _as_utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        return t.replace(tzinfo=UTC)
    # Normalise to timezone.utc exactly: cronsim only skips its DST handling for it.
    return t.astimezone(UTC)


def _cronsim_next(lib_expr: str, after: datetime) -> datetime | None:
    try:
        return next(CronSim(lib_expr, after))
    except StopIteration:  # cronsim gives up after 50 years without a match
        return None


@dataclass(frozen=True)
class CronExpr:
    """A parsed Cloudflare cron expression (UTC).  Build it with :func:`parse_cron`."""

    source: str
    _plan: _Plan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_plan", _compile(self.source))
        # Reject expressions that can never fire (e.g. "0 0 */30 2 7#5": the 1st
        # or 31st of February that is also its fifth Saturday) at parse time.
        try:
            self.next_after(_PROBE_START)
        except CronError:
            raise CronError(self.source, "it never fires (no matching date)") from None

    def __str__(self) -> str:
        return self.source

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t`` (aware UTC; naive ``t`` is UTC)."""
        after = _as_utc(t)
        plan = self._plan
        if plan.dom_rule is None:
            found = _cronsim_next(plan.lib_expr, after)
        else:
            found = _next_with_dom_rule(plan, plan.dom_rule, after)
        if found is None:
            raise CronError(self.source, f"no fire time found after {after.isoformat()}")
        return found

    def matches(self, t: datetime) -> bool:
        """Whether the minute containing ``t`` is a fire time."""
        minute = _as_utc(t).replace(second=0, microsecond=0)
        try:
            return self.next_after(minute - timedelta(seconds=1)) == minute
        except CronError:
            return False


def _next_with_dom_rule(plan: _Plan, rule: tuple[str, int], after: datetime) -> datetime | None:
    """Next fire time for a day-of-month rule cronsim lacks (nW, L-n, L-nW).

    Month by month: resolve the rule to that month's concrete day, substitute it
    into the cronsim expression and accept cronsim's answer if it is still in
    that month.  If the rule gives no day in a month (31W in April) and the day
    fields are ORed, the month still fires on the matching weekdays, which is
    what day-of-month '*' gives; if they are ANDed, the month is skipped.
    """
    year, month = after.year, after.month
    for _ in range(_MAX_MONTHS_SEARCHED):
        if month in plan.months:
            day = _resolve_day(rule, year, month)
            dom = str(day) if day is not None else (None if plan.day_and else "*")
            if dom is not None:
                found = _cronsim_next(plan.lib_expr.format(day=dom), after)
                if found is not None and (found.year, found.month) == (year, month):
                    return found
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        after = datetime(year, month, 1, tzinfo=UTC) - timedelta(seconds=1)
    return None


def _compile(expr: str) -> _Plan:
    if not isinstance(expr, str):
        raise TypeError(f"cron expression must be a str, not {type(expr).__name__}")
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(
            expr,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}",
        )
    minute_f, hour_f, dom_f, month_f, dow_f = fields
    try:
        minute = _plain_field(minute_f, _MINUTE)
        hour = _plain_field(hour_f, _HOUR)
        dom, dom_rule = _dom_field(dom_f)
        month = _plain_field(month_f, _MONTH)
        dow = _dow_field(dow_f)
    except _Invalid as exc:
        raise CronError(expr, str(exc)) from None

    months = _month_set(month)
    # cronsim's rule (see the module docstring): AND if either day field starts
    # with '*', else OR.
    day_and = dom.startswith("*") or dow.startswith("*")
    if dom_rule is not None:
        kind, n = dom_rule
        longest = max(_MAX_MONTH_DAYS[m] for m in months)
        if day_and and (n if kind == "W" else n + 1) > longest:
            raise CronError(expr, f"day-of-month {dom_f!r} never occurs in month {month_f!r}")
        dom = "{day}"

    lib_expr = f"{minute} {hour} {dom} {month} {dow}"
    try:  # let the library check the result too
        CronSim(lib_expr.format(day=1), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        if str(exc) == "Bad day-of-month":
            # The only day-of-month problem left after our own checks: every
            # listed day is past the end of every selected month (e.g. 30 2).
            reason = f"day-of-month {dom_f!r} never occurs in month {month_f!r}"
        else:  # pragma: no cover - our validation should have caught it
            reason = f"{exc} (cronsim, for {lib_expr!r})"
        raise CronError(expr, reason) from None
    return _Plan(lib_expr, dom_rule, months, day_and)


def parse_cron(expr: str) -> CronExpr:
    """Parse a Cloudflare Cron Trigger expression; raise :class:`CronError` if invalid."""
    return CronExpr(expr)
