"""Opening the API's websockets with trio-websocket.

The token rides in the upgrade request's ``Authorization`` header (the API's scheme
for command-line clients), never in the URL. A refusal before the upgrade comes back
as :class:`trio_websocket.ConnectionRejected` (see :func:`rejected`).

:func:`connect` does what ``trio_websocket.open_websocket`` does, except that it owns
the TCP stream and always closes it. trio-websocket 0.12 leaves a client's socket
open in two cases: when the server refuses the upgrade (the reader task raises
before the connection is handed out), and when the server closes the websocket
first (a client waits for the server's TCP close and never closes its own side).
Either would leak a socket per reconnect of a long ``ironctl events``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import trio
from trio_websocket import (
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
)
from wsproto import ConnectionType, WSConnection

from .client import ApiFailure, CliError, Target, failure_from

MAX_FRAME = 1024 * 1024
CLOSE_TIMEOUT = 2.0


def ws_headers(token: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"User-Agent", b"ironctl")]
    if token:
        headers.append((b"Authorization", b"Bearer " + token.encode("ascii")))
    return headers


def resource(target: Target, route: str, query: dict[str, object]) -> str:
    """The request target: the prefix, the route, and a query without secrets."""
    shown = {k: str(v) for k, v in query.items() if v is not None}
    return f"{target.prefix}{route}" + ("?" + urlencode(shown) if shown else "")


def rejected(exc: ConnectionRejected) -> ApiFailure:
    return failure_from(exc.status_code, exc.body or b"")


async def _open_stream(target: Target) -> trio.abc.Stream:
    try:
        if target.scheme == "https":
            return await trio.open_ssl_over_tcp_stream(
                target.host, target.port, ssl_context=ssl.create_default_context(),
                https_compatible=True)
        return await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise HandshakeError from exc


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception that is not a cancellation in ``group``, if there is one."""
    found: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        elif not isinstance(exc, trio.Cancelled):
            found.append(exc)

    walk(group)
    return found[0] if len(found) == 1 else None


@asynccontextmanager
async def connect(target: Target, token: str | None, route: str, query: dict[str, object],
                  *, connect_timeout: float) -> AsyncIterator[WebSocketConnection]:
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if target.port in (80, 443) else f"{host}:{target.port}"
    with trio.move_on_after(connect_timeout) as opening:
        stream = await _open_stream(target)
    if opening.cancelled_caught:
        raise ConnectionTimeout
    try:
        async with trio.open_nursery() as nursery:
            ws = WebSocketConnection(
                stream, WSConnection(ConnectionType.CLIENT), host=host_header,
                path=resource(target, route, query), client_extra_headers=ws_headers(token),
                max_message_size=MAX_FRAME)
            nursery.start_soon(ws._reader_task)
            with trio.move_on_after(connect_timeout) as handshake:
                await ws._open_handshake.wait()
            if handshake.cancelled_caught:
                raise ConnectionTimeout
            try:
                yield ws
            finally:
                with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Strict nurseries wrap even a single error; the caller wants that error.
        single = _single(group)
        if single is None:
            raise
        raise single from None
    finally:
        await trio.aclose_forcefully(stream)


def parse_frame(message: str | bytes, what: str) -> dict[str, Any]:
    try:
        frame = json.loads(message)
    except ValueError:
        frame = None
    if not isinstance(frame, dict):
        raise CliError(f"the {what} sent something that is not a JSON object")
    return frame
