"""Timestamps on the wire: integer microseconds since the Unix epoch, UTC.

The anchor stored trimmed RFC3339 text and compared it as text, which sorts wrongly
('Z' sorts after '.'). An integer sorts correctly as stored, compares in SQL, and
needs no parsing on the hot path. Conversion helpers exist for display only.
"""

from __future__ import annotations

import datetime as _dt
import time

# Anything outside these bounds is garbage, not a time: years 2000..2200.
MIN_TIMESTAMP_US = 946_684_800_000_000
MAX_TIMESTAMP_US = 7_258_118_400_000_000


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(us: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(us / 1_000_000, tz=_dt.UTC)


def from_datetime(value: _dt.datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: a wire timestamp must carry a time zone")
    delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_iso(us: int) -> str:
    """Fixed-width ISO-8601 UTC text, for humans and JSON surfaces."""
    return to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_plausible(us: object) -> bool:
    return isinstance(us, int) and not isinstance(us, bool) and (
        MIN_TIMESTAMP_US <= us <= MAX_TIMESTAMP_US
    )
