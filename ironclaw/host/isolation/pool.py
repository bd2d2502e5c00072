"""How many warm sandboxes to keep: the pool's settings and its sizing rule.

A warm sandbox is booted and waiting to be claimed (``sessions.warmpool``), so a new
or revived conversation skips the runtime's boot and the agent's start-up. Each costs
memory while it waits, so the pool follows demand and yields to memory pressure:

- per agent group, ``want = active + recent`` capped at ``max_per_group``: ``active`` is
  1 for a group listed in ``prewarm_groups`` or claimed from within the last
  ``demand_window_s``, ``recent`` the claims of the last ``burst_window_s`` (a burst of
  new conversations finds as many sandboxes waiting as the last burst took);
- across groups, at most ``max_total``, the most recently claimed groups first;
- memory: nothing more is started while ``MemAvailable`` minus one more sandbox would
  fall under ``memory_floor_bytes``, and below the floor the pool shrinks until it is
  back above it (idle warm sandboxes are the first memory the host can get back).

Pure: the caller passes the clock and the memory reading, so the rule is tested with
plain numbers.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["PoolSettings", "PoolSizer", "mem_available_bytes"]

MiB = 1024 * 1024


def _groups(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class PoolSettings:
    """``[sandbox_pool]`` in the config file. ``enabled`` applies to OCI runtimes
    only (the process runtime starts in milliseconds anyway)."""

    enabled: bool = True
    max_total: int = 8
    max_per_group: int = 4
    prewarm_groups: tuple[str, ...] = attrs.field(default=(), converter=_groups)
    demand_window_s: float = 900.0
    burst_window_s: float = 60.0
    memory_floor_bytes: int = 2048 * MiB
    sandbox_bytes: int = 96 * MiB  # what one waiting runsc sandbox is counted as
    tick_s: float = 1.0

    def __attrs_post_init__(self) -> None:
        if not (0 <= self.max_per_group <= self.max_total <= 1024):
            raise ValueError("need 0 <= max_per_group <= max_total <= 1024")
        if not (0 < self.burst_window_s <= self.demand_window_s <= 86_400):
            raise ValueError("need 0 < burst_window_s <= demand_window_s <= 86400")
        if self.memory_floor_bytes < 0 or not (MiB <= self.sandbox_bytes <= 1 << 40):
            raise ValueError("memory_floor_bytes must be >= 0 and sandbox_bytes between "
                             "1 MiB and 1 TiB")
        if not (0.01 <= self.tick_s <= 60):
            raise ValueError("tick_s must be between 0.01 and 60")

    @classmethod
    def for_dev(cls) -> PoolSettings:
        """Small: one warm sandbox, for the demo agent."""
        return cls(max_total=1, max_per_group=1, prewarm_groups=("demo",))

    @classmethod
    def from_table(cls, table: object) -> PoolSettings:
        """From the config file's ``[sandbox_pool]`` table; unknown keys and wrong
        types are errors."""
        if not isinstance(table, dict):
            raise ValueError("sandbox_pool must be a table")
        kinds: dict[str, tuple[type, ...]] = {
            "enabled": (bool,), "max_total": (int,), "max_per_group": (int,),
            "prewarm_groups": (list,), "demand_window_s": (int, float),
            "burst_window_s": (int, float), "memory_floor_bytes": (int,),
            "sandbox_bytes": (int,), "tick_s": (int, float)}
        unknown = sorted(set(table) - set(kinds))
        if unknown:
            raise ValueError(f"sandbox_pool: unknown key(s) {', '.join(unknown)}")
        for key, value in table.items():
            wrong_bool = isinstance(value, bool) and bool not in kinds[key]
            if wrong_bool or not isinstance(value, kinds[key]):
                raise ValueError(f"sandbox_pool.{key} has the wrong type")
        groups = table.get("prewarm_groups", [])
        if not all(isinstance(g, str) for g in groups):
            raise ValueError("sandbox_pool.prewarm_groups must be a list of group ids")
        return cls(**table)


class PoolSizer:
    """Remembers claims; says how many warm sandboxes each group should have."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._claims: dict[str, collections.deque[float]] = {}

    def record_claim(self, group: str, now: float) -> None:
        self._claims.setdefault(group, collections.deque()).append(now)

    def _forget_before(self, cutoff: float) -> None:
        for group in list(self._claims):
            claims = self._claims[group]
            while claims and claims[0] < cutoff:
                claims.popleft()
            if not claims:
                del self._claims[group]

    def targets(self, now: float, mem_available: int, warm: Mapping[str, int]
                ) -> dict[str, int]:
        """Per group, how many warm sandboxes to hold (starting ones count as warm).
        Every group in ``warm`` or with demand gets an entry, 0 meaning "none"."""
        s = self.settings
        self._forget_before(now - s.demand_window_s)
        groups = dict.fromkeys(s.prewarm_groups, -math.inf)
        for group, claims in self._claims.items():
            groups[group] = claims[-1]
        wants: dict[str, int] = {}  # most recently claimed first: memory goes in order
        budget = s.max_total
        for group in sorted(groups, key=lambda g: groups[g], reverse=True):
            recent = sum(1 for t in self._claims.get(group, ()) if t >= now - s.burst_window_s)
            want = min(s.max_per_group, 1 + recent, budget)
            wants[group] = want
            budget -= want
        for group in warm:
            wants.setdefault(group, 0)
        return _fit_memory(wants, warm, mem_available, s)


def _fit_memory(wants: dict[str, int], warm: Mapping[str, int], mem_available: int,
                s: PoolSettings) -> dict[str, int]:
    """Grow only while one more sandbox leaves MemAvailable above the floor; under the
    floor, give back as many as it takes to climb over it again."""
    spare = (mem_available - s.memory_floor_bytes) // s.sandbox_bytes
    held = sum(warm.values())
    if spare < 0:
        keep = max(0, held + int(spare))
        return _trim(wants, warm, keep)
    growth = sum(max(0, wants[g] - warm.get(g, 0)) for g in wants)
    if growth <= spare:
        return wants
    out = dict(wants)
    allowed = int(spare)
    for group in wants:  # most recently claimed first (insertion order)
        extra = max(0, wants[group] - warm.get(group, 0))
        grant = min(extra, allowed)
        out[group] = min(wants[group], warm.get(group, 0) + grant)
        allowed -= grant
    return out


def _trim(wants: dict[str, int], warm: Mapping[str, int], keep: int) -> dict[str, int]:
    out = {g: min(wants[g], warm.get(g, 0)) for g in wants}
    excess = sum(out.values()) - keep
    for group in reversed(list(out)):  # the least recently claimed give back first
        if excess <= 0:
            break
        give = min(out[group], excess)
        out[group] -= give
        excess -= give
    return out


def mem_available_bytes(lines: Iterable[str] | None = None) -> int:
    """``MemAvailable`` from /proc/meminfo (blocking; a few microseconds)."""
    if lines is None:
        with open("/proc/meminfo") as handle:
            return mem_available_bytes(handle)
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")
