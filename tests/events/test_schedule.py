"""Schedule expressions, firing times, missed ticks and the Scheduled Event.

What AWS accepted, rejected and delivered is read at test time from the conformance folder
(`derived/eventbridge-schedule-expressions.json`, every case checked against AWS by
localstack's aws.validated tests, and the localstack snapshot it came from); the tests skip
when that folder is absent. Firing times were worked out by hand from a calendar and the
tz database's transitions (Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST and
2024-10-27 03:00 CEST -> 02:00 CET; America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT
and 2024-11-03 02:00 EDT -> 01:00 EST).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import conformance_root

from squall.events.schedule import (
    AWS_INVALID_EXPRESSION,
    CronSchedule,
    InvalidSchedule,
    MissedTickPolicy,
    RateSchedule,
    missed_ticks,
    parse_schedule,
    scheduled_event,
)

DERIVED = "derived/eventbridge-schedule-expressions.json"
SNAPSHOT = "localstack/tests/aws/services/events/test_events_schedule.snapshot.json"


def utc(text: str) -> datetime:
    """'2024-01-01T10:00' (or with seconds) as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ----------------------------------------------------------------- AWS's own verdicts


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per expression in the derived file; a single skipped one without it."""
    for name, keys in (
        ("aws_valid", ("valid_cron", "valid_rate")),
        ("aws_invalid", ("invalid_cron", "invalid_rate")),
    ):
        if name not in metafunc.fixturenames:
            continue
        root = conformance_root()
        if root is None:
            metafunc.parametrize(name, [None], ids=["conformance-missing"])
            continue
        data = json.loads((root / DERIVED).read_text())
        cases = [expr for key in keys for expr in data[key]]
        metafunc.parametrize(name, cases, ids=[repr(c) for c in cases])


def derived(conformance_dir: Path) -> dict[str, Any]:
    return json.loads((conformance_dir / DERIVED).read_text())


def test_the_derived_file_has_the_documented_counts(conformance_dir: Path) -> None:
    data = derived(conformance_dir)
    counts = {k: len(data[k]) for k in ("valid_cron", "invalid_cron", "valid_rate", "invalid_rate")}
    assert counts == {"valid_cron": 16, "invalid_cron": 5, "valid_rate": 2, "invalid_rate": 17}


def test_aws_accepted_expression_parses(conformance_dir: Path, aws_valid: str) -> None:
    schedule = parse_schedule(aws_valid)

    kind = RateSchedule if aws_valid.startswith("rate(") else CronSchedule
    assert isinstance(schedule, kind)
    assert schedule.expression == aws_valid
    # Every accepted expression can be evaluated (year-limited ones may have no future).
    schedule.next_after(utc("2020-01-01T00:00"))


def test_aws_rejected_expression_raises_the_aws_text(
    conformance_dir: Path, aws_invalid: str
) -> None:
    expected = derived(conformance_dir)["expected_error"]["Message"]

    with pytest.raises(InvalidSchedule) as raised:
        parse_schedule(aws_invalid)

    assert raised.value.message == expected == AWS_INVALID_EXPRESSION
    assert str(raised.value).startswith(expected)
    assert raised.value.reason  # and says what is wrong
    assert isinstance(raised.value, ValueError)


def test_the_snapshot_agrees(conformance_dir: Path) -> None:
    """The localstack snapshot the derived file came from: its keys carry the expressions."""
    snapshot = json.loads((conformance_dir / SNAPSHOT).read_text())
    accepted, rejected = [], {}
    for key, entry in snapshot.items():
        expr = key.partition("[")[2].removesuffix("]")  # "...::test_name[cron(0 10 * * ? *)]"
        content = entry["recorded-content"]
        if "invalid-put-rule" in content:
            rejected[expr] = content["invalid-put-rule"]["Error"]
        elif expr:
            accepted.append(expr)
    assert len(accepted) >= 16 and len(rejected) >= 5

    for expr in accepted:
        parse_schedule(expr)
    for expr, error in rejected.items():
        with pytest.raises(InvalidSchedule) as raised:
            parse_schedule(expr)
        assert (error["Code"], raised.value.message) == ("ValidationException", error["Message"])


# ----------------------------------------------------------------- more rejections


@pytest.mark.parametrize(
    "expr",
    [
        "cron(0 0 ? * ? *)",  # both day fields '?'
        "cron(0 0 1 * MON *)",  # both day fields set
        "cron(0 24 * * ? *)",
        "cron(0 0 32 * ? *)",
        "cron(0 0 * 13 ? *)",
        "cron(0 0 ? * 0 *)",  # EventBridge's day of week is 1-7
        "cron(0 0 ? * 8 *)",
        "cron(0 0 * * ? 1969)",
        "cron(0 0 * * ? 2200)",
        "cron(0/0 * * * ? *)",
        "cron(0 0 ? * 1#1,5#3 *)",  # '#' is one expression per field (AWS docs)
        "cron(0 0 ? * MON#6 *)",
        "cron(0 0 ? * 6L,1 *)",
        "cron(0 0 1,L * ? *)",
        "cron(0 0 L-3 * ? *)",  # Quartz's L-n is not supported
        "cron(0 0 32W * ? *)",
        "cron( 0 10 * * ? * )",
        "cron(0 10 * * ? * *)",
        "cron(0 10 * * ? *",
        "cron(0 10 * * ?)",  # EventBridge form missing its year: not read as classic
        "0 10 * * ?",
        "@daily",
        "H * * * *",  # croniter's hashed and random values are not deterministic
        "0 R * * *",
        "0 0 * * * *",
        "*/5 * * * * ",
        "every 5 minutes",
        "",
    ],
)
def test_invalid_expression_is_rejected(expr: str) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        parse_schedule(expr)
    assert raised.value.message == AWS_INVALID_EXPRESSION
    assert repr(expr) in raised.value.reason


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(InvalidSchedule, match="Unknown time zone 'Mars/Olympus'"):
        parse_schedule("rate(5 minutes)", timezone="Mars/Olympus")


def test_naive_datetimes_are_refused() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)")
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="anchor must be timezone-aware"):
        parse_schedule("rate(5 minutes)", anchor=datetime(2024, 1, 1))


# ----------------------------------------------------------------- cron firing times

# (expression, time zone, after (UTC), the next firings (UTC)); [] = never again.
CRON_CASES = [
    # plain fields
    ("cron(0 10 * * ? *)", "UTC", "2024-01-01T10:00", ["2024-01-02T10:00"]),
    (
        "cron(0/15 * * * ? *)",
        "UTC",
        "2024-01-01T00:07:30",
        ["2024-01-01T00:15", "2024-01-01T00:30"],
    ),
    (
        "cron(5/20 * * * ? *)",
        "UTC",
        "2024-01-01T00:00",
        ["2024-01-01T00:05", "2024-01-01T00:25", "2024-01-01T00:45", "2024-01-01T01:05"],
    ),
    ("cron(0 18 ? * MON-FRI *)", "UTC", "2024-01-05T18:00", ["2024-01-08T18:00"]),
    ("cron(0 18 ? * mon-fri *)", "UTC", "2024-01-05T18:00", ["2024-01-08T18:00"]),
    ("cron(0 18 ? * 2-6 *)", "UTC", "2024-01-05T18:00", ["2024-01-08T18:00"]),  # 1 = SUN
    (
        "cron(0 0 ? * FRI-MON *)",
        "UTC",
        "2024-01-03T12:00",
        [
            "2024-01-05T00:00",
            "2024-01-06T00:00",
            "2024-01-07T00:00",
            "2024-01-08T00:00",
            "2024-01-12T00:00",
        ],
    ),
    (
        "cron(0 8 1 JAN,JUL ? *)",
        "UTC",
        "2024-01-01T08:00",
        ["2024-07-01T08:00", "2025-01-01T08:00"],
    ),
    # L: last day of the month (leap years included); alone in day-of-week: Saturday
    (
        "cron(0 12 L * ? *)",
        "UTC",
        "2024-02-10T00:00",
        ["2024-02-29T12:00", "2024-03-31T12:00", "2024-04-30T12:00"],
    ),
    ("cron(0 12 L 2 ? *)", "UTC", "2024-03-01T00:00", ["2025-02-28T12:00"]),
    ("cron(0 8 ? * L *)", "UTC", "2024-01-01T00:00", ["2024-01-06T08:00", "2024-01-13T08:00"]),
    # W: nearest weekday, never leaving the month; LW: the month's last weekday
    (
        "cron(0 9 15W * ? *)",
        "UTC",
        "2024-06-01T00:00",
        ["2024-06-14T09:00", "2024-07-15T09:00", "2024-08-15T09:00", "2024-09-16T09:00"],
    ),
    ("cron(0 9 1W * ? *)", "UTC", "2024-05-31T00:00", ["2024-06-03T09:00", "2024-07-01T09:00"]),
    (
        "cron(0 9 LW * ? *)",
        "UTC",
        "2024-08-01T00:00",
        ["2024-08-30T09:00", "2024-09-30T09:00", "2024-10-31T09:00", "2024-11-29T09:00"],
    ),
    # #: the n-th given weekday of the month; nL: the last one
    (
        "cron(0 2 ? * SAT#3 *)",
        "UTC",
        "2024-01-01T00:00",
        ["2024-01-20T02:00", "2024-02-17T02:00", "2024-03-16T02:00"],
    ),
    ("cron(0 10 ? * 2#1 *)", "UTC", "2023-12-31T00:00", ["2024-01-01T10:00", "2024-02-05T10:00"]),
    (
        "cron(0 0 ? * 6#5 *)",
        "UTC",
        "2024-01-01T00:00",
        ["2024-03-29T00:00", "2024-05-31T00:00", "2024-08-30T00:00", "2024-11-29T00:00"],
    ),
    (
        "cron(15 10 ? * 6L 2002-2005)",
        "UTC",
        "2002-01-01T00:00",
        ["2002-01-25T10:15", "2002-02-22T10:15", "2002-03-29T10:15"],
    ),
    ("cron(15 10 ? * FRIL *)", "UTC", "2024-01-01T00:00", ["2024-01-26T10:15"]),
    # year field
    ("cron(15 10 ? * 6L 2002-2005)", "UTC", "2005-12-01T00:00", ["2005-12-30T10:15"]),
    ("cron(15 10 ? * 6L 2002-2005)", "UTC", "2024-01-01T00:00", []),
    (
        "cron(0/5 5 ? JAN 1-5 2022)",
        "UTC",
        "2021-06-01T00:00",
        ["2022-01-02T05:00", "2022-01-02T05:05"],
    ),
    ("cron(0/5 5 ? JAN 1-5 2022)", "UTC", "2022-01-31T05:50", ["2022-01-31T05:55"]),
    # beyond croniter's own year range (1970-2099) and its 50-year search
    ("cron(0 0 1 1 ? 2150)", "UTC", "2024-06-01T00:00", ["2150-01-01T00:00"]),
    ("cron(0 0 29 2 ? 2101-2103)", "UTC", "2024-01-01T00:00", []),  # no leap day in those years
    ("cron(0 0 1 1 ? 2030/5)", "UTC", "2024-01-01T00:00", ["2030-01-01T00:00", "2035-01-01T00:00"]),
    ("cron(0 0 31 2 ? *)", "UTC", "2024-01-01T00:00", []),
    # classic five-field cron (day of week 0 = Sunday; both day fields set: either)
    ("*/5 * * * *", "UTC", "2024-01-01T00:02", ["2024-01-01T00:05", "2024-01-01T00:10"]),
    ("cron(0 9 * * 1-5)", "UTC", "2024-01-05T09:00", ["2024-01-08T09:00"]),
    (
        "0 0 13 * 5",
        "UTC",
        "2024-09-01T00:00",
        ["2024-09-06T00:00", "2024-09-13T00:00", "2024-09-20T00:00"],
    ),
    # DST, Europe/Berlin: 02:30 does not exist on 2024-03-31, so it does not fire that day
    (
        "cron(30 2 * * ? *)",
        "Europe/Berlin",
        "2024-03-30T02:00",
        ["2024-04-01T00:30", "2024-04-02T00:30"],
    ),
    (
        "cron(0 9 * * ? *)",
        "Europe/Berlin",
        "2024-03-30T08:00",
        ["2024-03-31T07:00", "2024-04-01T07:00"],
    ),
    # ... and 02:30 happens twice on 2024-10-27: it fires once, at the first (CEST) one
    (
        "cron(30 2 * * ? *)",
        "Europe/Berlin",
        "2024-10-26T12:00",
        ["2024-10-27T00:30", "2024-10-28T01:30"],
    ),
    (
        "cron(0/30 * * * ? *)",
        "Europe/Berlin",
        "2024-10-26T23:45",
        ["2024-10-27T00:00", "2024-10-27T00:30", "2024-10-27T02:00"],
    ),
    # DST, America/New_York
    ("cron(30 2 ? * SUN *)", "America/New_York", "2024-03-03T12:00", ["2024-03-17T06:30"]),
    (
        "cron(0/15 * * * ? *)",
        "America/New_York",
        "2024-03-10T06:30",
        ["2024-03-10T06:45", "2024-03-10T07:00"],
    ),
    (
        "cron(30 1 * * ? *)",
        "America/New_York",
        "2024-11-02T12:00",
        ["2024-11-03T05:30", "2024-11-04T06:30"],
    ),
    ("cron(0 9 ? * MON-FRI *)", "America/New_York", "2024-03-08T14:00", ["2024-03-11T13:00"]),
]


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    CRON_CASES,
    ids=[f"{c[0]} {c[1]} {c[2]}" for c in CRON_CASES],
)
def test_cron_next_firings(expr: str, tz: str, after: str, expected: list[str]) -> None:
    schedule = parse_schedule(expr, timezone=tz)

    firings = []
    t: datetime | None = utc(after)
    for _ in range(len(expected) + (0 if expected else 1)):
        t = schedule.next_after(t)
        if t is None:
            break
        firings.append(t)

    assert firings == [utc(e) for e in expected]
    assert all(f.tzinfo is UTC for f in firings)


def test_never_again_is_none_not_an_error() -> None:
    # Given a schedule whose years are all past
    schedule = parse_schedule("cron(15 10 ? * 6L 2002-2005)")
    # Then there is no next firing, and the last one is the last Friday of 2005
    assert schedule.next_after(utc("2024-01-01T00:00")) is None
    assert schedule.last_at_or_before(utc("2024-01-01T00:00")) == utc("2005-12-30T10:15")
    assert schedule.last_at_or_before(utc("2002-01-25T10:14")) is None


def test_last_at_or_before_includes_t_itself() -> None:
    schedule = parse_schedule("cron(0 10 * * ? *)")
    assert schedule.last_at_or_before(utc("2024-01-02T10:00")) == utc("2024-01-02T10:00")
    assert schedule.last_at_or_before(utc("2024-01-02T09:59:59.999999")) == utc("2024-01-01T10:00")


def test_inside_the_repeated_hour_the_walls_already_fired() -> None:
    # Given 02:45 Berlin, which on 2024-10-27 fired at 00:45 UTC (CEST)
    schedule = parse_schedule("cron(45 2 * * ? *)", timezone="Europe/Berlin")
    # When it is 02:10 CET, the second pass (01:10 UTC)
    second_pass = utc("2024-10-27T01:10")
    assert second_pass.astimezone(ZoneInfo("Europe/Berlin")).fold == 1
    # Then 02:45 is behind us, not ahead: it does not fire again at 01:45 UTC
    assert schedule.last_at_or_before(second_pass) == utc("2024-10-27T00:45")
    assert schedule.next_after(second_pass) == utc("2024-10-28T01:45")


def test_firing_times_are_wall_clock_in_the_zone() -> None:
    schedule = parse_schedule("cron(0 9 ? * MON-FRI *)", timezone="America/New_York")
    berlin = datetime(2024, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # any aware time

    fired = schedule.next_after(berlin)

    assert fired is not None
    local = fired.astimezone(ZoneInfo("America/New_York"))
    assert (local.date().isoformat(), local.hour, local.minute) == ("2024-07-01", 9, 0)


# ----------------------------------------------------------------- rate anchoring


def test_rate_fires_from_its_anchor() -> None:
    # Given a schedule created at 00:02:30
    created = utc("2024-01-01T00:02:30")
    schedule = parse_schedule("rate(5 minutes)", anchor=created)

    # Then it fires at creation and every five minutes after, whatever t is
    assert schedule.next_after(created - timedelta(hours=1)) == created
    assert schedule.next_after(created) == utc("2024-01-01T00:07:30")
    assert schedule.next_after(utc("2024-01-01T00:10")) == utc("2024-01-01T00:12:30")
    assert schedule.next_after(utc("2024-01-01T00:12:30")) == utc("2024-01-01T00:17:30")
    assert schedule.last_at_or_before(utc("2024-01-01T00:12:29.999999")) == utc(
        "2024-01-01T00:07:30"
    )
    assert schedule.last_at_or_before(created - timedelta(microseconds=1)) is None


def test_rate_without_anchor_is_aligned_to_the_epoch() -> None:
    assert parse_schedule("rate(5 minutes)").next_after(utc("2024-01-01T00:02")) == utc(
        "2024-01-01T00:05"
    )
    assert parse_schedule("rate(1 hour)").next_after(utc("2024-01-01T10:30")) == utc(
        "2024-01-01T11:00"
    )
    # 2024-01-01 is day 19,723 after the epoch, so every-other-day falls on the 2nd
    assert parse_schedule("rate(2 days)").next_after(utc("2024-01-01T00:00")) == utc(
        "2024-01-02T00:00"
    )


def test_rate_is_deterministic() -> None:
    anchor = datetime(2024, 1, 1, 1, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    a = parse_schedule("rate(10 minutes)", anchor=anchor)
    b = parse_schedule("rate(10 minutes)", anchor=anchor.astimezone(UTC))

    assert a == b and hash(a) == hash(b)
    assert a.firings_between(anchor, anchor + timedelta(hours=1)) == b.firings_between(
        anchor, anchor + timedelta(hours=1)
    )


def test_rate_days_are_24_hours_across_dst() -> None:
    # Given rate(1 day) created at 09:00 Berlin (CET) the day before clocks go forward
    created = utc("2024-03-30T08:00")
    schedule = parse_schedule("rate(1 day)", timezone="Europe/Berlin", anchor=created)
    # Then it fires 24 hours later, which is 10:00 CEST on the wall
    fired = schedule.next_after(created)
    assert fired == utc("2024-03-31T08:00")
    assert fired is not None and fired.astimezone(ZoneInfo("Europe/Berlin")).hour == 10


# ----------------------------------------------------------------- firings_between


def test_firings_between_is_half_open_and_limited() -> None:
    schedule = parse_schedule("cron(0 * * * ? *)")
    start, end = utc("2024-01-01T00:00"), utc("2024-01-01T03:00")

    assert schedule.firings_between(start, end) == [
        utc("2024-01-01T01:00"),
        utc("2024-01-01T02:00"),
        utc("2024-01-01T03:00"),
    ]
    assert schedule.firings_between(start, end, limit=2) == [
        utc("2024-01-01T01:00"),
        utc("2024-01-01T02:00"),
    ]
    assert schedule.firings_between(end, start) == []
    assert schedule.firings_between(start, end, limit=0) == []


def test_firings_between_stops_at_the_last_year() -> None:
    schedule = parse_schedule("cron(0 0 1 * ? 2030)")
    firings = schedule.firings_between(utc("2029-01-01T00:00"), utc("2100-01-01T00:00"))
    assert firings == [utc(f"2030-{m:02}-01T00:00") for m in range(1, 13)]


# ----------------------------------------------------------------- missed ticks

EVERY_MINUTE = parse_schedule("rate(1 minute)")
T0 = utc("2024-01-01T00:00")


def minutes(*ms: int) -> list[datetime]:
    return [T0 + timedelta(minutes=m) for m in ms]


@pytest.mark.parametrize("policy", ["skip", "fire_once", "catch_up"])
def test_the_tick_just_reached_fires_under_every_policy(policy: MissedTickPolicy) -> None:
    # Given the scheduler woke 200 ms after the 00:01 tick
    now = T0 + timedelta(minutes=1, milliseconds=200)
    assert missed_ticks(EVERY_MINUTE, T0, now, policy) == minutes(1)


@pytest.mark.parametrize("policy", ["skip", "fire_once", "catch_up"])
def test_nothing_is_due_before_the_next_tick(policy: MissedTickPolicy) -> None:
    assert missed_ticks(EVERY_MINUTE, T0, T0 + timedelta(seconds=59), policy) == []
    # a clock that went backwards fires nothing either
    assert missed_ticks(EVERY_MINUTE, T0, T0 - timedelta(minutes=5), policy) == []


def test_after_an_outage_each_policy_decides() -> None:
    # Given the last firing at 00:00 and the scheduler back at 00:10:30 (ticks 1-10 due)
    now = T0 + timedelta(minutes=10, seconds=30)

    # skip: the latest tick is 30 s old, within the default minute of grace: it fires
    assert missed_ticks(EVERY_MINUTE, T0, now, "skip") == minutes(10)
    # ... but with 10 s of grace it is late too, and nothing fires
    assert missed_ticks(EVERY_MINUTE, T0, now, "skip", grace=timedelta(seconds=10)) == []
    # fire_once: the missed ticks coalesce into the latest one
    assert missed_ticks(EVERY_MINUTE, T0, now, "fire_once") == minutes(10)
    # catch_up: every one, oldest first, at most `limit` per call
    assert missed_ticks(EVERY_MINUTE, T0, now, "catch_up") == minutes(*range(1, 11))
    assert missed_ticks(EVERY_MINUTE, T0, now, "catch_up", 3) == minutes(1, 2, 3)


def test_catch_up_drains_in_batches_each_tick_once() -> None:
    now = T0 + timedelta(minutes=25)
    fired: list[datetime] = []
    last = T0
    while batch := missed_ticks(EVERY_MINUTE, last, now, "catch_up", 10):
        fired += batch
        last = batch[-1]
    assert fired == minutes(*range(1, 26))


def test_fire_once_after_a_year_down_is_quick_and_exact() -> None:
    # A minutely cron and a year of downtime: the latest tick is found without walking
    # the half-million missed ones.
    schedule = parse_schedule("* * * * *")
    ticks = missed_ticks(schedule, utc("2023-01-01T00:00"), utc("2024-01-01T00:00:30"), "fire_once")
    assert ticks == [utc("2024-01-01T00:00")]


def test_missed_ticks_respects_dst() -> None:
    # 02:30 Berlin never happens on 2024-03-31: nothing was missed that night
    schedule = parse_schedule("cron(30 2 * * ? *)", timezone="Europe/Berlin")
    last = utc("2024-03-30T01:30")  # 02:30 CET on the 30th
    assert missed_ticks(schedule, last, utc("2024-03-31T12:00"), "catch_up") == []
    assert missed_ticks(schedule, last, utc("2024-04-01T00:30"), "catch_up") == [
        utc("2024-04-01T00:30")
    ]


def test_missed_ticks_rejects_unknown_policy_and_bad_limit() -> None:
    with pytest.raises(ValueError, match="unknown missed-tick policy 'replay'"):
        missed_ticks(EVERY_MINUTE, T0, T0, "replay")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        missed_ticks(EVERY_MINUTE, T0, T0, "catch_up", 0)


# ----------------------------------------------------------------- the Scheduled Event


def recorded_bodies(conformance_dir: Path) -> list[dict[str, Any]]:
    """The derived body and every Scheduled Event body in the localstack snapshot."""
    bodies = [derived(conformance_dir)["scheduled_event_as_delivered"]]
    snapshot = json.loads((conformance_dir / SNAPSHOT).read_text())
    for entry in snapshot.values():
        for value in entry["recorded-content"].values():
            for message in value if isinstance(value, list) else []:
                body = message.get("Body")
                if isinstance(body, dict) and body.get("detail-type") == "Scheduled Event":
                    bodies.append(body)
    return bodies


def test_scheduled_event_matches_what_aws_delivered_key_by_key(conformance_dir: Path) -> None:
    bodies = recorded_bodies(conformance_dir)
    assert len(bodies) >= 2

    event = scheduled_event(
        "nightly",
        datetime(2024, 5, 15, 10, 58, 53, 481000, tzinfo=UTC),
        account="111111111111",
        region="us-east-1",
    )

    for aws in bodies:
        assert list(event) == list(aws)  # same keys, same order
        for key, recorded in aws.items():
            assert type(event[key]) is type(recorded), key
        assert event["version"] == aws["version"] == "0"
        uuid.UUID(event["id"])  # localstack recorded "<uuid:N>"
        assert event["detail-type"] == aws["detail-type"] == "Scheduled Event"
        assert event["source"] == aws["source"] == "aws.events"
        assert event["account"] == aws["account"]
        assert event["time"] == "2024-05-15T10:58:53Z"  # localstack recorded "date"
        assert event["region"] == "us-east-1"  # recorded "<region>"
        recorded_arn = (
            aws["resources"][0]
            .replace("<partition>", "aws")
            .replace("<region>", "us-east-1")
            .replace("<rule-name>", "nightly")
        )
        assert event["resources"] == [recorded_arn]
        assert event["detail"] == aws["detail"] == {}
    json.dumps(event)


def test_scheduled_event_defaults_and_overrides() -> None:
    tick = datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:30 UTC

    event = scheduled_event("cleanup", tick)

    assert event["time"] == "2024-10-27T00:30:00Z"
    assert (event["account"], event["region"]) == ("000000000000", "local")
    assert event["resources"] == ["arn:aws:events:local:000000000000:rule/cleanup"]
    custom = scheduled_event(
        "cleanup", tick, rule_arn="arn:aws:events:eu-west-1:1:rule/x", event_id="e-1"
    )
    assert (custom["resources"], custom["id"]) == (["arn:aws:events:eu-west-1:1:rule/x"], "e-1")


def test_the_same_tick_is_the_same_event_on_every_node() -> None:
    # One firing per tick across all nodes: the id is a function of rule and tick, so a
    # tick fired twice (two leaders for a moment) de-duplicates on the bus.
    tick = utc("2024-01-01T10:00")
    assert scheduled_event("job", tick)["id"] == scheduled_event("job", tick)["id"]
    assert (
        scheduled_event("job", tick)["id"]
        != scheduled_event("job", tick + timedelta(minutes=1))["id"]
    )
    assert scheduled_event("job", tick)["id"] != scheduled_event("other", tick)["id"]


def test_scheduled_event_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="fire_time must be timezone-aware"):
        scheduled_event("job", datetime(2024, 1, 1))
