"""Summary statistics and host facts shared by every suite."""

from __future__ import annotations

import os
import platform
import statistics
from typing import Any


def summarise(samples_s: list[float]) -> dict[str, float]:
    """Milliseconds: median, p90, p99, min, max, over the given samples in seconds."""
    ms = sorted(s * 1000 for s in samples_s)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": pct(0.90),
            "p99_ms": pct(0.99), "min_ms": ms[0], "max_ms": ms[-1]}


def host_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "kernel": platform.release(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "machine": platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    facts["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            facts["mem_total_kib"] = int(handle.readline().split()[1])
    except OSError:
        pass
    facts["cgroup"] = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "hybrid" if os.path.exists("/sys/fs/cgroup/unified") else "v1")
    try:
        import sqlcipher3
        conn = sqlcipher3.connect(":memory:")
        facts["sqlcipher"] = conn.execute("PRAGMA cipher_version").fetchone()[0]
        facts["sqlite"] = sqlcipher3.sqlite_version
        conn.close()
    except Exception as exc:  # a host without the wheel still gets a report
        facts["sqlcipher"] = f"unavailable: {exc}"
    return facts
