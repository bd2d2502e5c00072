"""An in-process event bus that a slow reader can never slow down.

``publish`` is synchronous, O(subscribers) and never blocks or raises on account of a
subscriber: each subscriber owns a bounded buffer, and when it falls behind the bus drops
that subscriber's *oldest* buffered events (the newest state is the useful one) and counts
them. The subscriber learns the count from a :class:`Lagged` item delivered exactly where
the gap is, before anything newer.

The bus stamps every event with a sequence number (1, 2, 3, ...) and a wall-clock time and
keeps the last ``ring_size`` envelopes, so a reconnecting client can subscribe with
``since=<last seq it saw>`` and get the events it missed followed by the live stream, with
no gap and no duplicate at the seam: the ring snapshot and the registration for live
events happen in one synchronous step, with no checkpoint in between.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import attrs
import trio

from ironclaw.runtime.events import Event

__all__ = ["Envelope", "EventBus", "Lagged", "Subscription", "TypeFilter"]

DEFAULT_RING_SIZE = 4096
DEFAULT_BUFFER_SIZE = 1024


@attrs.frozen
class Envelope:
    """One published event as the bus recorded it."""

    seq: int
    timestamp: float
    event: Event

    @property
    def type(self) -> str:
        return self.event.type


@attrs.frozen
class Lagged:
    """``missed`` events that this subscriber will never see sit here in the stream.

    After an overflow the count is exact. For a ``since=`` older than the ring it is the
    number of events (of any type) that fell off the ring, so a filtered subscriber may
    have missed fewer.
    """

    missed: int


@attrs.frozen
class TypeFilter:
    """Which event types a subscriber wants, as a set of patterns.

    A pattern is ``"*"`` (everything), ``"prefix.*"`` (every type under ``prefix.``, at
    any depth), or an exact type. Deliberately not full globbing: dotted prefixes are all
    the bus needs, and they keep matching cheap and unsurprising.
    """

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    everything: bool = False

    @classmethod
    def parse(cls, patterns: str | Iterable[str]) -> TypeFilter:
        if isinstance(patterns, str):
            patterns = (patterns,)
        exact: set[str] = set()
        prefixes: list[str] = []
        everything = False
        for pattern in patterns:
            if pattern == "*":
                everything = True
            elif pattern.endswith(".*") and "*" not in pattern[:-2] and len(pattern) > 2:
                prefixes.append(pattern[:-1])  # keep the dot: "session." must not match "sessions"
            elif pattern and "*" not in pattern:
                exact.add(pattern)
            else:
                raise ValueError(
                    f"bad event type pattern {pattern!r}: use '*', 'prefix.*' or an exact type"
                )
        return cls(exact=frozenset(exact), prefixes=tuple(prefixes), everything=everything)

    def matches(self, event_type: str) -> bool:
        return (
            self.everything
            or event_type in self.exact
            or any(event_type.startswith(prefix) for prefix in self.prefixes)
        )


class Subscription:
    """One subscriber's view of the bus; obtain it from :meth:`EventBus.subscribe`.

    Yields :class:`Envelope` items in sequence order, interleaved with :class:`Lagged`
    markers wherever events were lost.
    """

    def __init__(
        self,
        type_filter: TypeFilter,
        buffer_size: int,
        replay: Iterable[Envelope],
        missed_before_replay: int,
    ) -> None:
        self._filter = type_filter
        self._buffer_size = buffer_size
        self._replay: deque[Envelope] = deque(replay)
        self._missed_before_replay = missed_before_replay
        self._buffer: deque[Envelope] = deque()
        self._missed = 0
        self._dropped_total = 0
        self._closed = False
        self._waiters = trio.lowlevel.ParkingLot()

    @property
    def dropped_total(self) -> int:
        """Events dropped for this subscriber because its buffer was full, ever."""
        return self._dropped_total

    def _offer(self, envelope: Envelope) -> None:
        """Called by the bus for every published event; must stay O(1) and non-blocking."""
        if not self._filter.matches(envelope.type):
            return
        if len(self._buffer) >= self._buffer_size:
            self._buffer.popleft()
            self._missed += 1
            self._dropped_total += 1
        self._buffer.append(envelope)
        self._waiters.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._replay.clear()
        self._waiters.unpark_all()

    def receive_nowait(self) -> Envelope | Lagged:
        """The next item, or raise :class:`trio.WouldBlock` if there is none yet."""
        if self._closed:
            raise trio.ClosedResourceError("subscription is closed")
        if self._missed_before_replay:
            missed, self._missed_before_replay = self._missed_before_replay, 0
            return Lagged(missed)
        if self._replay:
            return self._replay.popleft()
        if self._missed:
            missed, self._missed = self._missed, 0
            return Lagged(missed)
        if self._buffer:
            return self._buffer.popleft()
        raise trio.WouldBlock

    async def receive(self) -> Envelope | Lagged:
        """Wait for the next item."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._waiters.park()
            else:
                # Item already taken: a cancellation now would lose it, so don't allow one.
                await trio.lowlevel.cancel_shielded_checkpoint()
                return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Envelope | Lagged:
        try:
            return await self.receive()
        except trio.ClosedResourceError:
            raise StopAsyncIteration from None


