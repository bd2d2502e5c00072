"""The benchmark harness runs and produces well-formed results. No timing is asserted:
performance is only ever claimed from bench/, as ratios within one run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_suite(suite: str) -> list[object]:
    result = subprocess.run([sys.executable, "-m", "bench", suite, "--quick", "--no-write"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    decoder, text, values = json.JSONDecoder(), result.stdout, []
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        values.append(value)
    return values


def test_queue_floor_suite_reports_every_measure() -> None:
    results, ratios = run_suite("queue-floor")
    assert set(results) == {"roundtrip_in_process", "roundtrip_cross_process",
                            "open_raw_key", "open_passphrase"}
    for summary in results.values():
        assert summary["min_ms"] <= summary["median_ms"] <= summary["max_ms"]
    assert set(ratios) == {"cross_over_in_process", "passphrase_over_raw_key"}


@pytest.mark.slow
def test_e2e_suite_loses_and_doubles_nothing() -> None:
    results, ratios, throughput = run_suite("e2e")
    assert {"reply_warm", "cold_start_first_reply", "queue_floor_cross_process"} <= set(results)
    assert set(ratios) == {"warm_p50_over_floor_p50", "warm_p99_over_floor_p99"}
    assert [t["sessions"] for t in throughput] == [1, 3]
    assert all(t["lost"] == 0 and t["duplicated"] == 0 for t in throughput)


@pytest.mark.slow
def test_api_suite_measures_latency_and_fanout_without_losses() -> None:
    results, ratios, detail = run_suite("api")
    assert {"api_10_clients", "api_20_clients", "fanout_lag_1", "fanout_lag_10"} <= set(
        results)
    assert all(t["errors"] == 0 for t in detail["latency"])
    one, many = detail["fanout"]
    assert one["delivered"] + one["dropped"] == one["events"]
    assert many["delivered"] + many["dropped"] == many["events"] * many["subscribers"]
    assert set(ratios) == {"fanout_p50_lag_many_over_one", "api_p99_most_over_fewest_clients"}
