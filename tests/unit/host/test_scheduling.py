"""Recurrence rules: intervals, calendar days and cron, in the task's own time zone."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from ironclaw.contract.clock import from_datetime, to_datetime
from ironclaw.host.scheduling import InvalidSchedule, next_slot, parse_recurrence, parse_timezone
from ironclaw.host.scheduling.recurrence import first_slot

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
HOUR = 3_600_000_000


def at(year: int, month: int, day: int, hour: int, minute: int,
       zone: ZoneInfo = BERLIN) -> int:
    return from_datetime(dt.datetime(year, month, day, hour, minute, tzinfo=zone))


def local(us: int, zone: ZoneInfo = BERLIN) -> dt.datetime:
    return to_datetime(us).astimezone(zone)


def series(text: str, anchor: int, count: int, zone: ZoneInfo = BERLIN) -> list[int]:
    rule = parse_recurrence(text)
    assert rule is not None
    slots, slot = [], anchor
    for _ in range(count):
        slot = next_slot(rule, zone, anchor_us=anchor, after_us=slot)
        slots.append(slot)
    return slots


@pytest.mark.parametrize(("text", "normal"), [
    ("hourly", "hourly"), ("Daily", "daily"), ("weekly", "weekly"), ("15m", "15m"),
    ("2h", "2h"), ("90s", "90s"), ("1d", "1d"), (" 0  9 * * 1-5 ", "0 9 * * 1-5")])
def test_accepted_rules(text: str, normal: str) -> None:
    rule = parse_recurrence(text)
    assert rule is not None and rule.text == normal


@pytest.mark.parametrize("text", [
    "30s", "59s", "0m", "400d", "every day", "* * * *", "* * * * * *", "61 * * * *",
    "0 0 31 2 *", "@reboot", "1h; rm -rf /", "9" * 40])
def test_refused_rules(text: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_recurrence(text)


def test_no_rule_is_a_one_shot() -> None:
    assert parse_recurrence(None) is None and parse_recurrence("  ") is None


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/localtime", "Mars/Olympus",
                                  "Europe/Berlin\x00", "a" * 200, "Europe/../Asia/Tokyo"])
def test_refused_time_zones(name: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_timezone(name)


def test_time_zone_defaults_to_utc() -> None:
    assert parse_timezone(None).key == "UTC"
    assert parse_timezone("Europe/Berlin").key == "Europe/Berlin"


def test_daily_keeps_local_time_across_both_dst_changes() -> None:
    spring = series("daily", at(2025, 3, 28, 9, 0), 4)
    assert [local(s).strftime("%d %H:%M %Z") for s in spring] == [
        "29 09:00 CET", "30 09:00 CEST", "31 09:00 CEST", "01 09:00 CEST"]
    assert spring[1] - spring[0] == 23 * HOUR  # the short day
    autumn = series("daily", at(2025, 10, 24, 9, 0), 3)
    assert [local(s).strftime("%d %H:%M %Z") for s in autumn] == [
        "25 09:00 CEST", "26 09:00 CET", "27 09:00 CET"]
    assert autumn[1] - autumn[0] == 25 * HOUR  # the long day


def test_weekly_and_day_intervals_are_calendar_days() -> None:
    weekly = series("weekly", at(2025, 3, 24, 18, 30), 2)
    assert [local(s).strftime("%a %d %H:%M") for s in weekly] == [
        "Mon 31 18:30", "Mon 07 18:30"]
    assert [local(s).strftime("%d %H:%M") for s in series("3d", at(2025, 3, 28, 7, 0), 2)] == [
        "31 07:00", "03 07:00"]


def test_hourly_and_intervals_are_elapsed_time() -> None:
    # Across spring-forward, "hourly" stays sixty minutes apart in real time.
    slots = series("hourly", at(2025, 3, 30, 0, 30), 3)
    assert [b - a for a, b in zip([at(2025, 3, 30, 0, 30), *slots], slots, strict=False)] == [
        HOUR] * 3
    assert [local(s).strftime("%H:%M") for s in slots] == ["01:30", "03:30", "04:30"]
    assert series("15m", at(2025, 1, 1, 0, 0, zone=UTC), 2, UTC) == [
        at(2025, 1, 1, 0, 15, zone=UTC), at(2025, 1, 1, 0, 30, zone=UTC)]


def test_a_late_slot_is_the_first_strictly_after_now_never_a_backlog() -> None:
    rule = parse_recurrence("15m")
    assert rule is not None
    anchor = at(2025, 1, 1, 0, 0, zone=UTC)
    after_downtime = anchor + 10 * HOUR + 1  # forty slots were missed
    assert next_slot(rule, UTC, anchor_us=anchor, after_us=after_downtime) == (
        anchor + 10 * HOUR + 15 * 60_000_000)
    exactly_on = anchor + 2 * HOUR
    assert next_slot(rule, UTC, anchor_us=anchor, after_us=exactly_on) == (
        exactly_on + 15 * 60_000_000)


def test_cron_runs_on_local_wall_clock_time() -> None:
    weekdays = parse_recurrence("0 9 * * 1-5")
    assert weekdays is not None
    friday_afternoon = at(2025, 3, 28, 14, 0)
    monday = next_slot(weekdays, BERLIN, anchor_us=0, after_us=friday_afternoon)
    assert local(monday).strftime("%a %d %H:%M %Z") == "Mon 31 09:00 CEST"
    # A time skipped by spring-forward runs at the same distance past the gap.
    night = parse_recurrence("30 2 * * *")
    assert night is not None
    skipped = next_slot(night, BERLIN, anchor_us=0, after_us=at(2025, 3, 29, 12, 0))
    assert local(skipped).strftime("%d %H:%M %Z") == "30 03:30 CEST"


def test_cron_keeps_running_through_the_repeated_hour() -> None:
    slots = series("*/30 * * * *", at(2025, 10, 26, 1, 50), 6)
    assert [local(s).strftime("%H:%M %Z") for s in slots] == [
        "02:00 CEST", "02:30 CEST", "02:00 CET", "02:30 CET", "03:00 CET", "03:30 CET"]
    assert all(b - a == HOUR // 2 for a, b in itertools.pairwise(slots))


def test_first_slot() -> None:
    now = at(2025, 3, 28, 13, 0)
    assert first_slot(None, BERLIN, run_at=None, now_us=now) == now
    assert first_slot(parse_recurrence("daily"), BERLIN, run_at=now + HOUR,
                      now_us=now) == now + HOUR
    cron = parse_recurrence("0 9 * * *")
    assert local(first_slot(cron, BERLIN, run_at=None, now_us=now)).strftime(
        "%d %H:%M") == "29 09:00"
    nine = at(2025, 3, 29, 9, 0)
    assert first_slot(cron, BERLIN, run_at=nine, now_us=now) == nine  # inclusive
    with pytest.raises(InvalidSchedule):
        first_slot(None, BERLIN, run_at=1, now_us=now)
