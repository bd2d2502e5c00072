"""``/v1/channels/local/chat``: talk to an agent over the local channel, live.

Query: ``agent_group`` (required) and ``conversation`` (optional, resolved as for
``POST /v1/channels/local/messages``: an existing wired local conversation).
Authentication as for every websocket (:mod:`.auth`); a viewer may not chat.

Client to server::

    {"type": "message", "text": "hello", "sender": "alice"}   # sender optional

``sender`` defaults to the principal's name; only owners and admins may name another,
and never for a chat command (``check_sender``).

Server to client: ``{"type": "ready", "conversation", "agent_group", "last_index"}``
once, then every new transcript entry, user and agent alike, in order::

    {"type": "message", "index": 3, "role": "agent", "sender": "agent", "text": "...",
     "at": <µs>, "message_id": "...", "thread_id": null}

plus ``{"type": "accepted", "message_id"}`` for each message of ours the router took,
and ``{"type": "error", "error", "detail"}`` for one it did not (the socket stays
open). ``since_index`` in the query replays retained entries after that index first.

Each message spends a token from the principal's chat bucket (``ws_chat_rate_per_second``,
``ws_chat_burst``; shared by all of the principal's chat connections), checked before
the frame is even parsed. Without one the message is dropped and answered
``{"type": "error", "error": "rate_limited", "detail", "retry_after": <s>}``.
"""

from __future__ import annotations

import json
import math

import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from ironclaw.host.channels import ChannelUnavailable
from ironclaw.host.gateway import Principal

from .. import render
from ..context import ApiContext
from ..errors import ApiError, handshake_refusal
from ..routes.local import check_sender, resolve_conversation
from ..schemas import ENTITY_PATTERN, MAX_TEXT, SENDER_PATTERN
from ..scope import Scope, scope
from ..validate import problems
from . import auth

WAKE_TYPES = ("message.received", "delivery.delivered")
INBOUND: dict[str, object] = {
    "type": "object", "additionalProperties": False, "required": ["type", "text"],
    "properties": {"type": {"type": "string", "enum": ["message"]},
                   "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                   "sender": {"type": "string", "pattern": SENDER_PATTERN}}}


def _params() -> tuple[str, str | None, int | None]:
    """The query's syntax (checked before authentication; nothing is looked up)."""
    args = websocket.args
    group = args.get("agent_group")
    if group is None or problems(group, {"type": "string", "pattern": ENTITY_PATTERN}):
        raise ApiError(400, "agent_group is required and must be an agent group id")
    raw = args.get("since_index", "")
    if raw and not (raw.lstrip("-").isdigit() and len(raw) < 19):
        raise ApiError(400, "since_index must be an integer")
    return group, args.get("conversation"), int(raw) if raw else None


def register(app: QuartTrio, ctx: ApiContext) -> None:
    local = ctx.handles.local

    @app.websocket("/v1/channels/local/chat")
    @scope(Scope.FILTERED)  # its agent group must be in the principal's scope
    async def local_chat() -> Response | None:
        resolved: list[str] = []

        async def resolve() -> None:
            resolved.append(await resolve_conversation(ctx, group, wanted))

        try:
            group, wanted, since_index = _params()
            who = await auth.accept(ctx, write=True, check=resolve)
        except ApiError as exc:
            return handshake_refusal(exc)
        except auth.Refused:
            return None
        (conversation,) = resolved
        since = local.cursor(conversation) if since_index is None else since_index
        await auth.send_json({"type": "ready", "conversation": conversation,
                              "agent_group": group, "last_index": since})
        send_lock = trio.Lock()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow, ctx, conversation, since, send_lock)
            await _read_input(ctx, who, conversation, send_lock)
            nursery.cancel_scope.cancel()
        return None

    async def _read_input(ctx: ApiContext, who: Principal, conversation: str,
                          send_lock: trio.Lock) -> None:
        while True:
            raw = await websocket.receive()
            reply = await _one_message(who, conversation, raw)
            async with send_lock:
                await auth.send_json(reply)

    async def _one_message(who: Principal, conversation: str, raw: str | bytes
                           ) -> dict[str, object]:
        wait = ctx.chat_limiter.take(who.name)
        if wait:
            seconds = max(1, math.ceil(wait))
            return {"type": "error", "error": "rate_limited", "retry_after": seconds,
                    "detail": f"too many messages; retry after {seconds} s"}
        try:
            message = json.loads(raw) if len(raw) <= ctx.settings.ws_max_message_bytes \
                else None
        except ValueError:
            message = None
        found = problems(message, INBOUND) if message is not None else "not JSON"
        if found:
            return {"type": "error", "error": "bad_request", "detail": found}
        assert isinstance(message, dict)
        sender = message.get("sender", who.name)
        try:
            check_sender(who, sender, message["text"])
        except ApiError as exc:
            return {"type": "error", "error": "forbidden", "detail": exc.detail}
        try:
            message_id = await local.post(conversation, sender, message["text"])
        except (ValueError, ChannelUnavailable) as exc:
            return {"type": "error", "error": "unavailable", "detail": str(exc)[:200]}
        return {"type": "accepted", "message_id": message_id}


async def _follow(ctx: ApiContext, conversation: str, since: int, send_lock: trio.Lock
                  ) -> None:
    """Send every transcript entry after ``since``, woken by the bus whenever a
    message is received or delivered (and by a lag, which may hide one)."""
    local = ctx.handles.local
    last = since
    async with ctx.handles.events.subscribe(list(WAKE_TYPES), buffer_size=64) as wakes:
        while True:
            fresh = [e for e in local.transcript(conversation) if e.index > last]
            for entry in fresh:
                async with send_lock:
                    await auth.send_json({"type": "message",
                                          **render.transcript_entry(entry)})
                last = entry.index
            await wakes.receive()
            # Drain whatever else is queued: one look at the transcript covers it all.
            while True:
                try:
                    wakes.receive_nowait()
                except trio.WouldBlock:
                    break
