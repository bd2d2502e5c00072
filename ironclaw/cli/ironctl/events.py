"""``ironctl events``: a live tail of ``/v1/events`` over trio-websocket.

The token goes in the upgrade request's ``Authorization`` header (the API's scheme
for command-line clients), never in the URL. Filters are query parameters: ``types``
(comma-separated patterns), ``session`` and ``since``.

When the connection drops (the daemon restarted, the network blinked, or the server
cut a reader that fell too far behind, close code 4008), the tail reconnects with
``since=<last seq printed>`` and carries on with no gap and no duplicate. A refusal
(bad token, forbidden, a malformed request) is not retried.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
)

from .client import AUTH, FAILED, OK, USAGE, CliError
from .context import Ctx
from .output import key_values
from .wsconn import connect, parse_frame, rejected

ROUTE = "/v1/events"
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 10.0
# Close codes after which reconnecting cannot help, and the exit code each means.
FATAL_CLOSES = {4400: USAGE, 4401: AUTH, 4403: AUTH, 4408: AUTH, 1003: FAILED,
                1008: FAILED, 1009: FAILED}


def clock(us: object) -> str:
    if isinstance(us, bool) or not isinstance(us, int):
        return "--:--:--.---"
    try:
        moment = dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(us)
    return moment.strftime("%H:%M:%S.%f")[:-3]


def event_line(frame: dict[str, Any]) -> str:
    fields = frame.get("event")
    detail = key_values(fields) if isinstance(fields, dict) else ""
    return f"{frame.get('seq')!s:>6} {clock(frame.get('at'))} {frame.get('type')} " \
           f"{detail}".rstrip()


class _Dropped(Exception):
    """The connection ended in a way worth a reconnect."""


class EventTail:
    def __init__(self, ctx: Ctx) -> None:
        a = ctx.args
        self.ctx = ctx
        self.types = [p.strip() for arg in a.type or [] for p in arg.split(",") if p.strip()]
        self.session: str | None = a.session
        self.since: int | None = a.since
        self.last_seq: int | None = None  # the highest seq printed
        self.limit: int | None = a.count
        self.follow: bool = not a.no_follow
        self.idle: float = a.idle
        self.printed = 0
        self.connected_once = False
        self.frames = 0  # frames on the current connection

    async def run(self) -> int:
        backoff = FIRST_BACKOFF
        while True:
            try:
                return await self._session()
            except _Dropped as exc:
                if not self.connected_once:
                    raise CliError(f"cannot open the event stream: {exc}") from None
                if self.frames:
                    backoff = FIRST_BACKOFF  # it was up: this is a fresh drop
                resume = self._resume_from()
                where = f" with since={resume}" if resume is not None else ""
                self.ctx.console.note(f"-- event stream dropped ({exc}); reconnecting"
                                      f"{where} in {backoff:g} s")
            await trio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _resume_from(self) -> int | None:
        return self.last_seq if self.last_seq is not None else self.since

    async def _session(self) -> int:
        ctx = self.ctx
        query: dict[str, object] = {"types": ",".join(self.types) or None,
                                    "session": self.session, "since": self._resume_from()}
        try:
            async with connect(ctx.target, ctx.token, ROUTE, query,
                               connect_timeout=ctx.api.timeout) as ws:
                self.connected_once = True
                self.frames = 0
                return await self._pump(ws)
        except ConnectionRejected as exc:
            failure = rejected(exc)
            if failure.status == 400 and "ahead of the stream" in failure.detail \
                    and self.connected_once:
                # The daemon restarted: its sequence numbers began again.
                ctx.console.note("-- the stream's sequence restarted; replaying from its "
                                 "start")
                self.since, self.last_seq = 0, None
                raise _Dropped("sequence restarted") from None
            if failure.status in (429, 502, 503, 504) and self.connected_once:
                raise _Dropped(failure.message) from None
            raise failure from None
        except ConnectionClosed as exc:
            code = exc.reason.code if exc.reason is not None else None
            why = (exc.reason.reason or exc.reason.name) if exc.reason is not None else "?"
            if code in FATAL_CLOSES:
                raise CliError(f"the event stream was refused ({code}: {why})",
                               FATAL_CLOSES[code]) from None
            raise _Dropped(f"closed: {code} {why}") from None
        except HandshakeError as exc:
            reason = exc.__cause__ or exc
            raise _Dropped(str(reason) or type(reason).__name__) from None

    async def _pump(self, ws: WebSocketConnection) -> int:
        head: int | None = None
        while True:
            wait = math.inf if self.follow or head is None else self.idle
            message: str | bytes | None = None
            with trio.move_on_after(wait):
                message = await ws.get_message()
            if message is None:
                return OK  # --no-follow: the stream went quiet after catching up
            frame = parse_frame(message, "event stream")
            self.frames += 1
            kind = frame.get("type")
            if kind == "error":
                self.ctx.console.note(f"-- the server says: {frame.get('error')}: "
                                      f"{frame.get('detail')}")
                continue
            seq = frame.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                if self.last_seq is not None and seq <= self.last_seq:
                    continue  # already printed before a reconnect
                self.last_seq = seq
                self.printed += 1
            elif kind == "stream.ready":
                event = frame.get("event") or {}
                found = event.get("last_seq") if isinstance(event, dict) else None
                head = found if isinstance(found, int) else 0
            self._show(frame)
            if self.limit is not None and self.printed >= self.limit:
                return OK
            if not self.follow and head is not None and (
                    (self.last_seq or 0) >= head or (self._resume_from() or 0) >= head):
                return OK

    def _show(self, frame: dict[str, Any]) -> None:
        out = self.ctx.console
        if out.json_mode:
            out.json(frame, compact=True)
            return
        kind = frame.get("type")
        event = frame.get("event") if isinstance(frame.get("event"), dict) else {}
        assert isinstance(event, dict)
        if kind == "stream.ready":
            out.note(f"-- connected; the stream is at seq {event.get('last_seq')}")
        elif kind == "stream.lagged":
            out.note(f"-- missed {event.get('missed')} event(s) here: this reader fell "
                     "behind")
        else:
            out.line(event_line(frame))


async def cmd_events(ctx: Ctx) -> int:
    return await EventTail(ctx).run()
