"""The server side of one HTTP/1.1 connection, parsed by h11.

A thin adapter between a Trio stream and :class:`h11.Connection`: it reads a request
head, reads a body under a byte cap, and writes a response either whole or streamed
(chunked, since the proxy re-frames upstream bodies after redaction). Everything the
peer sends is untrusted; h11 enforces the grammar and a header-size cap, and every
parse failure surfaces as :class:`BadRequest` with a status to answer.
:func:`serve_requests` is the request loop of one kept-alive connection, for the
brokers that answer whole JSON requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import attrs
import h11
import trio

__all__ = ["BadRequest", "BodyTooLarge", "RequestHead", "ServerConnection", "serve_requests"]

RECEIVE_SIZE = 64 * 1024
SERVER_HEADER = ("server", "ironclaw-modelproxy")


class BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BodyTooLarge(Exception):
    pass


@attrs.frozen
class RequestHead:
    method: str
    path: str
    query: str
    # Every Host header value (h11 insists on one for HTTP/1.1; more is an attack).
    hosts: tuple[str, ...]
    # Names lowercase; values decoded as latin-1, exactly the bytes received.
    headers: tuple[tuple[str, str], ...]
    content_length: int | None


def _head(event: h11.Request) -> RequestHead:
    try:
        method = event.method.decode("ascii")
        target = event.target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "request line is not ASCII") from None
    path, _, query = target.partition("?")
    headers = tuple((name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in event.headers)
    hosts = tuple(value for name, value in headers if name == "host")
    lengths = [value for name, value in headers if name == "content-length"]
    # h11 already refuses malformed or conflicting lengths; this is the belt.
    try:
        length = int(lengths[0]) if lengths else None
    except ValueError:
        raise BadRequest(400, "bad Content-Length") from None
    return RequestHead(method, path, query, hosts, headers, length)


class ServerConnection:
    """One accepted connection. Not safe for concurrent use (one request at a time)."""

    def __init__(self, stream: trio.abc.Stream, *, max_header_bytes: int = 64 * 1024) -> None:
        self._stream = stream
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)

    async def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint if 400 <= exc.error_status_hint < 500 else 400
                raise BadRequest(status, "malformed HTTP request") from None
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            if self._conn.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            data = await self._stream.receive_some(RECEIVE_SIZE)
            try:
                self._conn.receive_data(bytes(data))
            except RuntimeError:
                raise BadRequest(400, "data after close") from None

    async def next_request(self) -> RequestHead | None:
        """The next request's head, or None if the peer closed between requests."""
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise BadRequest(400, "expected a request")
        return _head(event)

    async def read_body(self, limit: int) -> bytes:
        """The whole body, or :class:`BodyTooLarge` as soon as it passes ``limit``."""
        parts: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise BodyTooLarge()
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise BadRequest(400, "incomplete request body")

    @property
    def can_respond(self) -> bool:
        return self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def reusable(self) -> bool:
        return self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE

    def next_cycle(self) -> None:
        self._conn.start_next_cycle()

    async def _send(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            await self._stream.send_all(data)

    async def start(self, status: int, headers: Sequence[tuple[str, str]], *,
                    close: bool = False) -> None:
        """Send a status line and headers; the body follows with :meth:`send`."""
        out = [SERVER_HEADER, *headers]
        # A request whose body was never read leaves the connection unusable, and
        # serve_requests closes it after this response: say so, or a client that
        # reuses the connection races our close and sees it drop without an answer.
        if close or self._conn.their_state is not h11.DONE:
            out.append(("connection", "close"))
        await self._send(h11.Response(
            status_code=status,
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in out],
        ))

    async def send(self, data: bytes) -> None:
        if data:
            await self._send(h11.Data(data=data))

    async def end(self) -> None:
        await self._send(h11.EndOfMessage())

    async def respond(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, *,
                      close: bool = False) -> None:
        await self.start(status, [*headers, ("content-length", str(len(body)))], close=close)
        await self.send(body)
        await self.end()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def serve_requests(
        stream: trio.abc.Stream, *, max_header_bytes: int, idle_timeout: float,
        respond: Callable[[ServerConnection, RequestHead], Awaitable[bool]],
        malformed: Callable[[ServerConnection, BadRequest], Awaitable[None]]) -> None:
    """Answer requests on one connection until the peer closes it, stays silent for
    ``idle_timeout`` seconds between requests, or ``respond`` returns False (close
    after this one). A request that is not well-formed HTTP gets ``malformed`` and ends
    the connection. A peer that goes away ends it quietly, whenever that happens."""
    conn = ServerConnection(stream, max_header_bytes=max_header_bytes)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        try:
            while True:
                head: RequestHead | None = None
                with trio.move_on_after(idle_timeout):
                    head = await conn.next_request()
                if head is None or not await respond(conn, head):
                    return
                if not conn.reusable:
                    return
                conn.next_cycle()
        except BadRequest as exc:
            await malformed(conn, exc)
