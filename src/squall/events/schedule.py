"""Schedule expressions: when a scheduled function fires, and the event it receives.

`@app.schedule("rate(5 minutes)")` records a string; this module turns it into a
`Schedule` that answers "when is the next firing after t?". It is pure (no clock, no
I/O): the scheduler owns time. Its loop, one leader node at a time, is

1. `parse_schedule(expr, timezone, anchor=created_at)` once, when the app is loaded, so a
   bad expression fails at start-up with AWS's error text;
2. `next_after(last_fired)` gives a wall-clock (UTC) instant; the scheduler turns "seconds
   until then" into a deadline on the monotonic clock and sleeps until it;
3. on waking, `missed_ticks(schedule, last_fired, now, policy)` says which ticks to fire
   (normally exactly one; after an outage it depends on the policy), and
   `scheduled_event(name, tick)` builds each one's AWS "Scheduled Event". Its id is
   derived from the rule and the tick, so two nodes firing the same tick produce the same
   id and the bus's de-duplication keeps one;
4. the last tick fired becomes `last_fired`.

Three expression forms are accepted:

- `rate(value unit)`, as EventBridge: a positive integer and minute/hour/day, singular
  for 1 and plural otherwise. A rate fires at `anchor + k * interval` (k >= 0), in
  absolute time: `rate(1 day)` is every 24 hours even across a DST change, as on
  EventBridge Scheduler. The anchor is the schedule's creation time, passed in; without
  one the Unix epoch is used, which aligns `rate(5 minutes)` to :00, :05, ... UTC.
- `cron(min hour day-of-month month day-of-week year)`, EventBridge's six fields: day of
  week 1-7 = SUN-SAT, exactly one of the two day fields is `?`, `L` (last day of month;
  alone in day-of-week: Saturday), `nL` (last weekday n of the month), `nW` (nearest
  weekday), `LW` (last weekday of the month), `n#k` (k-th weekday n), years 1970-2199.
  It is translated to a five-field croniter expression; the year field is applied here.
- classic five-field cron (`*/5 * * * *`), bare or as `cron(...)`, read as croniter reads
  it (day of week 0-7 with 0 and 7 = Sunday; day-of-month and day-of-week both set means
  either matches).

Cron fields are wall-clock times in the schedule's IANA time zone, with EventBridge
Scheduler's DST rule: a time skipped when clocks go forward does not fire that day, and a
time repeated when they go back fires once, at its first occurrence (so
`cron(0/30 * * * ? *)` in Berlin is silent for the repeated hour). Every instant this
module returns is an aware datetime in UTC: comparisons between two datetimes that share
a tzinfo ignore `fold`, which is exactly wrong inside a repeated hour.

Not supported, and rejected with AWS's text plus a reason: Quartz's `L-n` (n days before
the month's end) and `L`/`W`/`#` inside lists. `nW` and `LW` need a croniter with
nearest-weekday support (added upstream in 2026); an older one rejects them the same way.
"""

from __future__ import annotations

import bisect
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

__all__ = [
    "AWS_INVALID_EXPRESSION",
    "CronSchedule",
    "InvalidSchedule",
    "MissedTickPolicy",
    "RateSchedule",
    "Schedule",
    "missed_ticks",
    "parse_schedule",
    "scheduled_event",
]

AWS_INVALID_EXPRESSION = "Parameter ScheduleExpression is not valid."

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK = timedelta(microseconds=1)

MissedTickPolicy = Literal["skip", "fire_once", "catch_up"]
_POLICIES = ("skip", "fire_once", "catch_up")


