"""The MCP client end of one server instance: its stdio pipes as an SDK ClientSession.

The official SDK (``mcp``) speaks the protocol; this module only carries its messages
over :class:`~.launch.StdioPipes`, the way ``mcp.client.stdio`` does over a child's
pipes, with the SDK's own JSON-RPC message parsing, and three rules of ours for a
server we do not trust:

* a line (one JSON-RPC message) longer than ``max_message_bytes`` ends the instance
  before it is buffered further: a huge answer costs the host a bounded buffer;
* a line that is not a JSON-RPC message ends the instance (the SDK would only log it
  and leave the caller waiting for an answer that will never come);
* end of output ends the instance.

Each raises :class:`ServerMisbehaved` out of :func:`open_client_session`'s block, with
a fixed reason word, never the server's own text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import ClientSession
from mcp.shared.message import SessionMessage

from .launch import StdioPipes

__all__ = ["CLIENT_INFO", "Breach", "ServerMisbehaved", "open_client_session"]

CLIENT_INFO = mcp_types.Implementation(name="ironclaw", version="1")
_READ_SIZE = 64 * 1024


class ServerMisbehaved(Exception):
    """The server broke the protocol; ``reason`` is one of a few fixed words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Breach:
    """Why the instance's protocol broke, set before the error travels: a call the SDK
    fails with "connection closed" while the instance unwinds can tell it apart from
    the server refusing the call."""

    def __init__(self) -> None:
        self.reason = ""

    def record(self, reason: str) -> ServerMisbehaved:
        self.reason = self.reason or reason
        return ServerMisbehaved(reason)


async def _ignore_log(params: Any) -> None:
    """A server's log notifications are its own business: never logged here, where a
    hostile server could flood the host's log with its text."""
    del params


async def _ignore_message(message: Any) -> None:
    del message


@asynccontextmanager
async def open_client_session(pipes: StdioPipes, *, max_message_bytes: int,
                              breach: Breach | None = None) -> AsyncIterator[ClientSession]:
    """An initialised ClientSession over ``pipes``, for the block's duration."""
    breach = Breach() if breach is None else breach
    to_session: MemoryObjectSendStream[SessionMessage | Exception]
    from_server: MemoryObjectReceiveStream[SessionMessage | Exception]
    to_session, from_server = anyio.create_memory_object_stream(0)
    to_server: MemoryObjectSendStream[SessionMessage]
    from_session: MemoryObjectReceiveStream[SessionMessage]
    to_server, from_session = anyio.create_memory_object_stream(0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_messages, pipes.receive, to_session, max_message_bytes,
                           breach)
        nursery.start_soon(_write_messages, from_session, pipes.send, breach)
        async with ClientSession(from_server, to_server, client_info=CLIENT_INFO,
                                 logging_callback=_ignore_log,
                                 message_handler=_ignore_message) as session:
            await session.initialize()
            yield session
        nursery.cancel_scope.cancel()


async def _read_messages(receive: trio.abc.ReceiveStream,
                         out: MemoryObjectSendStream[SessionMessage | Exception],
                         max_message_bytes: int, breach: Breach) -> None:
    buffer = bytearray()
    async with out:
        while True:
            try:
                chunk = await receive.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                chunk = b""
            if not chunk:
                raise breach.record("closed")
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end])
                del buffer[:end + 1]
                if line.strip():
                    await out.send(_parse(line, max_message_bytes, breach))
            if len(buffer) > max_message_bytes:
                raise breach.record("message_too_large")


def _parse(line: bytes, max_message_bytes: int, breach: Breach) -> SessionMessage:
    if len(line) > max_message_bytes:
        raise breach.record("message_too_large")
    try:
        message = mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError:
        raise breach.record("malformed") from None
    return SessionMessage(message)


async def _write_messages(messages: MemoryObjectReceiveStream[SessionMessage],
                          send: trio.abc.SendStream, breach: Breach) -> None:
    async with messages:
        async for item in messages:
            json = item.message.model_dump_json(by_alias=True, exclude_unset=True)
            try:
                await send.send_all(json.encode() + b"\n")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise breach.record("closed") from None
