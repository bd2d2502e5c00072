"""Each event's frame is rendered once for every subscriber (ws/frames.py)."""

from __future__ import annotations

import json
from typing import ClassVar

import attrs

from ironclaw.host.api.ws.frames import SharedFrames
from ironclaw.runtime import EventBus


@attrs.frozen
class Ping:
    type: ClassVar[str] = "test.ping"
    n: int


def test_a_frame_is_rendered_once_however_many_send_it() -> None:
    bus = EventBus()
    frames = SharedFrames(size=2)
    first, second, third = (bus.publish(Ping(n)) for n in range(3))
    texts = [frames.text(first) for _ in range(100)]
    assert all(t is texts[0] for t in texts) and frames.rendered == 1
    assert json.loads(texts[0]) == {"seq": first.seq, "type": "test.ping",
                                    "at": round(first.timestamp * 1e6), "event": {"n": 0}}
    frames.text(second)
    frames.text(third)  # the first falls out of a cache of two
    assert frames.rendered == 3
    assert frames.text(first) == texts[0] and frames.rendered == 4
