"""``/v1/events``: the live event stream, as a websocket.

Query parameters (all optional):

* ``types``: comma-separated patterns, ``*``, ``prefix.*`` or exact types
  (default ``*``);
* ``session``: only events whose ``session_id`` is this one;
* ``since``: replay the retained events after this sequence number first (the ring
  holds the last few thousand), then continue live, with no gap or duplicate.

Frames, server to client, one JSON object each::

    {"seq": 42, "type": "message.routed", "at": <µs>, "event": {...fields}}
    {"seq": null, "type": "stream.ready", "at": <µs>, "event": {"last_seq": 41, ...}}
    {"seq": null, "type": "stream.lagged", "at": <µs>, "event": {"missed": 17}}

Back-pressure never reaches the runtime: publishing onto the bus is synchronous and
never waits for a subscriber. Each connection reads from its own bounded buffer;
when it falls behind, the oldest events are dropped and a ``stream.lagged`` frame
says how many, exactly where the gap is. A client that has missed more than
``event_max_missed`` events, or whose socket stops taking data, is disconnected
(close code 4008); the kernel aborts a connection whose peer has not read for
``stall_timeout`` seconds, so a stalled client cannot hold a task forever either.
Messages from the client after authentication are read and ignored.
"""

from __future__ import annotations

import re
import time

import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from ironclaw.runtime import Lagged, Subscription, TypeFilter

from .. import render
from ..context import ApiContext
from ..errors import ApiError, handshake_refusal
from ..scope import Scope, Visibility, scope
from . import auth

_SESSION = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_PATTERNS = 32


def stream_params() -> tuple[list[str], str | None, int | None]:
    args = websocket.args
    raw_types = args.get("types", "*")
    patterns = [p.strip() for p in raw_types.split(",") if p.strip()] or ["*"]
    if len(patterns) > MAX_PATTERNS or len(raw_types) > 2048:
        raise ApiError(400, f"at most {MAX_PATTERNS} type patterns")
    try:
        TypeFilter.parse(patterns)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    session = args.get("session")
    if session is not None and not _SESSION.fullmatch(session):
        raise ApiError(400, "session is not a session id")
    since_raw = args.get("since")
    since = None
    if since_raw is not None:
        if not since_raw.isdigit() or len(since_raw) > 19:
            raise ApiError(400, "since must be a non-negative integer")
        since = int(since_raw)
    return patterns, session, since


def register(app: QuartTrio, ctx: ApiContext) -> None:
    bus = ctx.handles.events
    settings = ctx.settings

    @app.websocket("/v1/events")
    @scope(Scope.FILTERED)
    async def event_stream() -> Response | None:
        async def since_known() -> None:
            await trio.lowlevel.checkpoint()
            if since is not None and since > bus.last_seq:
                raise ApiError(400, f"since={since} is ahead of the stream (last seq "
                                    f"{bus.last_seq}); the control plane restarted?")

        try:
            patterns, session, since = stream_params()
            who = await auth.accept(ctx, check=since_known)
        except ApiError as exc:
            return handshake_refusal(exc)
        except auth.Refused:
            return None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ignore_input)
            async with bus.subscribe(patterns, since=since,
                                     buffer_size=settings.event_buffer) as subscription:
                await auth.send_json(render.stream_note(
                    "ready", time.time(), last_seq=bus.last_seq, principal=who.name,
                    since=since))
                await _pump(ctx, subscription, session, since is not None,
                            Visibility.of(who, ctx.handles))
            nursery.cancel_scope.cancel()
        return None


async def _ignore_input() -> None:
    """Keep reading, so a disconnect is noticed and the client cannot fill our queue."""
    while True:
        await websocket.receive()


async def _wanted(event: object, session: str | None, seen: Visibility) -> bool:
    """The client asked for it (``session=``) and its principal may see it."""
    if session is not None and getattr(event, "session_id", None) != session:
        return False
    return await seen.event(event)


async def _pump(ctx: ApiContext, subscription: Subscription, session: str | None,
                replaying: bool, seen: Visibility) -> None:
    """Forward events until the client goes or falls too far behind. ``replaying``:
    a first ``Lagged`` then is a ``since=`` older than the ring: reported, not held
    against the client."""
    settings = ctx.settings
    missed = 0
    first = True
    async for item in subscription:
        if isinstance(item, Lagged):
            ctx.metrics.events_dropped.labels(subscriber="stream").inc(item.missed)
            if not (first and replaying):
                missed += item.missed
            frame = render.stream_note("lagged", time.time(), missed=item.missed)
        elif not await _wanted(item.event, session, seen):
            continue
        else:
            frame = render.envelope(item)
        first = False
        with trio.move_on_after(settings.ws_send_timeout) as scope:
            await auth.send_json(frame)
        if scope.cancelled_caught:
            ctx.metrics.streams_cut.inc()
            return
        if missed > settings.event_max_missed:
            ctx.metrics.streams_cut.inc()
            with trio.move_on_after(settings.ws_send_timeout):
                await auth.close_with(auth.CLOSE_TOO_SLOW, "too_slow",
                                      f"missed {missed} events; reconnect with since=")
            return