class InvalidSchedule(ValueError):
    """A schedule expression (or its time zone) that cannot be used.

    `message` is the text AWS answers with (for expressions, "Parameter ScheduleExpression
    is not valid."), so an AWS-compatible API can return it unchanged; `reason` says what
    exactly is wrong and how to fix it. `str()` gives both.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(f"{message} {reason}" if reason else message)
        self.message = message
        self.reason = reason


def _invalid(expression: str, why: str) -> InvalidSchedule:
    return InvalidSchedule(AWS_INVALID_EXPRESSION, f"{expression!r}: {why}")


def _utc(t: datetime, what: str = "time") -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {t.isoformat()}")
    return t.astimezone(UTC)


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True, kw_only=True)
class Schedule(ABC):
    """A parsed schedule expression: the firing instants it describes, in UTC."""

    expression: str
    timezone: str = "UTC"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @abstractmethod
    def next_after(self, t: datetime) -> datetime | None:
        """The first firing strictly after `t`, or None when there is none (year field)."""

    @abstractmethod
    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest firing at or before `t`, or None when there is none."""

    def firings_between(self, start: datetime, end: datetime, limit: int = 1000) -> list[datetime]:
        """Firings in (start, end], earliest first, at most `limit` of them."""
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        end = _utc(end, "end")
        out: list[datetime] = []
        t: datetime | None = _utc(start, "start")
        while t is not None and len(out) < limit:
            t = self.next_after(t)
            if t is None or t > end:
                break
            out.append(t)
        return out


