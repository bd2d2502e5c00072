"""Recurrence rules and their slots, evaluated in the task's own IANA time zone.

A rule is one of:

* ``hourly``, or an interval ``<n>s`` / ``<n>m`` / ``<n>h`` (at least one minute):
  elapsed time, ``anchor + k * step``. An hour is sixty minutes whatever DST does.
* ``daily``, ``weekly``, or ``<n>d``: calendar days at the anchor's *local* wall-clock
  time, so "daily at 09:00 Europe/Berlin" stays 09:00 in Berlin across DST changes.
* a five-field cron expression (``croniter``), matched against local wall-clock time.

Slots never drift: they are computed from the task's fixed anchor (its first run) and
"now", not from the previous slot. :func:`next_slot` returns the first slot *strictly
after* a moment, so a task that fires late after downtime runs once, not once per
missed slot.

DST edges, decided once here:
* a local time that does not exist (the spring-forward gap) runs at the same offset
  from the gap's start as it would have had (02:30 becomes 03:30 in Berlin);
* a local time that occurs twice (fall-back) runs at its first occurrence for
  calendar-day rules; a cron expression matches both occurrences, so "every 15
  minutes" keeps running through the repeated hour (and "30 2 * * *" runs twice on
  that night, as its wall clock says 02:30 twice).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from ironclaw.contract.clock import from_datetime, is_plausible, to_datetime

__all__ = [
    "InvalidSchedule",
    "Recurrence",
    "RuleKind",
    "first_slot",
    "next_slot",
    "parse_recurrence",
    "parse_timezone",
]

US = 1_000_000
MIN_INTERVAL_US = 60 * US
MAX_INTERVAL_US = 366 * 86_400 * US
MAX_DAYS = 366
_INTERVAL = re.compile(r"(\d{1,9})\s*([smhd])")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-]{1,64}")
_ZONE = re.compile(r"[A-Za-z0-9_+\-]{1,32}(/[A-Za-z0-9_+\-]{1,32}){0,2}")
_UNIT_US = {"s": US, "m": 60 * US, "h": 3600 * US}
_MAX_CRON_STEPS = 2_000  # candidate slots examined per call before giving up
_DST_SLACK = dt.timedelta(hours=2)
_DST_SLACK_US = 2 * 3600 * US


class InvalidSchedule(ValueError):
    """A recurrence, time zone or run time that cannot be scheduled."""


class RuleKind(enum.Enum):
    INTERVAL = "interval"
    DAYS = "days"
    CRON = "cron"


@attrs.frozen
class Recurrence:
    text: str  # as stored, normalised
    kind: RuleKind
    step_us: int = 0  # INTERVAL
    days: int = 0  # DAYS
    cron: str = ""  # CRON


def parse_timezone(name: str | None) -> ZoneInfo:
    """An IANA zone by name (default UTC). Only zone-shaped names reach zoneinfo."""
    if name is None or name == "":
        return ZoneInfo("UTC")
    if not _ZONE.fullmatch(name) or ".." in name:
        raise InvalidSchedule("not an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSchedule("unknown time zone") from None


def parse_recurrence(text: str | None) -> Recurrence | None:
    """The rule for ``text``; ``None`` (or empty) means a one-shot task."""
    if text is None or not text.strip():
        return None
    raw = " ".join(text.split())
    word = raw.lower()
    if word == "hourly":
        return Recurrence("hourly", RuleKind.INTERVAL, step_us=3600 * US)
    if word == "daily":
        return Recurrence("daily", RuleKind.DAYS, days=1)
    if word == "weekly":
        return Recurrence("weekly", RuleKind.DAYS, days=7)
    if match := _INTERVAL.fullmatch(word):
        count, unit = int(match[1]), match[2]
        if unit == "d":
            if not 1 <= count <= MAX_DAYS:
                raise InvalidSchedule(f"a day interval is 1 to {MAX_DAYS} days")
            return Recurrence(f"{count}d", RuleKind.DAYS, days=count)
        step = count * _UNIT_US[unit]
        if step < MIN_INTERVAL_US:
            raise InvalidSchedule("an interval is at least one minute")
        if step > MAX_INTERVAL_US:
            raise InvalidSchedule("an interval is at most a year")
        return Recurrence(f"{count}{unit}", RuleKind.INTERVAL, step_us=step)
    fields = raw.split(" ")
    if len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields):
        try:
            valid = croniter.is_valid(raw)
        except Exception:  # croniter raises assorted errors on odd input
            valid = False
        if not valid:
            raise InvalidSchedule("not a valid cron expression")
        rule = Recurrence(raw, RuleKind.CRON, cron=raw)
        # A well-formed expression that never matches ("0 0 31 2 *") is refused now.
        next_slot(rule, ZoneInfo("UTC"), anchor_us=_REFERENCE_US, after_us=_REFERENCE_US)
        return rule
    raise InvalidSchedule(
        "recurrence is hourly, daily, weekly, an interval like 15m/2h/1d, "
        "or a five-field cron expression")


_REFERENCE_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z, to probe a cron rule


def _local_naive(us: int, zone: ZoneInfo) -> dt.datetime:
    return to_datetime(us).astimezone(zone).replace(tzinfo=None)


def _localise(naive: dt.datetime, zone: ZoneInfo, fold: int = 0) -> int:
    return from_datetime(naive.replace(tzinfo=zone, fold=fold))


def next_slot(rule: Recurrence, zone: ZoneInfo, *, anchor_us: int, after_us: int) -> int:
    """The first slot of ``rule`` strictly after ``after_us``. ``anchor_us`` is the
    series' first run: intervals count from it, day rules keep its local time of day.
    Raises :class:`InvalidSchedule` when no slot exists in the plausible range."""
    if rule.kind is RuleKind.INTERVAL:
        if after_us < anchor_us:
            slot = anchor_us
        else:
            slot = anchor_us + ((after_us - anchor_us) // rule.step_us + 1) * rule.step_us
    elif rule.kind is RuleKind.DAYS:
        slot = _next_days(rule.days, zone, anchor_us, after_us)
    else:
        slot = _next_cron(rule.cron, zone, after_us)
    if not is_plausible(slot):
        raise InvalidSchedule("the next run falls outside the supported time range")
    return slot


def _next_days(days: int, zone: ZoneInfo, anchor_us: int, after_us: int) -> int:
    wall = _local_naive(anchor_us, zone)
    behind = (_local_naive(after_us, zone).date() - wall.date()).days
    # Start one period early: a local day is 23 to 25 hours, so the candidate on
    # "after"'s own date may still lie before it, or the one before may lie after it.
    step = max(0, behind // days - 1)
    for _ in range(4):
        candidate = _localise(wall + dt.timedelta(days=step * days), zone)
        if candidate > after_us:
            return candidate
        step += 1
    raise InvalidSchedule("no day slot found")  # unreachable for real zones


def _instants(naive: dt.datetime, zone: ZoneInfo) -> tuple[int, ...]:
    """The moments a local wall-clock time names: one; two inside a repeated
    (fall-back) hour; and for a time skipped by spring-forward, the moment it would
    have had at the old offset (02:30 becomes 03:30 in Berlin)."""
    first, second = _localise(naive, zone, 0), _localise(naive, zone, 1)
    if first == second:
        return (first,)
    if _local_naive(first, zone) == naive and _local_naive(second, zone) == naive:
        return (min(first, second), max(first, second))
    return (first,)


def _offset(zone: ZoneInfo, us: int) -> dt.timedelta | None:
    return to_datetime(us).astimezone(zone).utcoffset()


def _next_cron(expression: str, zone: ZoneInfo, after_us: int) -> int:
    # Local wall-clock order and real order differ only around an offset change, by
    # at most _DST_SLACK. Usually there is none nearby, and the first local match is
    # the answer. Otherwise start that much early, and stop once the candidates are
    # that far past the best slot found.
    best: int | None = None
    try:
        naive = croniter(expression, _local_naive(after_us, zone)).get_next(dt.datetime)
        slot = _localise(naive, zone)
        if slot > after_us and _offset(zone, after_us - _DST_SLACK_US) == _offset(
                zone, slot + _DST_SLACK_US):
            return slot
        candidates = croniter(expression, _local_naive(after_us, zone) - _DST_SLACK)
        for _ in range(_MAX_CRON_STEPS):
            naive = candidates.get_next(dt.datetime)
            instants = _instants(naive, zone)
            for slot in instants:
                if slot > after_us and (best is None or slot < best):
                    best = slot
            if best is not None and instants[0] > best + _DST_SLACK_US:
                return best
    except (CroniterBadCronError, CroniterBadDateError, ValueError, OverflowError):
        pass
    if best is not None:
        return best
    raise InvalidSchedule("the cron expression has no upcoming match")


def first_slot(rule: Recurrence | None, zone: ZoneInfo, *, run_at: int | None,
               now_us: int) -> int:
    """When a new (or re-timed) task first runs: ``run_at`` or now; for a cron rule,
    its first match at or after that moment."""
    start = now_us if run_at is None else run_at
    if rule is not None and rule.kind is RuleKind.CRON:
        return next_slot(rule, zone, anchor_us=start, after_us=start - 1)
    if not is_plausible(start):
        raise InvalidSchedule("run_at is outside the supported time range")
    return start
