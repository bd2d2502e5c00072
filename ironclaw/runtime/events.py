"""The two small protocols that let runtime pieces report what happens to them.

An event is any object with a dotted ``type`` string such as ``"supervisor.child_parked"``;
in practice a frozen ``attrs`` class that declares ``type`` as a ``ClassVar``. A sink
accepts events without ever blocking, so reporting can never stall the reporter: the
event bus is the sink used in production, tests plug in a list.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["DiscardEvents", "Event", "EventSink"]


class Event(Protocol):
    """Anything with a dotted type name, e.g. ``"session.started"``."""

    @property
    def type(self) -> str: ...


class EventSink(Protocol):
    """Where events go. ``publish`` must not block and must not raise."""

    def publish(self, event: Event) -> object: ...


class DiscardEvents:
    """A sink for when nobody is listening."""

    def publish(self, event: Event) -> None:
        del event
