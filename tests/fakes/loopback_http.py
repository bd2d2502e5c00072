"""A restartable HTTP server on loopback for fake chat platforms.

hypercorn serves a bare ASGI app that hands each request, read in full, to an async
handler and sends back the handler's :class:`Reply`. :meth:`LoopbackServer.restart`
stops the server, which cuts every connection in flight (a long poll included: the
client sees the connection drop without an answer), and serves again on the same port,
as a platform's front end does when it restarts. The fake's own state lives in the
handler's object, so it survives a restart.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["LoopbackServer", "Reply", "Request", "Watch", "open_loopback_server",
           "parse_multipart"]


def parse_multipart(content_type: str, body: bytes
                    ) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """A ``multipart/form-data`` body as (fields, files: name -> (filename, type,
    bytes)), parsed by the standard library's MIME parser; empty when it is not one."""
    if not content_type.startswith("multipart/form-data"):
        return {}, {}
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP)
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode("utf-8", "replace")
        else:
            files[name] = (filename, part.get_content_type(), payload)
    return fields, files


@attrs.frozen
class Request:
    method: str
    path: str  # percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def form(self) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
        """A ``multipart/form-data`` body (see :func:`parse_multipart`)."""
        return parse_multipart(self.headers.get("content-type", ""), self.body)

    def params(self) -> dict[str, Any]:
        """Query parameters merged with a JSON or form body (how the Bot API reads)."""
        merged: dict[str, Any] = dict(self.query)
        content_type = self.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = self.json()
            if isinstance(body, dict):
                merged.update(body)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            merged.update(parse_qsl(self.body.decode("utf-8", "replace")))
        else:
            merged.update(self.form()[0])
        return merged


@attrs.frozen
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)

    @classmethod
    def json(cls, status: int, payload: object,
             headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, json.dumps(payload).encode(),
                   (("content-type", "application/json"), *headers))


Handler = Callable[[Request], Awaitable[Reply]]


class Watch:
    """Wake waiters whenever a fake's state changes; tests and long polls use it."""

    def __init__(self) -> None:
        self._changed = trio.Event()

    def poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    async def wait_change(self) -> None:
        await self._changed.wait()


class _App:
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
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"),
                               keep_blank_values=True))
        reply = await self._handler(Request(scope["method"], scope["path"], query, headers,
                                            body))
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": [(k.encode(), v.encode()) for k, v in reply.headers]})
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})


class LoopbackServer:
    def __init__(self, handler: Handler, nursery: trio.Nursery) -> None:
        self._app = _App(handler)
        self._nursery = nursery
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self.port = 0
        self.base_url = ""
        self.restarts = 0

    async def start(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 0.1
        self._stopped = trio.Event()
        binds = await self._nursery.start(self._serve, config)
        self.base_url = binds[0]
        self.port = int(self.base_url.rsplit(":", 1)[1])

    async def _serve(self, config: Config, *, task_status: trio.TaskStatus[Any]) -> None:
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await serve(self._app, config, task_status=task_status)  # type: ignore[arg-type]
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        """Close the listener and every open connection, without answering."""
        if self._scope is not None:
            self._scope.cancel()
            await self._stopped.wait()
            self._scope = None

    async def restart(self) -> None:
        await self.stop()
        self.restarts += 1
        await self.start()


@asynccontextmanager
async def open_loopback_server(handler: Handler) -> AsyncIterator[LoopbackServer]:
    async with trio.open_nursery() as nursery:
        server = LoopbackServer(handler, nursery)
        await server.start()
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
