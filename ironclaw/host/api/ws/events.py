"""``/v1/events``: the live event stream, as a websocket.

Query parameters (all optional):

* ``types``: comma-separated patterns, ``*``, ``prefix.*`` or exact types
  (default ``*``);
* ``session``: only events whose ``session_id`` is this one;
* ``since``: replay the retained events after this sequence number first (the ring
  holds the last few thousand), then continue live, with no gap or duplicate;
* ``batch``: at most this many frames per websocket message (1 to ``MAX_BATCH``,
  default 1). With 1 every message is one frame; above 1 every message is a JSON
  array of the frames that were waiting when it was sent (one or more; the first
  waits ``BATCH_LINGER_S`` for company), which is what lets a subscriber keep up with
  thousands of events a second. The error frame sent
  just before a close is a single object either way.

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

import attrs
import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from ironclaw.runtime import Lagged, Subscription, TypeFilter

from .. import render
from ..context import ApiContext
from ..errors import ApiError, handshake_refusal
from ..scope import Scope, Visibility, scope
from . import auth
from .frames import SharedFrames, frame_text

_SESSION = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_PATTERNS = 32
# Frames one message may carry when a client asks for batches, and how long the
# first frame of a batch waits for more.
MAX_BATCH = 1000
BATCH_LINGER_S = 0.01


@attrs.frozen
class StreamWants:
    """What one subscriber asked for in its query."""

    patterns: list[str]
    session: str | None
    since: int | None
    batch: int  # frames per message; 1: one JSON object each, more: a JSON array


def stream_params() -> StreamWants:
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
    return StreamWants(patterns, session, _number(args.get("since"), "since", 0, 10**19),
                       _number(args.get("batch"), "batch", 1, MAX_BATCH) or 1)


def _number(raw: str | None, name: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def register(app: QuartTrio, ctx: ApiContext) -> None:
    bus = ctx.handles.events
    settings = ctx.settings
    frames = SharedFrames()  # one rendering per event for every connection of this app

    @app.websocket("/v1/events")
    @scope(Scope.FILTERED)
    async def event_stream() -> Response | None:
        async def since_known() -> None:
            await trio.lowlevel.checkpoint()
            if since is not None and since > bus.last_seq:
                raise ApiError(400, f"since={since} is ahead of the stream (last seq "
                                    f"{bus.last_seq}); the control plane restarted?")

        try:
            want = stream_params()
            since = want.since
            who = await auth.accept(ctx, check=since_known)
        except ApiError as exc:
            return handshake_refusal(exc)
        except auth.Refused:
            return None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_ignore_input)
            async with bus.subscribe(want.patterns, since=since,
                                     buffer_size=settings.event_buffer) as subscription:
                ready = frame_text(render.stream_note(
                    "ready", time.time(), last_seq=bus.last_seq, principal=who.name,
                    since=since))
                await websocket.send(ready if want.batch == 1 else f"[{ready}]")
                await _pump(ctx, subscription, frames, want, Visibility.of(who, ctx.handles))
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


async def _pump(ctx: ApiContext, subscription: Subscription, frames: SharedFrames,
                want: StreamWants, seen: Visibility) -> None:
    """Forward events until the client goes or falls too far behind. Each send takes
    every item already waiting (up to ``want.batch``), so a pump woken late catches up
    in one message instead of one per event. The frame's text is shared by every
    subscriber; what each may see is decided per subscriber first."""
    settings = ctx.settings
    missed = 0
    first = True
    async for item in subscription:
        if want.batch > 1:
            # Let more frames gather: a batching subscriber trades this much latency
            # for one wake-up and one message per burst instead of one per event.
            await trio.sleep(BATCH_LINGER_S)
        texts: list[str] = []
        while True:
            if isinstance(item, Lagged):
                ctx.metrics.events_dropped.labels(subscriber="stream").inc(item.missed)
                # A first Lagged while replaying is a since= older than the ring:
                # reported, not held against the client.
                if not (first and want.since is not None):
                    missed += item.missed
                texts.append(frame_text(render.stream_note("lagged", time.time(),
                                                           missed=item.missed)))
            elif await _wanted(item.event, want.session, seen):
                texts.append(frames.text(item))
            first = False
            if len(texts) >= want.batch:
                break
            try:
                item = subscription.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError):
                break
        if not texts:
            continue
        message = texts[0] if want.batch == 1 else "[" + ",".join(texts) + "]"
        with trio.move_on_after(settings.ws_send_timeout) as scope:
            await websocket.send(message)
        if scope.cancelled_caught:
            ctx.metrics.streams_cut.inc()
            return
        if missed > settings.event_max_missed:
            ctx.metrics.streams_cut.inc()
            with trio.move_on_after(settings.ws_send_timeout):
                await auth.close_with(auth.CLOSE_TOO_SLOW, "too_slow",
                                      f"missed {missed} events; reconnect with since=")
            return
