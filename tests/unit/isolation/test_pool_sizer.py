"""The warm pool's sizing rule: demand in, memory out, with plain numbers for the clock
and for MemAvailable."""

from __future__ import annotations

import pytest

from ironclaw.host.isolation.pool import MiB, PoolSettings, PoolSizer, mem_available_bytes

PLENTY = 64 * 1024 * MiB
SETTINGS = PoolSettings(max_total=6, max_per_group=4, prewarm_groups=("demo",),
                        demand_window_s=600, burst_window_s=60,
                        memory_floor_bytes=1024 * MiB, sandbox_bytes=100 * MiB)


def test_a_prewarmed_group_keeps_one_and_others_none_until_claimed() -> None:
    sizer = PoolSizer(SETTINGS)
    assert sizer.targets(0.0, PLENTY, {}) == {"demo": 1}
    assert sizer.targets(0.0, PLENTY, {"old": 1}) == {"old": 0, "demo": 1}


def test_demand_grows_the_group_and_decays_with_time() -> None:
    sizer = PoolSizer(SETTINGS)
    for t in (0.0, 1.0, 2.0):
        sizer.record_claim("sales", t)
    assert sizer.targets(3.0, PLENTY, {})["sales"] == 4  # 1 + 3 recent, capped at 4
    # Past the burst window: one kept warm while the group is active at all.
    assert sizer.targets(100.0, PLENTY, {})["sales"] == 1
    # Past the demand window: none.
    assert sizer.targets(700.0, PLENTY, {"sales": 1})["sales"] == 0


def test_the_total_cap_goes_to_the_most_recently_claimed_groups() -> None:
    sizer = PoolSizer(SETTINGS)
    for t in (0.0, 1.0, 2.0):
        sizer.record_claim("a", t)
    for t in (3.0, 4.0, 5.0):
        sizer.record_claim("b", t)
    wants = sizer.targets(6.0, PLENTY, {})
    assert wants["b"] == 4 and wants["a"] == 2 and wants["demo"] == 0
    assert sum(wants.values()) == SETTINGS.max_total


def test_memory_stops_growth_at_the_floor_and_shrinks_below_it() -> None:
    sizer = PoolSizer(SETTINGS)
    for t in (0.0, 1.0, 2.0):
        sizer.record_claim("a", t)
    # Room for two more above the floor: growth stops there.
    room_for_two = SETTINGS.memory_floor_bytes + 250 * MiB
    assert sizer.targets(3.0, room_for_two, {"a": 1})["a"] == 3
    # 150 MiB under the floor: two of the three warm ones go.
    under = SETTINGS.memory_floor_bytes - 150 * MiB
    assert sizer.targets(3.0, under, {"a": 3}) == {"a": 1, "demo": 0}


def test_memory_goes_to_the_most_recently_claimed_group_first() -> None:
    sizer = PoolSizer(SETTINGS)
    sizer.record_claim("old", 0.0)
    sizer.record_claim("new", 10.0)
    room_for_one = SETTINGS.memory_floor_bytes + 150 * MiB
    # Both want 2 (1 + a recent claim); "old" already holds one: the one new sandbox
    # there is room for goes to "new".
    assert sizer.targets(11.0, room_for_one, {"old": 1}) == {"new": 1, "old": 1, "demo": 0}


@pytest.mark.parametrize("table, problem", [
    ({"max_total": 2, "max_per_group": 3}, "max_per_group"),
    ({"burst_window_s": 0}, "burst_window_s"),
    ({"enabled": 1}, "wrong type"),
    ({"max_total": True}, "wrong type"),
    ({"prewarm_groups": [1]}, "list of group ids"),
    ({"size": 3}, "unknown key"),
])
def test_bad_settings_are_refused(table: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        PoolSettings.from_table(table)


def test_mem_available_is_read_from_meminfo() -> None:
    assert mem_available_bytes(["MemTotal: 10 kB", "MemAvailable:  2048 kB"]) == 2048 * 1024
    assert mem_available_bytes() > 0
