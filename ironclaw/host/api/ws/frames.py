"""Each event's stream frame, rendered once however many subscribers send it.

Turning an event into its JSON text is most of what a subscriber's pump does, and it
comes out the same for every subscriber: at a hundred subscribers the same text was
built a hundred times. :class:`SharedFrames` keys the text by the bus's sequence
number and keeps the most recent ``size`` of them, so every subscriber that keeps up
takes the text the first one built; one that falls further behind than that builds its
own copy. What a subscriber may see is still decided per subscriber, before the send:
the cache only shares the bytes.
"""

from __future__ import annotations

import json
from collections import OrderedDict

from ironclaw.runtime import Envelope

from .. import render

__all__ = ["SharedFrames", "frame_text"]

DEFAULT_SIZE = 4096


def frame_text(frame: dict[str, object]) -> str:
    """The wire form of one frame (compact, UTF-8 as is)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


class SharedFrames:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self._size = size
        self._texts: OrderedDict[int, str] = OrderedDict()
        self.rendered = 0  # frames built, for tests and the bench

    def text(self, envelope: Envelope) -> str:
        text = self._texts.get(envelope.seq)
        if text is None:
            text = frame_text(render.envelope(envelope))
            self.rendered += 1
            self._texts[envelope.seq] = text
            while len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text