@dataclass(frozen=True, kw_only=True)
class RateSchedule(Schedule):
    """`rate(N unit)`: fires at `anchor + k * interval` for every k >= 0."""

    interval: timedelta
    anchor: datetime = EPOCH

    def next_after(self, t: datetime) -> datetime | None:
        t = _utc(t)
        if t < self.anchor:
            return self.anchor
        try:
            return self.anchor + ((t - self.anchor) // self.interval + 1) * self.interval
        except OverflowError:
            return None

    def last_at_or_before(self, t: datetime) -> datetime | None:
        t = _utc(t)
        if t < self.anchor:
            return None
        return self.anchor + ((t - self.anchor) // self.interval) * self.interval


@dataclass(frozen=True, kw_only=True)
class CronSchedule(Schedule):
    """A cron expression, evaluated on wall-clock time in `timezone`.

    `croniter_expr` is the five-field expression croniter evaluates (EventBridge's form
    translated); `years`, when not None, are the only years that may fire.
    """

    croniter_expr: str
    years: tuple[int, ...] | None = None

    def next_after(self, t: datetime) -> datetime | None:
        t = _utc(t)
        tz = self.tz
        # Walk forward through wall-clock candidates. In the second pass of a repeated
        # hour some candidates lie before t (their first occurrence was earlier): skip.
        start = t.astimezone(tz).replace(tzinfo=None, fold=0)
        if self.years is not None and start.year not in self.years:
            i = bisect.bisect_right(self.years, start.year)
            if i == len(self.years):
                return None
            start = datetime(self.years[i], 1, 1) - _TICK
        it = croniter(self.croniter_expr, start)
        while True:
            try:
                wall = it.get_next(datetime)
            except (CroniterBadDateError, OverflowError):
                return None
            if self.years is not None and wall.year not in self.years:
                i = bisect.bisect_right(self.years, wall.year)
                if i == len(self.years):
                    return None
                it = croniter(self.croniter_expr, datetime(self.years[i], 1, 1) - _TICK)
                continue
            instant = _first_instant(wall, tz)
            if instant is not None and instant > t:
                return instant

    def last_at_or_before(self, t: datetime) -> datetime | None:
        t = _utc(t)
        tz = self.tz
        local = t.astimezone(tz)
        start = local.replace(tzinfo=None, fold=0)
        first = local.replace(fold=0)
        if local.fold == 1 and first.utcoffset() != local.utcoffset():
            # t is in the second pass of a repeated hour: every wall time of that hour,
            # later ones included, already fired (in the first pass), before t.
            start += first.utcoffset() - local.utcoffset()  # type: ignore[operator]
        if self.years is not None and start.year not in self.years:
            i = bisect.bisect_left(self.years, start.year)
            if i == 0:
                return None
            start = datetime(self.years[i - 1] + 1, 1, 1) - _TICK
        it = croniter(self.croniter_expr, start + _TICK)
        while True:
            try:
                wall = it.get_prev(datetime)
            except (CroniterBadDateError, OverflowError, ValueError):
                return None
            if self.years is not None and wall.year not in self.years:
                i = bisect.bisect_left(self.years, wall.year)
                if i == 0:
                    return None
                it = croniter(self.croniter_expr, datetime(self.years[i - 1] + 1, 1, 1))
                continue
            instant = _first_instant(wall, tz)
            if instant is not None and instant <= t:
                return instant


def _first_instant(wall: datetime, tz: ZoneInfo) -> datetime | None:
    """The UTC instant a naive wall time first occurs in `tz`; None if it never does."""
    aware = wall.replace(tzinfo=tz, fold=0)
    instant = aware.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return None  # skipped when the clocks went forward
    return instant


# --------------------------------------------------------------------------- parsing


def parse_schedule(expr: str, timezone: str = "UTC", *, anchor: datetime | None = None) -> Schedule:
    """Parse `rate(...)`, EventBridge `cron(...)` or classic five-field cron.

    `timezone` is the IANA zone cron fields are read in (rates are absolute time and
    ignore it). `anchor` is when a rate schedule was created: it fires then and every
    interval after; cron schedules ignore it. Raises `InvalidSchedule`.
    """
    if not isinstance(expr, str):
        raise InvalidSchedule(AWS_INVALID_EXPRESSION, f"expected a string, got {expr!r}")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidSchedule(
            f"Unknown time zone {timezone!r}.",
            "Use an IANA name such as 'UTC', 'Europe/Berlin' or 'America/New_York'.",
        ) from None
    if expr.startswith("rate("):
        return _parse_rate(expr, timezone, anchor)
    if expr.startswith("cron("):
        if not expr.endswith(")"):
            raise _invalid(expr, "expected cron(fields)")
        inner = expr[5:-1]
        if inner != inner.strip():
            raise _invalid(expr, "no spaces are allowed just inside the parentheses")
        fields = inner.split()
        if len(fields) == 6:
            return _parse_aws_cron(expr, fields, timezone)
        if len(fields) == 5:
            return _parse_classic_cron(expr, fields, timezone)
        raise _invalid(
            expr,
            f"cron() takes 6 fields (minutes hours day-of-month month day-of-week year),"
            f" got {len(fields)}; e.g. cron(0 10 * * ? *)",
        )
    fields = expr.split()
    if len(fields) == 5 and expr == expr.strip():
        return _parse_classic_cron(expr, fields, timezone)
    raise _invalid(expr, "expected rate(value unit), cron(six fields) or a five-field cron line")


_RATE = re.compile(r"rate\(([0-9]+) ([A-Za-z]+)\)", re.ASCII)
_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}


def _parse_rate(expr: str, tz: str, anchor: datetime | None) -> RateSchedule:
    m = _RATE.fullmatch(expr)
    if m is None:
        raise _invalid(
            expr,
            "expected rate(value unit): a positive whole number, one space, and minute(s),"
            " hour(s) or day(s), e.g. rate(5 minutes)",
        )
    value, unit = int(m[1]), m[2]
    singular = unit.removesuffix("s")
    if singular not in _UNITS:
        raise _invalid(expr, f"the unit must be minute(s), hour(s) or day(s), not {unit!r}")
    if value < 1:
        raise _invalid(expr, "the value must be a positive whole number")
    if value == 1 and unit != singular:
        raise _invalid(expr, f"a value of 1 takes the singular: rate(1 {singular})")
    if value > 1 and unit == singular:
        raise _invalid(expr, f"a value above 1 takes the plural: rate({value} {singular}s)")
    try:
        interval = value * _UNITS[singular]
    except OverflowError:
        raise _invalid(expr, "the interval is too long") from None
    anchor = EPOCH if anchor is None else _utc(anchor, "anchor")
    return RateSchedule(expression=expr, timezone=tz, interval=interval, anchor=anchor)


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


class _Field(NamedTuple):
    """One EventBridge cron field: its values and their names (, - * / work in all)."""

    name: str
    lo: int
    hi: int
    names: Mapping[str, int] = MappingProxyType({})


_MINUTES = _Field("minutes", 0, 59)
_HOURS = _Field("hours", 0, 23)
_DAY_OF_MONTH = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, _DAYS)
_YEAR = _Field("year", 1970, 2199)
_W_DAY = re.compile(r"([0-9]{1,2})W", re.ASCII)
_LAST_DOW = re.compile(r"([0-9]|[A-Z]{3})L", re.ASCII)
_NTH_DOW = re.compile(r"([0-9]|[A-Z]{3})#([0-9])", re.ASCII)


