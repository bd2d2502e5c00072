"""The loop-lag instrument sees a stall of the event loop as a late wake-up, and
``/metrics`` exports what it saw; ``docs/api.md`` lists exactly the metrics served."""

from __future__ import annotations

import math
import re
from pathlib import Path

import trio
import trio.testing
from prometheus_client import generate_latest

from ironclaw.host.api.metrics import ApiMetrics
from ironclaw.runtime import LoopLagMonitor
from ironclaw.runtime.looplag import LAG_BUCKETS_S

API_DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"


async def test_a_stalled_loop_is_seen_as_lag_of_the_stall(
        autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopLagMonitor(interval_s=0.02)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        with monitor.recording() as samples:
            await trio.sleep(1.0)
            # Hold the loop: time passes while no task may run (as a blocking open of a
            # FIFO would hold it).
            autojump_clock.jump(0.75)
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    assert samples and max(samples) >= 0.75 - 0.02
    assert monitor.max_s == max(samples)
    assert sum(1 for s in samples if s > 0.5) == 1  # one stall, one late wake-up


async def test_an_idle_loop_shows_no_lag(autojump_clock: trio.testing.MockClock) -> None:
    monitor = LoopLagMonitor(interval_s=0.02)
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        with monitor.recording() as samples:
            await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert len(samples) >= 90 and max(samples) == 0.0


def test_buckets_are_cumulative_and_the_maximum_is_kept() -> None:
    monitor = LoopLagMonitor()
    for lag in (0.0004, 0.003, 0.3, 12.0, -1.0):
        monitor.record(lag)
    snap = monitor.snapshot()
    assert snap.count == 5 and snap.max_s == 12.0
    counts = dict(snap.buckets)
    assert counts[0.001] == 2  # the negative sample counts as no lag
    assert counts[0.005] == 3 and counts[0.5] == 4 and counts[10.0] == 4
    assert counts[math.inf] == 5
    assert [bound for bound, _ in snap.buckets] == list(LAG_BUCKETS_S)


def test_metrics_export_the_lag_as_a_histogram_and_a_maximum() -> None:
    monitor = LoopLagMonitor()
    monitor.record(0.3)
    monitor.record(0.002)
    metrics = ApiMetrics(monitor)

    text = generate_latest(metrics.registry).decode()
    assert 'ironclaw_event_loop_lag_seconds_bucket{le="0.25"} 1.0' in text
    assert 'ironclaw_event_loop_lag_seconds_bucket{le="+Inf"} 2.0' in text
    assert "ironclaw_event_loop_lag_seconds_count 2.0" in text
    assert "ironclaw_event_loop_lag_max_seconds 0.3" in text


def test_the_api_doc_lists_exactly_the_metrics_served() -> None:
    metrics = ApiMetrics(LoopLagMonitor())
    served = {family.name for family in metrics.registry.collect()}
    section = API_DOC.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(ironclaw_[a-z_]+)` \|", section, re.MULTILINE))
    assert documented == served
