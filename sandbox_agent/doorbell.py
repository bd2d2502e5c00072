"""The doorbell: how the host says "look at inbound now".

``wake.sock`` is a host-owned unix stream socket; the host writes one byte per
wake. The agent keeps one connection open and treats any byte as "look at inbound
now", which is what lets a reply start within a millisecond of the host's commit
instead of at the next poll. The socket is optional (a dev host may not offer it) and
may come and go with the host, so the agent reconnects with backoff and, meanwhile,
relies on its safety poll.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import trio

log = logging.getLogger(__name__)

DOORBELL_MIN_BACKOFF_S = 0.05
DOORBELL_MAX_BACKOFF_S = 5.0
# A connection that lived this long was healthy: the next drop starts backoff afresh.
DOORBELL_HEALTHY_S = 1.0


async def serve_doorbell(path: Path, ring: Callable[[], None], *,
                         min_backoff_s: float = DOORBELL_MIN_BACKOFF_S,
                         max_backoff_s: float = DOORBELL_MAX_BACKOFF_S) -> None:
    backoff = min_backoff_s
    reported_absent = False
    while True:
        try:
            stream = await trio.open_unix_socket(str(path))
        except OSError as exc:
            if not reported_absent:
                log.info("doorbell unavailable (%s); polling until it appears",
                         type(exc).__name__)
                reported_absent = True
        else:
            reported_absent = False
            connected_at = trio.current_time()
            rang = await _listen(stream, ring)
            if rang or trio.current_time() - connected_at >= DOORBELL_HEALTHY_S:
                backoff = min_backoff_s
            log.info("doorbell connection closed; reconnecting")
        await trio.sleep(backoff * random.uniform(0.5, 1.0))
        backoff = min(backoff * 2, max_backoff_s)


async def _listen(stream: trio.SocketStream, ring: Callable[[], None]) -> bool:
    """Ring for every read that returns bytes, until the host hangs up. Returns
    whether any byte arrived."""
    rang = False
    async with stream:
        # Wakes sent while we were not connected are lost: look at inbound once now.
        ring()
        while True:
            try:
                data = await stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return rang
            if not data:
                return rang
            rang = True
            ring()

