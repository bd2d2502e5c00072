"""The Discord gateway (v10, JSON, no compression): the receive side of the adapter.

One connection at a time: Hello (op 10) gives the heartbeat interval; we Identify (op 2)
or, holding a session, Resume (op 6) at the session's ``resume_gateway_url``; then
Dispatches (op 0) arrive, each with a sequence number ``s``.

Heartbeats (op 1) go out every ``heartbeat_interval``, the first after a random fraction
of it (so a fleet of restarted bots does not beat in step), carrying the last ``s``
received; a beat the gateway asks for (op 1 from it) goes out at once. When the next
beat is due and the last one has no ACK (op 11), the connection is a zombie: we close
it (code 4000, which keeps the session resumable) and raise, so the supervisor
reconnects and we Resume.

The resume point (session id, resume URL, our bot's user id and the sequence of the
last dispatch *handled*) is kept in memory and persisted as the ``gateway`` cursor:
on READY, and with every routed message, in the same transaction that marks the
message seen (``hand_over``). The sequence advances only after a dispatch has been
handled, so a Resume after any drop replays exactly what was not handled yet, and a
restart of the control plane resumes from the last committed message: dispatches after
it are replayed (Discord keeps a session resumable for a while after a drop; a longer
absence ends in a new session, and what was said meanwhile is not replayed).

Routine reconnects stay inside :meth:`DiscordGateway.serve`: Reconnect (op 7) and a resumable
Invalid Session (op 9, ``d: true``) resume at once; a non-resumable one forgets the
session, waits 1-5 s as Discord asks, and identifies. Everything else (a dropped
connection, a close code) raises, and the channel goes down and comes back through the
supervisor's backoff. Close codes that retrying cannot fix raise a
:class:`GatewayRefused` that says what to do: 4004 (the token was refused), 4014
(a privileged intent, MESSAGE_CONTENT, is not enabled for the bot), 4010-4013. Our own
closes use code 4000, never 1000/1001, which would end the session.
"""

from __future__ import annotations

import enum
import json
import logging
import random
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio_websocket

from ironclaw.host.attachments import InboundAttachment

from ...base import ChannelError, InboundEvent
from ...settings import Secret
from ...state import ChannelState
from .._ws import SocketLost, check_socket_url, close_code, decode_frame, open_socket
from .messages import ChannelKinds, inbound_message, snowflake, wants
from .rest import DiscordApiError, DiscordRest

__all__ = ["DEFAULT_INTENTS", "DiscordGateway", "GatewayRefused", "ResumePoint"]

logger = logging.getLogger(__name__)

GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 12, 1 << 15
DEFAULT_INTENTS = GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME = 0, 1, 2, 6
OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 7, 9, 10, 11

CURSOR = "gateway"
KEEP_SESSION_CLOSE = 4000  # any code but 1000/1001 leaves the session resumable
HELLO_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0
MAX_FRAME_BYTES = 16 << 20  # GUILD_CREATE of a large guild is big
DEFAULT_HEARTBEAT_S = 41.25
REIDENTIFY_DELAY = (1.0, 5.0)
MAX_IDENTIFY_WAIT = 24 * 3600.0

_REFUSED = {
    4004: "Discord refused the bot token (gateway close code 4004); check the token "
          "(IRONCLAW_DISCORD_TOKEN)",
    4010: "Discord rejected the shard (close code 4010)",
    4011: "Discord requires sharding for this bot (close code 4011); not supported",
    4012: "Discord rejected the gateway version (close code 4012)",
    4013: "Discord rejected the intents value (close code 4013); check the intents "
          "setting",
    4014: "Discord refused a privileged intent (close code 4014): enable MESSAGE CONTENT "
          "INTENT for the bot in the Developer Portal (Bot > Privileged Gateway Intents), "
          "or drop it from the intents setting",
}
_SESSION_GONE = {4007: "invalid sequence", 4009: "session timed out"}


class GatewayRefused(ChannelError):
    """Discord refused us in a way only a human can fix."""


class Outcome(enum.Enum):
    RESUME = "resume"
    REIDENTIFY = "reidentify"


@attrs.frozen
class ResumePoint:
    session_id: str
    url: str  # resume_gateway_url
    bot_id: str
    seq: int

    def encode(self) -> str:
        return json.dumps({"session_id": self.session_id, "url": self.url,
                           "bot_id": self.bot_id, "seq": self.seq})

    @staticmethod
    def decode(raw: str | None) -> ResumePoint | None:
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        if not isinstance(value, dict):
            return None
        session_id, url, bot_id, seq = (value.get(k) for k in ("session_id", "url",
                                                                "bot_id", "seq"))
        if (isinstance(session_id, str) and session_id and isinstance(url, str)
                and check_socket_url(url) is None and snowflake(bot_id) is not None
                and isinstance(seq, int) and seq >= 0):
            return ResumePoint(session_id, url, str(bot_id), seq)
        return None