def _parse_aws_cron(expr: str, fields: list[str], tz: str) -> CronSchedule:
    minute, hour, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise _invalid(
            expr,
            "exactly one of day-of-month and day-of-week must be '?', e.g. cron(0 10 * * ? *)"
            " or cron(0 18 ? * MON-FRI *)",
        )
    translated = " ".join(
        (
            _expand(expr, minute, _MINUTES),
            _expand(expr, hour, _HOURS),
            "*" if dom == "?" else _aws_day_of_month(expr, dom),
            _expand(expr, month, _MONTH),
            "*" if dow == "?" else _aws_day_of_week(expr, dow),
        )
    )
    years = None if year == "*" else tuple(map(int, _expand(expr, year, _YEAR).split(",")))
    try:
        croniter(translated, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        # Only the nearest-weekday form can get here: croniter before 2026 lacks it.
        raise _invalid(
            expr, f"this croniter cannot evaluate it ({exc}); upgrade croniter"
        ) from None
    return CronSchedule(expression=expr, timezone=tz, croniter_expr=translated, years=years)


def _aws_day_of_month(expr: str, field: str) -> str:
    dom = field.upper()
    if dom == "L":
        return "L"
    if dom == "LW":
        return "31W"  # croniter clamps nW to the month's last day: the last weekday
    m = _W_DAY.fullmatch(dom)
    if m:
        day = int(m[1])
        if not 1 <= day <= 31:
            raise _invalid(expr, f"day-of-month {field!r}: W takes a day from 1 to 31")
        return f"{day}W"
    if "L" in dom or "W" in dom:
        raise _invalid(
            expr,
            f"day-of-month {field!r}: L, LW and nW stand alone (L-n offsets are not supported)",
        )
    return _expand(expr, field, _DAY_OF_MONTH)


def _aws_day_of_week(expr: str, field: str) -> str:
    dow = field.upper()
    if dow == "L":
        return "6"  # the last day of the week: Saturday
    m = _LAST_DOW.fullmatch(dow)
    if m:
        return f"L{_day_number(expr, m[1]) - 1}"
    m = _NTH_DOW.fullmatch(dow)
    if m:
        nth = int(m[2])
        if not 1 <= nth <= 5:
            raise _invalid(expr, f"day-of-week {field!r}: # takes an occurrence from 1 to 5")
        return f"{_day_number(expr, m[1]) - 1}#{nth}"
    if "L" in dow or "#" in dow:  # no day name contains L or #
        raise _invalid(
            expr,
            f"day-of-week {field!r}: nL and n#k stand alone, one expression per field"
            " (e.g. 6L or SAT#3)",
        )
    days = _expand(expr, field, _DAY_OF_WEEK)
    if days == "*":
        return "*"
    return ",".join(str(int(d) - 1) for d in days.split(","))  # croniter: 0 = Sunday


def _day_number(expr: str, token: str) -> int:
    if token in _DAYS:
        return _DAYS[token]
    if token.isdigit() and 1 <= int(token) <= 7:
        return int(token)
    raise _invalid(expr, f"day-of-week {token!r}: use 1-7 or SUN-SAT")


def _expand(expr: str, field: str, spec: _Field) -> str:
    """An EventBridge field (, - * / and names) as croniter's explicit, sorted value list."""
    name, lo, hi, names = spec
    if field == "*":
        return "*"

    def value(token: str) -> int:
        if token.upper() in names:  # names are case-insensitive, as in Quartz
            return names[token.upper()]
        if token.isdigit() and token.isascii() and lo <= int(token) <= hi:
            return int(token)
        raise _invalid(expr, f"{name} {field!r}: {token!r} is not a value from {lo} to {hi}")

    values: set[int] = set()
    for item in field.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (
                step_text.isdigit() and step_text.isascii() and 1 <= int(step_text) <= hi - lo + 1
            ):
                raise _invalid(expr, f"{name} {field!r}: bad increment {step_text!r}")
            step = int(step_text)
        first, dash, last = base.partition("-")
        if base == "*":
            run = list(range(lo, hi + 1))
        elif dash:
            a, b = value(first), value(last)
            # A range may wrap around the end of the field (FRI-MON, 22-2), as in Quartz.
            run = (
                list(range(a, b + 1)) if a <= b else list(range(a, hi + 1)) + list(range(lo, b + 1))
            )
        elif slash:
            run = list(range(value(first), hi + 1))  # a/s: from a to the end, every s
        else:
            run = [value(first)]
        values.update(run[::step])
    return ",".join(str(v) for v in sorted(values))


_HASHED = re.compile(r"[HR](\(.*\))?(/.*)?", re.IGNORECASE)


def _parse_classic_cron(expr: str, fields: list[str], tz: str) -> CronSchedule:
    if "?" in expr:
        # An EventBridge expression that lost its year field: read as classic cron, its
        # day-of-week numbers would silently shift by one (2-6 is MON-FRI there).
        raise _invalid(
            expr,
            "'?' belongs to EventBridge's six-field cron; add the year field"
            " (e.g. cron(0 10 * * ? *)) or use '*' in five-field cron",
        )
    # croniter's H (hashed) and R (random) would make firings depend on more than the text.
    if any(_HASHED.fullmatch(item) for f in fields for item in f.split(",")):
        raise _invalid(expr, "croniter's H and R (hashed/random) values are not supported")
    line = " ".join(fields)
    try:
        croniter(line, datetime(2000, 1, 1))
    except (CroniterError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise _invalid(expr, str(exc)) from None
    return CronSchedule(expression=expr, timezone=tz, croniter_expr=line)


# --------------------------------------------------------------------------- firing


def missed_ticks(
    schedule: Schedule,
    last_fired: datetime,
    now: datetime,
    policy: MissedTickPolicy = "skip",
    limit: int = 100,
    *,
    grace: timedelta = timedelta(minutes=1),
) -> list[datetime]:
    """The ticks to fire now, given the last one fired, earliest first.

    The ticks due are those in (last_fired, now]. Normally that is one tick, just
    reached, and every policy fires it. After the scheduler was down:

    - "skip": fire the latest due tick only if it is at most `grace` old (on time);
      older ones are dropped, and the schedule resumes at its next tick.
    - "fire_once": fire the latest due tick, once, however late (the missed ones
      coalesce into it).
    - "catch_up": fire every due tick, oldest first, at most `limit` per call. Record
      the last returned tick as `last_fired` and call again: a long outage drains in
      batches, each tick exactly once.
    """
    if policy not in _POLICIES:
        raise ValueError(f"unknown missed-tick policy {policy!r}: use one of {_POLICIES}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    last_fired, now = _utc(last_fired, "last_fired"), _utc(now, "now")
    latest = schedule.last_at_or_before(now)
    if latest is None or latest <= last_fired:
        return []
    if policy == "catch_up":
        return schedule.firings_between(last_fired, now, limit)
    if policy == "skip" and now - latest > grace:
        return []
    return [latest]


_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "squall:scheduled-event")


def scheduled_event(
    schedule_name: str,
    fire_time: datetime,
    *,
    account: str = "000000000000",
    region: str = "local",
    rule_arn: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """The event AWS delivers when a scheduled rule fires, for the tick `fire_time`.

    The id is a UUID derived from the rule ARN and the tick (pass `event_id` to choose
    one), so the same tick always yields the same event.
    """
    time = _utc(fire_time, "fire_time").strftime("%Y-%m-%dT%H:%M:%SZ")
    arn = rule_arn or f"arn:aws:events:{region}:{account}:rule/{schedule_name}"
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid5(_EVENT_IDS, f"{arn}\n{time}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": time,
        "region": region,
        "resources": [arn],
        "detail": {},
    }
