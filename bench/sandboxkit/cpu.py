"""CPU time of process trees over a window: what idle sandboxes cost the host."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system time of one process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2:].split()
    # Fields 14 and 15 of stat(5), counted after the command name's closing paren.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def idle_cpu(roles_of: Callable[[], dict[str, list[int]]], seconds: float
             ) -> dict[str, float]:
    """CPU seconds each role spent during ``seconds`` of wall time, plus ``"total"``.
    A process that appears or goes during the window counts from its first reading,
    or not at all: an idle tree keeps its processes."""
    before = {role: {pid: cpu_seconds(pid) for pid in pids}
              for role, pids in roles_of().items()}
    time.sleep(seconds)
    out: dict[str, float] = {}
    for role, pids in roles_of().items():
        start = before.get(role, {})
        out[role] = sum(max(0.0, cpu_seconds(pid) - start[pid]) for pid in pids
                        if pid in start)
    out["total"] = sum(out.values())
    return out
