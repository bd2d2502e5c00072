"""Event bus: non-blocking publish, per-subscriber overflow, filters, since= replay."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing

from ironclaw.runtime import Envelope, EventBus, Lagged, Subscription, TypeFilter


@attrs.frozen
class Happened:
    """A test event whose type is chosen per instance."""

    type: str
    n: int = 0


@attrs.frozen
class SessionStarted:
    type: ClassVar[str] = "session.started"
    session: str


def drain_nowait(subscription: Subscription) -> list[Envelope | Lagged]:
    items: list[Envelope | Lagged] = []
    while True:
        try:
            items.append(subscription.receive_nowait())
        except trio.WouldBlock:
            return items


def seqs(items: list[Envelope | Lagged]) -> list[int]:
    return [item.seq for item in items if isinstance(item, Envelope)]


async def test_slow_subscriber_never_blocks_publisher_and_learns_exactly_what_it_missed() -> None:
    bus = EventBus(buffer_size=1024)
    async with bus.subscribe() as never_reads, bus.subscribe(buffer_size=20_000) as roomy:
        # publish is synchronous: 10x the buffer goes through with no checkpoint at all,
        # which is only possible if a full subscriber costs the publisher nothing.
        for n in range(10 * 1024):
            bus.publish(Happened("tick", n))

        items = drain_nowait(never_reads)
        assert items[0] == Lagged(missed=9 * 1024)
        assert seqs(items) == list(range(9 * 1024 + 1, 10 * 1024 + 1))
        assert len(items) == 1 + 1024
        assert never_reads.dropped_total == 9 * 1024

        # Dropping is per subscriber: one with room lost nothing.
        other = drain_nowait(roomy)
        assert seqs(other) == list(range(1, 10 * 1024 + 1))
        assert roomy.dropped_total == 0


async def test_lagged_marker_sits_exactly_where_the_gap_is() -> None:
    bus = EventBus()
    async with bus.subscribe(buffer_size=3) as subscription:
        bus.publish(Happened("tick"))
        first = await subscription.receive()
        for _ in range(5):
            bus.publish(Happened("tick"))
        rest = drain_nowait(subscription)

    assert isinstance(first, Envelope) and first.seq == 1
    # Seqs 2..6 arrived while only 3 fit: 2 and 3 were dropped, oldest first.
    assert rest == [Lagged(missed=2), *rest[1:]]
    assert seqs(rest) == [4, 5, 6]


async def test_fast_subscriber_receives_everything_in_order() -> None:
    bus = EventBus(buffer_size=8)
    total = 5000
    received: list[Envelope | Lagged] = []

    async def consume(subscription: Subscription) -> None:
        async for item in subscription:
            received.append(item)
            if isinstance(item, Envelope) and item.seq == total:
                return

    with trio.fail_after(10):
        async with bus.subscribe() as subscription, trio.open_nursery() as nursery:
            nursery.start_soon(consume, subscription)
            for n in range(total):
                bus.publish(Happened("tick", n))
                await trio.lowlevel.checkpoint()

    assert all(isinstance(item, Envelope) for item in received)
    assert seqs(received) == list(range(1, total + 1))
    assert [item.event for item in received if isinstance(item, Envelope)] == [
        Happened("tick", n) for n in range(total)
    ]


async def test_type_filters_select_exact_types_and_dotted_prefixes() -> None:
    bus = EventBus()
    types = ["session.started", "session.ended", "session.tool.called", "sessions.x", "audit"]
    async with (
        bus.subscribe("session.*") as sessions,
        bus.subscribe(["audit", "session.ended"]) as picked,
        bus.subscribe("*") as everything,
    ):
        for event_type in types:
            bus.publish(Happened(event_type))
        assert [item.type for item in drain_nowait(sessions) if isinstance(item, Envelope)] == [
            "session.started",
            "session.ended",
            "session.tool.called",
        ]
        picked_types = [item.type for item in drain_nowait(picked) if isinstance(item, Envelope)]
        assert picked_types == ["session.ended", "audit"]
        assert len(drain_nowait(everything)) == len(types)


@pytest.mark.parametrize("pattern", ["", "ses*ion", "*.started", "session.*.x", ".*"])
def test_malformed_type_patterns_are_rejected(pattern: str) -> None:
    with pytest.raises(ValueError):
        TypeFilter.parse(pattern)


async def test_class_level_event_types_and_bus_stamps() -> None:
    clock = iter([100.0, 101.5])
    bus = EventBus(clock=lambda: next(clock))
    first = bus.publish(SessionStarted("a"))
    second = bus.publish(SessionStarted("b"))
    assert (first.seq, first.timestamp, first.type) == (1, 100.0, "session.started")
    assert (second.seq, second.timestamp, second.event) == (2, 101.5, SessionStarted("b"))
    assert bus.last_seq == 2


async def test_since_replays_missed_events_then_continues_live_without_gap_or_duplicate() -> None:
    bus = EventBus()
    total = 3000
    halfway = trio.Event()
    received: list[Envelope | Lagged] = []

    async def publish_steadily() -> None:
        for n in range(total):
            bus.publish(Happened("tick", n))
            if n == total // 2:
                halfway.set()
            await trio.lowlevel.checkpoint()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publish_steadily)
            await halfway.wait()
            # A client that saw up to 100 events ago reconnects while publishing goes on.
            since = bus.last_seq - 100
            async with bus.subscribe(since=since) as subscription:
                async for item in subscription:
                    received.append(item)
                    if isinstance(item, Envelope) and item.seq == total:
                        break

    assert not any(isinstance(item, Lagged) for item in received)
    assert seqs(received) == list(range(since + 1, total + 1))


async def test_since_with_filter_replays_only_matching_events() -> None:
    bus = EventBus()
    for event_type in ["session.started", "audit", "session.ended", "audit"]:
        bus.publish(Happened(event_type))
    async with bus.subscribe("session.*", since=1) as subscription:
        bus.publish(Happened("session.started"))
        items = drain_nowait(subscription)
    assert seqs(items) == [3, 5]


async def test_since_older_than_the_ring_reports_the_gap_first() -> None:
    bus = EventBus(ring_size=10)
    for n in range(30):
        bus.publish(Happened("tick", n))
    async with bus.subscribe(since=5) as subscription:
        items = drain_nowait(subscription)
    # Events 6..20 fell off the ring; 21..30 are still there.
    assert items[0] == Lagged(missed=15)
    assert seqs(items) == list(range(21, 31))
    assert len(items) == 11


async def test_replay_then_live_overflow_reports_the_live_gap_after_the_replay() -> None:
    bus = EventBus(ring_size=100)
    for _ in range(10):
        bus.publish(Happened("tick"))
    async with bus.subscribe(since=0, buffer_size=4) as subscription:
        for _ in range(10):
            bus.publish(Happened("tick"))
        items = drain_nowait(subscription)
    # Replay is not limited by the live buffer; the live part lost seqs 11..16.
    assert all(isinstance(item, Envelope) for item in items[:10])
    assert seqs(items[:10]) == list(range(1, 11))
    assert items[10] == Lagged(missed=6)
    assert seqs(items[11:]) == [17, 18, 19, 20]


async def test_since_at_the_head_replays_nothing_and_since_ahead_is_an_error() -> None:
    bus = EventBus()
    bus.publish(Happened("tick"))
    async with bus.subscribe(since=1) as subscription:
        assert drain_nowait(subscription) == []
        bus.publish(Happened("tick"))
        assert seqs(drain_nowait(subscription)) == [2]
    with pytest.raises(ValueError, match="ahead"):
        async with bus.subscribe(since=99):
            pass


async def test_leaving_the_block_unsubscribes_and_closes() -> None:
    bus = EventBus()
    async with bus.subscribe() as subscription:
        assert bus.subscriber_count == 1
    assert bus.subscriber_count == 0
    bus.publish(Happened("tick"))  # no subscriber left to deliver to, and no error
    with pytest.raises(trio.ClosedResourceError):
        await subscription.receive()


async def test_cancelled_receive_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    bus = EventBus()
    async with bus.subscribe() as subscription:
        with trio.move_on_after(1):
            await subscription.receive()
        bus.publish(Happened("tick", 7))
        item = await subscription.receive()
    assert isinstance(item, Envelope) and item.event == Happened("tick", 7)