class EventBus:
    """Sequenced, buffered fan-out of events to any number of subscribers."""

    def __init__(
        self,
        *,
        ring_size: int = DEFAULT_RING_SIZE,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ring_size < 0:
            raise ValueError("ring_size must be >= 0")
        if buffer_size < 1:
            raise ValueError("buffer_size must be >= 1")
        self._ring: deque[Envelope] = deque(maxlen=ring_size)
        self._default_buffer_size = buffer_size
        self._clock = clock
        self._last_seq = 0
        self._subscribers: dict[int, Subscription] = {}

    @property
    def last_seq(self) -> int:
        """Sequence number of the most recent event, 0 before the first."""
        return self._last_seq

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> Envelope:
        """Record ``event`` and hand it to every interested subscriber. Never blocks."""
        self._last_seq += 1
        envelope = Envelope(seq=self._last_seq, timestamp=self._clock(), event=event)
        self._ring.append(envelope)
        for subscription in self._subscribers.values():
            subscription._offer(envelope)
        return envelope

    @asynccontextmanager
    async def subscribe(
        self,
        types: str | Iterable[str] = "*",
        *,
        since: int | None = None,
        buffer_size: int | None = None,
    ) -> AsyncIterator[Subscription]:
        """Receive events whose type matches ``types`` while the block runs.

        With ``since``, first replay the retained events with a sequence number greater
        than ``since``, then continue live.
        """
        type_filter = TypeFilter.parse(types)
        size = self._default_buffer_size if buffer_size is None else buffer_size
        if size < 1:
            raise ValueError("buffer_size must be >= 1")
        replay: list[Envelope] = []
        missed = 0
        if since is not None:
            replay, missed = self._replay_after(since, type_filter)
        # No checkpoint between the snapshot above and registering below: that is what
        # makes the replay-to-live seam exact.
        subscription = Subscription(type_filter, size, replay, missed)
        key = id(subscription)
        self._subscribers[key] = subscription
        try:
            yield subscription
        finally:
            del self._subscribers[key]
            subscription._close()

    def _replay_after(self, since: int, type_filter: TypeFilter) -> tuple[list[Envelope], int]:
        if since < 0:
            raise ValueError("since must be >= 0")
        if since > self._last_seq:
            # Most likely a client still holding a sequence number from an earlier run of
            # the bus; pretending we are caught up would silently hide everything.
            raise ValueError(f"since={since} is ahead of the bus (last seq {self._last_seq})")
        oldest_retained = self._ring[0].seq if self._ring else self._last_seq + 1
        missed = max(0, oldest_retained - 1 - since)
        replay = [
            envelope
            for envelope in self._ring
            if envelope.seq > since and type_filter.matches(envelope.type)
        ]
        return replay, missed
