"""Summary statistics, and the interleaved round-robin runner every suite uses.

These machines are shared and noisy, so a suite never measures case A for a while and
then case B: it runs one sample of every case per round, rotating the order each
round, so that drift (another tenant's build, a thermal step, a page-cache refill)
lands on every case alike and cancels out of their ratios.

A case that fails is recorded as failed with its reason and dropped from later rounds;
a case that cannot run at all (an absent runtime) is recorded as absent. Neither is
ever a zero.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["absent", "failed", "interleave", "interleave_async", "is_ok", "percentile",
           "ratio", "summarise"]

T = TypeVar("T")
STAT_KEYS = ("n", "median", "p90", "p99", "min", "max", "mean")


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest rank on ``(n - 1)``: with fewer than 100 samples p99 is the maximum, and
    the report says how many samples there were."""
    if not sorted_values:
        raise ValueError("no samples")
    return sorted_values[min(len(sorted_values) - 1, round(p * (len(sorted_values) - 1)))]


def summarise(samples: Sequence[float], *, unit: str = "ms", scale: float = 1000.0
              ) -> dict[str, Any]:
    """Median, p90, p99, min, max and mean of ``samples`` times ``scale`` (by default
    seconds in, milliseconds out)."""
    if not samples:
        return failed("no samples")
    values = sorted(float(s) * scale for s in samples)
    return {"status": "ok", "unit": unit, "n": len(values),
            "median": statistics.median(values), "p90": percentile(values, 0.90),
            "p99": percentile(values, 0.99), "min": values[0], "max": values[-1],
            "mean": statistics.fmean(values)}


def absent(reason: str) -> dict[str, Any]:
    return {"status": "absent", "reason": reason}


def failed(reason: str) -> dict[str, Any]:
    return {"status": "failed", "reason": reason}


def is_ok(entry: Mapping[str, Any] | None) -> bool:
    return bool(entry) and entry.get("status") == "ok"  # type: ignore[union-attr]


def ratio(num: Mapping[str, Any] | None, den: Mapping[str, Any] | None,
          key: str = "median") -> float | None:
    """``num[key] / den[key]``, or None when either side did not run (never 0)."""
    if not (is_ok(num) and is_ok(den)):
        return None
    a, b = num[key], den[key]  # type: ignore[index]
    if not (isinstance(a, int | float) and isinstance(b, int | float)) or b <= 0 or \
            math.isnan(a) or math.isnan(b):
        return None
    return float(a) / float(b)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:600]


class Interleaved(dict[str, list[Any]]):
    """Samples per case, plus ``failures``: case -> reason, for cases that were dropped,
    and ``errors``: case -> reasons of every failed sample (dropped or tolerated)."""

    failures: dict[str, str]
    errors: dict[str, list[str]]

    def __init__(self) -> None:
        super().__init__()
        self.failures = {}
        self.errors = {}

    def _failed(self, name: str, exc: BaseException, tolerate: int) -> None:
        reasons = self.errors.setdefault(name, [])
        reasons.append(_describe(exc))
        if len(reasons) > tolerate:
            self.failures[name] = reasons[-1]


def interleave(cases: Mapping[str, Callable[[], T]], *, iterations: int, warmup: int = 0,
               on_sample: Callable[[str], None] | None = None,
               deadline: float | None = None, tolerate: int = 0) -> Interleaved:
    """Run every case once per round, ``warmup`` discarded rounds then ``iterations``
    kept ones, rotating the order each round. ``deadline`` (a ``time.monotonic()``
    value) stops early; whatever was gathered is kept, and the report shows ``n``. A
    case is dropped after ``tolerate + 1`` failed samples; tolerated failures are kept
    in ``errors`` for the report, never silently."""
    names = list(cases)
    out = Interleaved()
    for name in names:
        out[name] = []
    for round_no in range(warmup + iterations):
        if deadline is not None and time.monotonic() > deadline and round_no > warmup:
            break
        shift = round_no % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            if name in out.failures:
                continue
            try:
                sample = cases[name]()
            except Exception as exc:
                out._failed(name, exc, tolerate)
                traceback.print_exc(limit=3)
                continue
            if round_no >= warmup:
                out[name].append(sample)
            if on_sample is not None:
                on_sample(name)
    return out


async def interleave_async(cases: Mapping[str, Callable[[], Awaitable[T]]], *,
                           iterations: int, warmup: int = 0,
                           on_sample: Callable[[str], None] | None = None,
                           deadline: float | None = None, tolerate: int = 0) -> Interleaved:
    """:func:`interleave` for coroutine cases (Trio suites)."""
    names = list(cases)
    out = Interleaved()
    for name in names:
        out[name] = []
    for round_no in range(warmup + iterations):
        if deadline is not None and time.monotonic() > deadline and round_no > warmup:
            break
        shift = round_no % max(1, len(names))
        for name in names[shift:] + names[:shift]:
            if name in out.failures:
                continue
            try:
                sample = await cases[name]()
            except Exception as exc:
                out._failed(name, exc, tolerate)
                continue
            if round_no >= warmup:
                out[name].append(sample)
            if on_sample is not None:
                on_sample(name)
    return out
