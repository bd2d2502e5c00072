"""What the websocket platforms (Slack Socket Mode, the Discord gateway) share.

* URL checks: a platform's API base must be ``https``, its websocket ``wss``; plain
  ``http``/``ws`` is accepted only on a loopback host (the test fakes, a local proxy).
* :func:`open_socket`: connect with trio-websocket, turning every way connecting can
  fail into a :class:`SocketLost` whose text names neither the URL (Slack's carries a
  connection ticket) nor anything the peer said, and close with the code the caller
  chose. Closing is shielded and bounded, so it happens on cancellation too.
* :func:`decode_frame`: a frame as a JSON object, size-bounded.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_websocket

from ..base import ChannelError

__all__ = [
    "SocketLost",
    "check_api_base",
    "check_socket_url",
    "close_code",
    "decode_frame",
    "open_socket",
]

CONNECT_TIMEOUT = 20.0
CLOSE_TIMEOUT = 2.0
CANCELLED_CLOSE_TIMEOUT = 0.1


class SocketLost(ChannelError):
    """The websocket could not be opened, or closed under us. ``code`` is the close
    code when the peer sent one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(url: str, secure: str, plain: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "is not a URL"
    if not parts.hostname:
        return "has no host"
    if parts.username or parts.password:
        return "must not carry credentials"
    if parts.scheme == secure or (parts.scheme == plain and _loopback(parts.hostname)):
        return None
    return f"must use {secure}:// ({plain}:// only on a loopback host)"


def check_api_base(url: str) -> str | None:
    """None if ``url`` is an acceptable API base, else what is wrong with it."""
    problem = _check(url, "https", "http")
    if problem is None and urllib.parse.urlsplit(url).query:
        return "must not have a query"
    return problem


def check_socket_url(url: str) -> str | None:
    """None if ``url`` is an acceptable websocket URL, else what is wrong with it."""
    return _check(url, "wss", "ws")


def close_code(exc: trio_websocket.ConnectionClosed) -> int | None:
    reason = exc.reason
    return None if reason is None else reason.code


@asynccontextmanager
async def open_socket(url: str, *, what: str, max_message_size: int,
                      close_with: int) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """Connect to ``url``; on the way out close with code ``close_with``. ``what`` names
    the connection in errors."""
    problem = check_socket_url(url)
    if problem is not None:
        raise SocketLost(f"{what}: the platform gave a websocket URL that {problem}")
    entered = False
    try:
        async with trio_websocket.open_websocket_url(
                url, max_message_size=max_message_size, connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CLOSE_TIMEOUT) as ws:
            entered = True
            leaving: BaseException | None = None
            try:
                yield ws
            except BaseException as exc:
                leaving = exc
                raise
            finally:
                # Our close code, not the library's 1000; bounded, and done even when
                # we are being cancelled. Then the library's reader task is cancelled
                # too, so the peer's answer will never be read: send the close frame
                # and do not wait for the reply.
                cancelled = leaving is not None and not isinstance(leaving, Exception)
                wait = CANCELLED_CLOSE_TIMEOUT if cancelled else CLOSE_TIMEOUT
                with trio.CancelScope(shield=True), trio.move_on_after(wait):
                    await ws.aclose(close_with)
                    # trio-websocket 0.12 leaves the TCP stream open when the peer
                    # dropped it without a closing handshake (aclose then returns
                    # early); close it so the socket is not left to the GC.
                    stream = getattr(ws, "_stream", None)
                    if stream is not None:
                        await trio.aclose_forcefully(stream)
    except trio_websocket.ConnectionRejected as exc:
        if entered:
            raise
        raise SocketLost(f"{what}: the handshake was refused (HTTP {exc.status_code})"
                         ) from None
    except (trio_websocket.HandshakeError, OSError, trio.BrokenResourceError) as exc:
        if entered:
            raise
        raise SocketLost(f"{what}: could not connect ({type(exc).__name__})") from None


def decode_frame(message: str | bytes, *, max_bytes: int) -> dict[str, Any] | None:
    """The frame as a JSON object, or None when it is not one or is longer than
    ``max_bytes`` (characters, for a text frame). Never raises.

    The C decoder, not ``parse_json``: a large guild's GUILD_CREATE is megabytes, and a
    pure-Python depth scan over it would stall the event loop; the decoder's own
    recursion guard bounds nesting."""
    if len(message) > max_bytes:
        return None
    try:
        value = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
