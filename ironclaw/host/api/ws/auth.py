"""Authenticating a websocket without putting the token in a URL.

A client proves itself in one of three ways, first match wins:

1. ``Authorization: Bearer <token>`` on the upgrade request (command-line clients);
2. the ``Sec-WebSocket-Protocol`` header offering ``ironclaw.v1`` *and*
   ``bearer.<token>`` (browsers: ``new WebSocket(url, ["ironclaw.v1",
   "bearer." + token])``); the server selects ``ironclaw.v1`` and never echoes the
   token;
3. neither: the server accepts, and the first message must be
   ``{"type": "auth", "token": "<token>"}`` within ``ws_auth_timeout`` seconds.

Nothing but the syntax of the query is judged before the caller is known, so a
stranger learns nothing (not even whether an agent group exists).

Failures before the upgrade are HTTP errors (400, 401, 403, 404, 429) with a JSON
body; after it, an ``{"type": "error", ...}`` frame and close code 4000 + the status
the HTTP error would have had: 4401 (bad token), 4400 (a malformed auth message or
query), 4403 (the role may not use this socket), 4404, 4429; and 4408 (no auth
message in time).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import trio
from quart import g, websocket

from ironclaw.host.gateway import Principal

from ..context import ApiContext, bearer_token, may_write
from ..errors import ApiError, rate_limited, unauthorized
from .frames import frame_text

SUBPROTOCOL = "ironclaw.v1"
BEARER_PREFIX = "bearer."
MAX_AUTH_MESSAGE = 1024

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_TOO_SLOW = 4008


class Refused(Exception):
    """The socket was closed after it was accepted; the handler just returns."""


async def send_json(frame: dict[str, object]) -> None:
    await websocket.send(frame_text(frame))


async def close_with(code: int, error: str, detail: str) -> Refused:
    await send_json({"type": "error", "error": error, "detail": detail})
    await websocket.close(code, detail[:120])
    return Refused(detail)


def _limit(ctx: ApiContext, who: Principal | None) -> None:
    key = "principal:" + who.name if who else "addr:" + (websocket.remote_addr or "?")
    wait = ctx.limiter.take(key)
    if wait:
        raise rate_limited(wait)


async def accept(ctx: ApiContext, *, write: bool = False,
                 check: Callable[[], Awaitable[None]] | None = None) -> Principal:
    """Authenticate, run ``check`` (input that may only be judged once the caller is
    known: nothing about the system is revealed to a stranger), then accept. Raises
    :class:`ApiError` before the upgrade (the handler returns it as an HTTP response)
    or :class:`Refused` after it (an error frame, then close code 4000 + status)."""
    offered = list(websocket.requested_subprotocols)
    bearer = [p[len(BEARER_PREFIX):] for p in offered if p.startswith(BEARER_PREFIX)]
    if bearer and SUBPROTOCOL not in offered:
        raise ApiError(400, f"offer {SUBPROTOCOL!r} alongside 'bearer.<token>'")
    chosen = SUBPROTOCOL if SUBPROTOCOL in offered else None
    token = bearer_token(websocket.headers.get("Authorization")) or (
        bearer[0] if bearer else None)
    if token is not None:
        who = await ctx.principals.authenticate(token)
        _limit(ctx, who)
        if who is None:
            raise unauthorized()
        if write and not may_write(who):
            raise ApiError(403, f"{who.name} may only read")
        g.principal = who  # what the check and the handler judge scope by
        if check is not None:
            await check()
        await websocket.accept(subprotocol=chosen)
        return who
    await websocket.accept(subprotocol=chosen)
    who = await _auth_message(ctx)
    try:
        if write and not may_write(who):
            raise ApiError(403, f"{who.name} may only read")
        g.principal = who  # what the check and the handler judge scope by
        if check is not None:
            await check()
    except ApiError as exc:
        raise await close_with(4000 + exc.status, exc.error, exc.detail) from None
    return who


async def _auth_message(ctx: ApiContext) -> Principal:
    raw: str | bytes | None = None
    with trio.move_on_after(ctx.settings.ws_auth_timeout):
        raw = await websocket.receive()
    if raw is None:
        raise await close_with(CLOSE_AUTH_TIMEOUT, "unauthorized",
                               "no auth message in time")
    token = None
    if len(raw) <= MAX_AUTH_MESSAGE:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "auth":
            token = message.get("token")
    if not isinstance(token, str):
        raise await close_with(CLOSE_BAD_REQUEST, "bad_request",
                               'expected {"type": "auth", "token": "..."}')
    who = await ctx.principals.authenticate(token)
    try:
        _limit(ctx, who)
    except ApiError as exc:
        raise await close_with(CLOSE_UNAUTHORIZED, exc.error, exc.detail) from None
    if who is None:
        raise await close_with(CLOSE_UNAUTHORIZED, "unauthorized", "invalid token")
    return who
