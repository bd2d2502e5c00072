"""The doorbell: a host-owned unix socket the agent connects to and waits on.

One byte means "look at your inbound queue now". Rings coalesce per connection: a
burst of wakes while the agent is busy becomes one byte, and ringing never blocks the
ringer. The agent also polls slowly on its own, so a ring lost to a reconnect delays
a reply by at most one safety poll, never loses it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio

from ironclaw.host.sockets.serving import accept_connections
from ironclaw.host.sockets.unix import bind_unix_socket, unlink_if_ours

MAX_CONNECTIONS = 4


class Doorbell:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._bells: set[trio.MemorySendChannel[None]] = set()
        self.rings = 0

    @property
    def connected(self) -> int:
        return len(self._bells)

    def ring(self) -> None:
        self.rings += 1
        for bell in list(self._bells):
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError,
                                     trio.ClosedResourceError):
                bell.send_nowait(None)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        # Same rules as the model socket: a host-owned directory, mode 0666 on the
        # socket (the sandbox uid connects), stale sockets replaced, long paths bound
        # through /proc/self/fd, and only our own inode unlinked on the way out.
        sock, identity = await bind_unix_socket(self.path)
        try:
            sock.listen(MAX_CONNECTIONS)
            listener = trio.SocketListener(sock)
        except BaseException:
            sock.close()
            raise
        try:
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                # The shared accept loop: at most MAX_CONNECTIONS open, accepts paced.
                await accept_connections(listener, None, max_connections=MAX_CONNECTIONS,
                                         connections=nursery, handle=self._serve_connection)
        finally:
            unlink_if_ours(self.path, identity)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        send, receive = trio.open_memory_channel[None](1)
        self._bells.add(send)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_for_close, stream, nursery.cancel_scope)
                async for _ in receive:
                    await stream.send_all(b"\x01")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._bells.discard(send)

    @staticmethod
    async def _watch_for_close(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """The agent never speaks; anything but silence (EOF, an error) ends it."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while await stream.receive_some(64):
                pass
        scope.cancel()