def gateway_url(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path or "/",
                                    "v=10&encoding=json", ""))


class _Connection:
    def __init__(self, ws: trio_websocket.WebSocketConnection, seq: int | None) -> None:
        self.ws = ws
        self.last_seq = seq  # the last ``s`` received, for heartbeats
        self.awaiting_ack = False
        self.zombie = False

    async def send(self, frame: dict[str, Any]) -> None:
        try:
            await self.ws.send_message(json.dumps(frame))
        except trio_websocket.ConnectionClosed as exc:
            raise SocketLost("discord gateway: the connection closed", close_code(exc)
                             ) from None

    async def receive(self) -> dict[str, Any] | None:
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            if self.zombie:
                raise SocketLost("discord gateway: a heartbeat was not acknowledged "
                                 "(zombie connection); resuming") from None
            code = close_code(exc)
            raise SocketLost(f"discord gateway: the connection closed (code {code})",
                             code) from None
        return decode_frame(message, max_bytes=MAX_FRAME_BYTES)


class DiscordGateway:
    """The receive loop; lives as long as the adapter, so the resume point survives
    reconnects."""

    def __init__(self, *, rest: DiscordRest, state: ChannelState, token: Secret,
                 intents: int, instance: str,
                 jitter: Callable[[], float] = random.random,
                 attachments: Callable[[dict[str, Any]], tuple[InboundAttachment, ...]]
                 = lambda _message: ()) -> None:
        self._rest = rest
        self._attachments = attachments
        self._state = state
        self._token = token
        self._intents = intents
        self._instance = instance
        self._jitter = jitter
        self._kinds = ChannelKinds()
        self._point: ResumePoint | None = None
        self._loaded = False

    async def serve(self, events: trio.MemorySendChannel[InboundEvent], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if not self._loaded:
            self._point = ResumePoint.decode(await self._state.cursor(CURSOR))
            self._loaded = True
        try:
            info = await self._rest.gateway_bot()
        except DiscordApiError as exc:
            if exc.status == 401:
                raise GatewayRefused("Discord refused the bot token (HTTP 401); check the "
                                     "token (IRONCLAW_DISCORD_TOKEN)") from None
            raise
        identifies_left = info.identify_remaining
        started = False

        def up() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            if self._point is None:
                if identifies_left <= 0:
                    wait = min(max(info.identify_reset_after, 1.0), MAX_IDENTIFY_WAIT)
                    logger.warning("discord %s: no identifies left today; waiting %.0f s",
                                   self._label, wait)
                    await trio.sleep(wait)
                    identifies_left = 1
                identifies_left -= 1
            if await self._connect(info.url, events, up) is Outcome.REIDENTIFY:
                await self._forget()
                await trio.sleep(random.uniform(*REIDENTIFY_DELAY))

    @property
    def _label(self) -> str:
        return self._instance or "default"

    async def _forget(self) -> None:
        self._point = None
        await self._state.save_cursor(CURSOR, "")

    async def _connect(self, url: str, events: trio.MemorySendChannel[InboundEvent],
                       up: Callable[[], None]) -> Outcome:
        point = self._point
        target = gateway_url(point.url if point is not None else url)
        async with open_socket(target, what="discord gateway", max_message_size=MAX_FRAME_BYTES,
                               close_with=KEEP_SESSION_CLOSE) as ws:
            connection = _Connection(ws, point.seq if point is not None else None)
            interval = await self._hello(connection)
            failure: Exception | None = None
            outcome = Outcome.RESUME
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._heartbeat, connection, interval)
                try:
                    await connection.send(self._resume_frame(point) if point is not None
                                          else self._identify_frame())
                    outcome = await self._receive(connection, events, up)
                except Exception as exc:  # raised outside the nursery, not in a group
                    failure = exc
                nursery.cancel_scope.cancel()
            if failure is not None:
                raise failure
            return outcome

    async def _hello(self, connection: _Connection) -> float:
        with trio.move_on_after(HELLO_TIMEOUT):
            while True:
                frame = await connection.receive()
                if frame is not None and frame.get("op") == OP_HELLO:
                    data = frame.get("d")
                    interval = data.get("heartbeat_interval") if isinstance(data, dict) else None
                    if isinstance(interval, int | float) and 100 <= interval <= 600_000:
                        return float(interval) / 1000.0
                    return DEFAULT_HEARTBEAT_S
        raise SocketLost(f"discord gateway: no Hello within {HELLO_TIMEOUT:g} s")

    def _identify_frame(self) -> dict[str, Any]:
        return {"op": OP_IDENTIFY, "d": {
            "token": self._token.reveal(), "intents": self._intents,
            "properties": {"os": sys.platform, "browser": "ironclaw", "device": "ironclaw"}}}

    def _resume_frame(self, point: ResumePoint) -> dict[str, Any]:
        return {"op": OP_RESUME, "d": {"token": self._token.reveal(),
                                       "session_id": point.session_id, "seq": point.seq}}

    async def _heartbeat(self, connection: _Connection, interval: float) -> None:
        await trio.sleep(interval * self._jitter())
        while True:
            if connection.awaiting_ack:
                logger.warning("discord %s: heartbeat not acknowledged; reconnecting",
                               self._label)
                connection.zombie = True
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await connection.ws.aclose(KEEP_SESSION_CLOSE)
                return
            connection.awaiting_ack = True
            try:
                await connection.send({"op": OP_HEARTBEAT, "d": connection.last_seq})
            except SocketLost:
                return  # the receive loop sees the close and reports it
            await trio.sleep(interval)

    async def _receive(self, connection: _Connection,
                       events: trio.MemorySendChannel[InboundEvent],
                       up: Callable[[], None]) -> Outcome:
        while True:
            try:
                frame = await connection.receive()
            except SocketLost as lost:
                if lost.code in _REFUSED:
                    raise GatewayRefused(_REFUSED[lost.code]) from None
                if lost.code in _SESSION_GONE:
                    await self._forget()
                    raise SocketLost(f"discord gateway: {_SESSION_GONE[lost.code]} (close "
                                     f"code {lost.code}); identifying again", lost.code
                                     ) from None
                raise
            if frame is None:
                continue
            op = frame.get("op")
            if op == OP_DISPATCH:
                seq = frame.get("s")
                seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
                if seq is not None:
                    connection.last_seq = seq
                kind = frame.get("t")
                await self._dispatch(kind if isinstance(kind, str) else "", frame.get("d"),
                                     seq, events)
                up()
            elif op == OP_HEARTBEAT:
                await connection.send({"op": OP_HEARTBEAT, "d": connection.last_seq})
            elif op == OP_HEARTBEAT_ACK:
                connection.awaiting_ack = False
            elif op == OP_RECONNECT:
                logger.info("discord %s: the gateway asked us to reconnect", self._label)
                return Outcome.RESUME
            elif op == OP_INVALID_SESSION:
                resumable = frame.get("d") is True
                logger.info("discord %s: invalid session (resumable: %s)", self._label,
                            resumable)
                return Outcome.RESUME if resumable else Outcome.REIDENTIFY

    async def _dispatch(self, kind: str, data: Any, seq: int | None,
                        events: trio.MemorySendChannel[InboundEvent]) -> None:
        if not isinstance(data, dict):
            data = {}
        if kind == "READY":
            await self._ready(data, seq)
            return
        if kind == "GUILD_CREATE":
            self._kinds.learn_all(data.get("channels"))
            self._kinds.learn_all(data.get("threads"))
        elif kind in ("CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE"):
            self._kinds.learn(data)
        elif kind == "THREAD_LIST_SYNC":
            self._kinds.learn_all(data.get("threads"))
        elif kind == "RESUMED":
            logger.info("discord %s: session resumed", self._label)
        elif kind == "MESSAGE_CREATE":
            await self._message(data, seq, events)
        # Only now is this dispatch handled: a Resume from here will not replay it.
        if seq is not None and self._point is not None:
            self._point = attrs.evolve(self._point, seq=seq)

    async def _ready(self, data: dict[str, Any], seq: int | None) -> None:
        session_id = data.get("session_id")
        url = data.get("resume_gateway_url")
        user = data.get("user")
        bot_id = snowflake(user.get("id")) if isinstance(user, dict) else None
        if not isinstance(session_id, str) or not session_id or bot_id is None:
            raise SocketLost("discord gateway: READY without a session or a user")
        if not isinstance(url, str) or check_socket_url(url) is not None:
            raise SocketLost("discord gateway: READY with an unusable resume URL")
        self._point = ResumePoint(session_id, url, bot_id, seq or 0)
        await self._state.save_cursor(CURSOR, self._point.encode())
        logger.info("discord %s: ready (new session)", self._label)

    async def _message(self, data: dict[str, Any], seq: int | None,
                       events: trio.MemorySendChannel[InboundEvent]) -> None:
        point = self._point
        if point is None or not wants(data, point.bot_id):
            return
        parent = None
        channel_id = str(data["channel_id"])
        if data.get("guild_id") is not None:
            if not self._kinds.knows(channel_id):
                # Raises when Discord cannot answer now: the connection drops, and the
                # Resume replays this message.
                found = await self._rest.channel(channel_id)
                self._kinds.learn(found if found is not None else {"id": channel_id,
                                                                   "type": 0})
            parent = self._kinds.parent_of(channel_id)
        event = attrs.evolve(inbound_message(data, point.bot_id, self._instance, parent),
                             attachments=self._attachments(data))
        cursor = None if seq is None else (CURSOR, attrs.evolve(point, seq=seq).encode())
        await self._state.hand_over(events, event, event_id=str(data["id"]), cursor=cursor)
