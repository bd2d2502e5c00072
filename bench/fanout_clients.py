"""Websocket subscribers for the fan-out case, in a process of their own.

``python -m bench.fanout_clients URL TOKEN SUBSCRIBERS EVENTS BATCH`` opens
SUBSCRIBERS connections to the event stream (``types=bench.*``, ``batch=BATCH``),
prints ``ready`` once every one has its ``stream.ready`` frame, then reads until each
has seen EVENTS ticks (or a lagged count standing for them, or is cut off by the
server), and prints one JSON line: the lag summary (publish to receipt, both on this
host's wall clock), frames received, frames dropped (``stream.lagged``, and the rest of
a cut-off subscriber's), subscribers cut off, and messages read. Running apart from the server
keeps the clients' parsing off the server's event loop: the lag is the server's.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from .stats import summarise

DEADLINE_S = 60.0


async def _subscriber(url: str, token: str, events: int, out: dict[str, Any],
                      ready: list[int], all_ready: trio.Event, subscribers: int) -> None:
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    async with open_websocket_url(url, extra_headers=headers, message_queue_size=4096) as ws:
        seen = 0
        while seen < events:
            try:
                raw = await ws.get_message()
            except ConnectionClosed:
                # Cut off by the server (4008: too far behind): the rest never came.
                out["cut"] += 1
                out["dropped"] += events - seen
                return
            message = json.loads(raw)
            out["messages"] += 1
            now = time.time()
            for frame in message if isinstance(message, list) else [message]:
                kind = frame.get("type")
                if kind == "stream.ready":
                    ready[0] += 1
                    if ready[0] == subscribers:
                        all_ready.set()
                elif kind == "stream.lagged":
                    out["dropped"] += frame["event"]["missed"]
                    seen += frame["event"]["missed"]
                elif kind == "bench.tick":
                    out["lags"].append(now - frame["event"]["sent"])
                    seen += 1


async def main(url: str, token: str, subscribers: int, events: int, batch: int) -> None:
    out: dict[str, Any] = {"lags": [], "dropped": 0, "messages": 0, "cut": 0}
    ready = [0]
    all_ready = trio.Event()
    full_url = f"{url}?types=bench.*&batch={batch}"
    with trio.move_on_after(DEADLINE_S) as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(subscribers):
                nursery.start_soon(_subscriber, full_url, token, events, out, ready,
                                   all_ready, subscribers)
            await all_ready.wait()
            print("ready", flush=True)
    lags = out.pop("lags")
    print(json.dumps({"received": len(lags), "timed_out": scope.cancelled_caught,
                      **out, **summarise(lags)}), flush=True)


if __name__ == "__main__":
    url, token, subscribers, events, batch = sys.argv[1:6]
    trio.run(main, url, token, int(subscribers), int(events), int(batch))
