"""Plumbing shared by the fakes of websocket chat platforms (Slack, Discord).

* :class:`JsonHttp`: a bare ASGI app served by hypercorn on loopback, turning each HTTP
  request into a :class:`Request` for the fake's handler and its :class:`Reply` back.
* :class:`Changes`: "wait until this predicate holds", woken whenever the fake's state
  changes, so tests wait on conditions rather than sleeping.
* :func:`cut`: drop a server-side websocket without a closing handshake, as a network
  failure or a crashed front end would (the client sees code 1006).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["Changes", "JsonHttp", "Reply", "Request", "cut", "open_http"]


@attrs.frozen
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@attrs.frozen
class Reply:
    status: int = 200
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Reply]]


class JsonHttp:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        reply = await self._handler(Request(scope["method"], scope["path"],
                                            scope["query_string"].decode("latin-1"),
                                            headers, body))
        if isinstance(reply.body, bytes):  # a file's bytes, as a platform's CDN serves them
            payload, out = reply.body, [(b"content-type", b"application/octet-stream")]
        else:
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
            out = [(b"content-type", b"application/json; charset=utf-8")]
        out += [(k.encode(), v.encode()) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": payload, "more_body": False})


@asynccontextmanager
async def open_http(handler: Handler) -> AsyncIterator[str]:
    """Serve ``handler`` on 127.0.0.1 (ephemeral port); yields ``http://host:port``."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, JsonHttp(handler), config)
        try:
            yield binds[0]
        finally:
            nursery.cancel_scope.cancel()


class Changes:
    """Call :meth:`changed` after every state change; tests ``await until(pred)``."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    def changed(self) -> None:
        self._lot.unpark_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._lot.park()


async def cut(ws: trio_websocket.WebSocketConnection) -> None:
    """Drop the TCP connection under ``ws``, with no closing handshake."""
    stream = ws._stream  # trio-websocket offers no public abort
    await stream.aclose()
