"""A TCP relay between a client under test and a real server, to observe and to cut.

It forwards bytes both ways, line-aware, and records each line the client sends with
its arrival time (how the IRC tests check the adapter's pacing on the wire). The test
can cut every connection now (:meth:`cut`), cut right after forwarding a server line
that matches (:meth:`cut_after`: the client has the line, then loses the connection),
refuse new connections while held (:meth:`hold` / :meth:`release`), or freeze (stop
forwarding without closing, as a dead network path does).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable

import attrs
import trio


@attrs.frozen
class SentLine:
    line: bytes
    at: float
    connection: int


class TcpRelay:
    def __init__(self, upstream_port: int, *, lines: bool = True) -> None:
        self.upstream_port = upstream_port
        self.lines = lines  # False: forward bytes as they come (XMPP has no lines)
        self.port = 0
        self.sent: list[SentLine] = []
        self.connections = 0
        self.held = False
        self.frozen = False
        self._cut_after: Callable[[bytes], bool] | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._changed = trio.lowlevel.ParkingLot()
        self._thaw = trio.Event()

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def cut_after(self, predicate: Callable[[bytes], bool]) -> None:
        """Forward the next server line matching ``predicate``, then cut and hold."""
        self._cut_after = predicate

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False

    def freeze(self) -> None:
        self.frozen = True
        self._thaw = trio.Event()

    def thaw(self) -> None:
        self.frozen = False
        self._thaw.set()

    async def wait_connections(self, count: int) -> None:
        while self.connections < count:
            await self._changed.park()

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.held:
            await client.aclose()
            return
        self.connections += 1
        number = self.connections
        self._changed.unpark_all()
        try:
            server = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
        except OSError:
            await client.aclose()
            return
        try:
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pipe, client, server, number, True, scope)
                    nursery.start_soon(self._pipe, server, client, number, False, scope)
        finally:
            self._scopes.discard(scope)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(client)
                await trio.aclose_forcefully(server)

    async def _pipe(self, source: trio.SocketStream, sink: trio.SocketStream, number: int,
                    from_client: bool, scope: trio.CancelScope) -> None:
        buffer = b""
        try:
            while True:
                data = await source.receive_some(65536)
                if not data:
                    break
                while self.frozen:
                    await self._thaw.wait()
                buffer += data
                if not self.lines:
                    await sink.send_all(buffer)
                    buffer = b""
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line += b"\n"
                    if from_client:
                        self.sent.append(SentLine(line, trio.current_time(), number))
                        self._changed.unpark_all()
                    await sink.send_all(line)
                    if not from_client and self._cut_after is not None \
                            and self._cut_after(line):
                        # The client gets the line, then end-of-stream (a FIN, not a
                        # reset that could discard what it has not read yet); the
                        # server loses its client at once.
                        self._cut_after = None
                        self.held = True
                        await source.aclose()
                        await sink.send_eof()
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side ended: end the other


@contextlib.asynccontextmanager
async def open_relay(upstream_port: int, *, lines: bool = True
                     ) -> AsyncIterator[TcpRelay]:
    relay = TcpRelay(upstream_port, lines=lines)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, relay._handle, 0, host="127.0.0.1"))
        relay.port = listeners[0].socket.getsockname()[1]
        yield relay
        nursery.cancel_scope.cancel()
