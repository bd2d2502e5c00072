"""A fake Discord on loopback: REST (API v10) over HTTP and the gateway over a websocket.

REST (``Authorization: Bot <token>``; 401 ``{"message": "401: Unauthorized", "code": 0}``
otherwise):

- ``GET /api/v10/gateway/bot`` -> ``url``, ``shards``, ``session_start_limit``;
- ``GET /api/v10/channels/{id}`` -> the channel object, 404 ``Unknown Channel`` (10003);
- ``POST /api/v10/channels/{id}/messages`` -> the created message. Content over 2000
  characters is refused (400, code 50035); a ``nonce`` with ``enforce_nonce`` already
  used in that channel returns the earlier message instead of creating one, as Discord
  does. Answers carry ``X-RateLimit-*`` headers; an injected 429 carries Discord's JSON
  ``{"message", "retry_after", "global"}`` with ``Retry-After`` and ``X-RateLimit-*``
  (``GET /gateway/bot`` can be rate-limited the same way). Like Discord, the bot's own
  message comes back to it as a ``MESSAGE_CREATE``.

Files: a pushed message may carry an attachment, served without a token at its
``url`` (``/attachments/<channel>/<id>/<name>``, as Discord's CDN serves signed URLs);
a message created as ``multipart/form-data`` (``payload_json`` plus ``files[n]``) keeps
its files, recorded in :attr:`uploaded`.

Gateway (``?v=10&encoding=json``): Hello (op 10); Identify (op 2) -> READY then
GUILD_CREATE (channels and active threads); wrong token -> close 4004; MESSAGE_CONTENT
requested while ``privileged_allowed`` is false -> close 4014; heartbeats (op 1) ->
Heartbeat ACK (op 11) unless acks are stopped for the current connection. Each session
keeps its log of dispatches, numbered by ``s``; Resume (op 6) replays every dispatch
after the given ``seq``, then RESUMED, and the session continues on the new connection;
resuming an unknown or ended session gets Invalid Session (op 9, ``d: false``). A client
that closes with 1000/1001 ends its session (as Discord does); any other close, or a
dropped connection, leaves it resumable. Messages pushed while no connection is
attached wait in the session's log and are replayed on Resume.

Test controls: push user messages (DM, guild channel, thread; ``<@id>`` mentions fill
``mentions``), redeliver a message as a new dispatch, add threads (announced with
THREAD_CREATE or not), cut the connection, take the gateway offline (connections are
dropped before Hello) and back, send Reconnect (op 7) or Invalid Session, close with a
code, stop acking heartbeats, fail the next N message posts with 429. Everything is
recorded; :attr:`changes` wakes waiters.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket

from tests.fakes.loopback_http import parse_multipart
from tests.fakes.wsplatform import Changes, Reply, Request, cut, open_http

__all__ = ["FakeDiscord", "open_fake_discord"]

MESSAGE_CONTENT = 1 << 15
_MENTION = re.compile(r"<@!?(\d{1,20})>")
_PATH = re.compile(r"/api/v10/channels/(\d{1,20})(/messages)?")


@attrs.define(eq=False)
class _Connection:
    ws: trio_websocket.WebSocketConnection
    path: str
    ack_heartbeats: bool = True
    session: _Session | None = None
    sent_upto: int = 0  # the highest ``s`` sent on this connection
    closed: bool = False


@attrs.define(eq=False)
class _Session:
    id: str
    log: list[dict[str, Any]] = attrs.field(factory=list)
    ended: bool = False
    connection: _Connection | None = None

    @property
    def seq(self) -> int:
        return len(self.log)


class FakeDiscord:
    def __init__(self) -> None:
        self.token = f"MTAw.{uuid.uuid4().hex}.fake-bot-token"
        self.bot_user_id = "100000000000000001"
        self.application_id = "100000000000000002"
        self.guild_id = "200000000000000001"
        self.api_base = ""
        self.gateway_base = ""
        self.heartbeat_interval_ms = 41_250
        self.privileged_allowed = True
        self.refuse_identify = False  # close 4004 on Identify although REST accepts
        self.echo_own_messages = True
        self.changes = Changes()
        self.channels: dict[str, dict[str, Any]] = {}  # guild channels and threads
        self.dm_channels: set[str] = set()
        self.sessions: dict[str, _Session] = {}
        self.active: _Session | None = None
        self.current: _Connection | None = None
        self.offline = False
        # What happened.
        self.connections: list[str] = []  # request paths, in order
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []  # {"session_id", "seq"}
        self.replayed: list[list[str]] = []  # per resume: the replayed dispatch types
        self.heartbeats: list[Any] = []
        self.client_closes: list[int | None] = []
        self.send_attempts: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []  # created through REST
        self.nonce_hits = 0
        self.cdn: dict[str, bytes] = {}  # attachment path -> bytes
        self.downloads: list[str] = []
        self.uploaded: list[tuple[str, str, str, bytes]] = []  # channel, name, type, bytes
        self.channel_lookups: list[str] = []
        self._fail_sends: deque[tuple[float, bool]] = deque()
        self._limit_gateway_bot: deque[float] = deque()
        self.gateway_bot_calls = 0
        self._ids = itertools.count(300_000_000_000_000_001)
        self._nonces: dict[tuple[str, str], dict[str, Any]] = {}
        self.add_channel("400000000000000001", name="general")

    # -- test controls ------------------------------------------------------------------

    def snowflake(self) -> str:
        return str(next(self._ids))

    def add_channel(self, channel_id: str, *, name: str = "chan", kind: int = 0) -> None:
        self.channels[channel_id] = {"id": channel_id, "type": kind, "name": name,
                                     "guild_id": self.guild_id, "position": 0,
                                     "permission_overwrites": [], "parent_id": None}

    def add_dm(self, channel_id: str) -> None:
        self.dm_channels.add(channel_id)

    def add_thread(self, thread_id: str, parent_id: str, *, announce: bool = True) -> None:
        """A public thread under ``parent_id``; announced with THREAD_CREATE or not (the
        client then has to look it up)."""
        thread = {"id": thread_id, "type": 11, "name": "a thread", "guild_id": self.guild_id,
                  "parent_id": parent_id, "owner_id": "500000000000000001",
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                      "archive_timestamp": "2024-01-01T00:00:00+00:00",
                                      "locked": False},
                  "message_count": 0, "member_count": 1}
        self.channels[thread_id] = thread
        if announce and self.active is not None:  # else GUILD_CREATE will list it
            self._dispatch("THREAD_CREATE", dict(thread, newly_created=True))

    def _user(self, user_id: str, *, bot: bool = False) -> dict[str, Any]:
        user = {"id": user_id, "username": f"user{user_id[-4:]}", "global_name": None,
                "discriminator": "0", "avatar": None, "public_flags": 0}
        if bot:
            user["bot"] = True
        return user

    def _message(self, channel_id: str, author: dict[str, Any], content: str,
                 nonce: str | None = None) -> dict[str, Any]:
        mentioned = dict.fromkeys(_MENTION.findall(content))
        message: dict[str, Any] = {
            "id": self.snowflake(), "channel_id": channel_id, "author": author,
            "content": content, "timestamp": "2024-01-01T00:00:00.000000+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [self._user(uid, bot=uid == self.bot_user_id) for uid in mentioned],
            "mention_roles": [], "attachments": [], "embeds": [], "pinned": False,
            "type": 0, "flags": 0, "components": []}
        if nonce is not None:
            message["nonce"] = nonce
        if channel_id not in self.dm_channels:
            message["guild_id"] = self.guild_id
            message["member"] = {"roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                                 "deaf": False, "mute": False, "nick": None}
        return message

    def push_message(self, channel_id: str, content: str, *,
                     author_id: str = "500000000000000001", bot: bool = False,
                     attachment: tuple[str, str, bytes] | None = None,
                     attachment_url: str | None = None) -> str:
        """A user's message in ``channel_id`` (a DM channel, a guild channel or a
        thread); its id. ``attachment_url`` overrides where the attachment says it is."""
        message = self._message(channel_id, self._user(author_id, bot=bot), content)
        if attachment is not None:
            name, media_type, data = attachment
            attachment_id = self.snowflake()
            path = f"/attachments/{channel_id}/{attachment_id}/{name}"
            self.cdn[path] = data
            base = self.api_base[:-len("/api/v10")]
            message["attachments"] = [{
                "id": attachment_id, "filename": name, "content_type": media_type,
                "size": len(data), "url": attachment_url or base + path,
                "proxy_url": attachment_url or base + path}]
        self._dispatch("MESSAGE_CREATE", message)
        return str(message["id"])

    def redeliver(self, message_id: str) -> None:
        """Dispatch an already dispatched MESSAGE_CREATE again (a new ``s``)."""
        assert self.active is not None
        for frame in self.active.log:
            if frame["t"] == "MESSAGE_CREATE" and frame["d"]["id"] == message_id:
                self._dispatch("MESSAGE_CREATE", frame["d"])
                return
        raise KeyError(message_id)

    def _dispatch(self, kind: str, data: dict[str, Any]) -> None:
        session = self.active
        if session is None:
            raise AssertionError("no gateway session: nothing would receive this")
        session.log.append({"op": 0, "t": kind, "s": session.seq + 1, "d": data})
        self.changes.changed()

    def fail_next_sends(self, count: int = 1, *, retry_after: float = 0.5,
                        is_global: bool = False) -> None:
        self._fail_sends.extend([(retry_after, is_global)] * count)

    def rate_limit_gateway_bot(self, count: int = 1, *, retry_after: float = 0.2) -> None:
        self._limit_gateway_bot.extend([retry_after] * count)

    def stop_acking(self) -> None:
        """The current connection's heartbeats go unanswered from now on."""
        assert self.current is not None
        self.current.ack_heartbeats = False

    async def cut(self) -> None:
        if self.current is not None:
            await cut(self.current.ws)

    async def go_offline(self) -> None:
        self.offline = True
        await self.cut()
        await self.until(lambda: self.current is None)

    def go_online(self) -> None:
        self.offline = False
        self.changes.changed()

    async def send_op(self, frame: dict[str, Any]) -> None:
        assert self.current is not None
        await self.current.ws.send_message(json.dumps(frame))

    async def request_reconnect(self) -> None:
        await self.send_op({"op": 7, "d": None})

    async def invalidate_session(self, *, resumable: bool) -> None:
        if not resumable and self.active is not None:
            self.active.ended = True
        await self.send_op({"op": 9, "d": resumable})

    async def close_with(self, code: int) -> None:
        assert self.current is not None
        await self.current.ws.aclose(code)

    async def until(self, predicate: Callable[[], bool]) -> None:
        await self.changes.until(predicate)

    def posted(self, channel_id: str | None = None) -> list[str]:
        return [m["content"] for m in self.messages
                if channel_id is None or m["channel_id"] == channel_id]

    # -- REST ---------------------------------------------------------------------------

    async def _http(self, request: Request) -> Reply:
        await trio.lowlevel.checkpoint()
        if request.method == "GET" and request.path in self.cdn:
            self.downloads.append(request.path)
            return Reply(200, self.cdn[request.path])
        if request.headers.get("authorization") != f"Bot {self.token}":
            return Reply(401, {"message": "401: Unauthorized", "code": 0})
        if request.method == "GET" and request.path == "/api/v10/gateway/bot":
            self.gateway_bot_calls += 1
            if self._limit_gateway_bot:
                wait = self._limit_gateway_bot.popleft()
                return Reply(429, {"message": "You are being rate limited.",
                                   "retry_after": wait, "global": False},
                             (("Retry-After", str(max(1, round(wait)))),
                              ("X-RateLimit-Scope", "user")))
            return Reply(200, {"url": self.gateway_base, "shards": 1, "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 14_400_000,
                "max_concurrency": 1}})
        match = _PATH.fullmatch(request.path)
        if match is None:
            return Reply(404, {"message": "404: Not Found", "code": 0})
        channel_id, messages = match.groups()
        known = channel_id in self.channels or channel_id in self.dm_channels
        if not known:
            return Reply(404, {"message": "Unknown Channel", "code": 10003})
        if request.method == "GET" and not messages:
            self.channel_lookups.append(channel_id)
            self.changes.changed()
            return Reply(200, self.channels.get(channel_id) or {"id": channel_id, "type": 1})
        if request.method == "POST" and messages:
            fields, files = parse_multipart(request.headers.get("content-type", ""),
                                            request.body)
            if "payload_json" in fields:
                for name, media_type, data in files.values():
                    self.uploaded.append((channel_id, name, media_type, data))
                return self._create(channel_id, json.loads(fields["payload_json"]),
                                    has_files=bool(files))
            return self._create(channel_id, request.json())
        return Reply(405, {"message": "405: Method Not Allowed", "code": 0})

    def _create(self, channel_id: str, body: dict[str, Any], *,
                has_files: bool = False) -> Reply:
        self.send_attempts.append(dict(body, channel_id=channel_id))
        self.changes.changed()
        bucket = (("X-RateLimit-Bucket", "fakebucket"), ("X-RateLimit-Limit", "5"))
        if self._fail_sends:
            wait, is_global = self._fail_sends.popleft()
            headers: tuple[tuple[str, str], ...] = (
                *bucket, ("Retry-After", str(max(1, round(wait)))),
                ("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset-After", f"{wait:.3f}"),
                ("X-RateLimit-Scope", "global" if is_global else "user"))
            if is_global:
                headers += (("X-RateLimit-Global", "true"),)
            return Reply(429, {"message": "You are being rate limited.", "retry_after": wait,
                               "global": is_global}, headers)
        content, nonce = body.get("content", ""), body.get("nonce")
        if (not content and not has_files) or len(content) > 2000 or (
                nonce is not None and len(str(nonce)) > 25):
            return Reply(400, {"message": "Invalid Form Body", "code": 50035,
                               "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                                                   "message": "too long"}]}}})
        ok_headers = (*bucket, ("X-RateLimit-Remaining", "4"),
                      ("X-RateLimit-Reset-After", "1.0"))
        if nonce is not None and body.get("enforce_nonce") and (
                (channel_id, str(nonce)) in self._nonces):
            self.nonce_hits += 1
            return Reply(200, self._nonces[(channel_id, str(nonce))], ok_headers)
        message = self._message(channel_id, self._user(self.bot_user_id, bot=True), content,
                                None if nonce is None else str(nonce))
        if nonce is not None:
            self._nonces[(channel_id, str(nonce))] = message
        self.messages.append(message)
        self.changes.changed()
        if self.echo_own_messages and self.active is not None:
            self._dispatch("MESSAGE_CREATE", message)
        return Reply(200, message, ok_headers)

    # -- gateway ------------------------------------------------------------------------

    async def _gateway(self, request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        if self.offline:
            await cut(ws)  # dropped before Hello, as in an outage
            return
        connection = _Connection(ws, request.path)
        self.current = connection
        self.connections.append(request.path)
        self.changes.changed()
        try:
            await ws.send_message(json.dumps(
                {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None,
                 "t": None}))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, connection)
                await self._read(connection)
                nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            connection.closed = True
            if self.current is connection:
                self.current = None
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            self.changes.changed()

    async def _read(self, connection: _Connection) -> None:
        try:
            while True:
                frame = json.loads(await connection.ws.get_message())
                await self._on_frame(connection, frame)
        except trio_websocket.ConnectionClosed as exc:
            code = exc.reason.code if exc.reason is not None else None
            self.client_closes.append(code)
            if code in (1000, 1001) and connection.session is not None:
                connection.session.ended = True

    async def _on_frame(self, connection: _Connection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        if op == 1:
            self.heartbeats.append(data)
            self.changes.changed()
            if connection.ack_heartbeats:
                await connection.ws.send_message(json.dumps({"op": 11}))
        elif op in (2, 6):
            if not isinstance(data, dict):
                await connection.ws.aclose(4002, "Error while decoding payload.")
            elif op == 2:
                await self._identify(connection, data)
            else:
                await self._resume(connection, data)

    async def _identify(self, connection: _Connection, data: dict[str, Any]) -> None:
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        self.changes.changed()
        if data.get("token") != self.token or self.refuse_identify:
            await connection.ws.aclose(4004, "Authentication failed.")
            return
        if not self.privileged_allowed and int(data.get("intents", 0)) & MESSAGE_CONTENT:
            await connection.ws.aclose(4014, "Disallowed intent(s).")
            return
        session = _Session(uuid.uuid4().hex)
        self.sessions[session.id] = session
        self.active = session
        self._attach(connection, session, 0)
        host = urllib.parse.urlsplit(self.gateway_base).netloc
        self._dispatch("READY", {
            "v": 10, "user": self._user(self.bot_user_id, bot=True), "guilds": [
                {"id": self.guild_id, "unavailable": True}],
            "session_id": session.id, "resume_gateway_url": f"ws://{host}/resume",
            "shard": [0, 1], "application": {"id": self.application_id, "flags": 0}})
        self._dispatch("GUILD_CREATE", {
            "id": self.guild_id, "name": "Fake Guild", "unavailable": False,
            "channels": [c for c in self.channels.values() if c["type"] not in (10, 11, 12)],
            "threads": [c for c in self.channels.values() if c["type"] in (10, 11, 12)]})

    async def _resume(self, connection: _Connection, data: dict[str, Any]) -> None:
        self.resumes.append({"session_id": data.get("session_id"), "seq": data.get("seq")})
        self.changes.changed()
        session = self.sessions.get(str(data.get("session_id")))
        if data.get("token") != self.token:
            await connection.ws.aclose(4004, "Authentication failed.")
            return
        seq = data.get("seq")
        if session is None or session.ended or not isinstance(seq, int) or seq > session.seq:
            await connection.ws.send_message(json.dumps({"op": 9, "d": False}))
            return
        self.replayed.append([frame["t"] for frame in session.log[seq:]])
        self._attach(connection, session, seq)
        self._dispatch("RESUMED", {})

    def _attach(self, connection: _Connection, session: _Session, after: int) -> None:
        connection.session = session
        connection.sent_upto = after
        session.connection = connection
        self.changes.changed()

    async def _write(self, connection: _Connection) -> None:
        def ready() -> bool:
            session = connection.session
            return connection.closed or (
                session is not None and session.connection is connection
                and session.seq > connection.sent_upto)

        try:
            while True:
                await self.changes.until(ready)
                session = connection.session
                if connection.closed or session is None:
                    return
                while session.connection is connection and session.seq > connection.sent_upto:
                    frame = session.log[connection.sent_upto]
                    connection.sent_upto += 1
                    await connection.ws.send_message(json.dumps(frame))
                    self.changes.changed()
        except trio_websocket.ConnectionClosed:
            return


@asynccontextmanager
async def open_fake_discord() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, fake._gateway,
                                     "127.0.0.1", 0, None)
        fake.gateway_base = f"ws://127.0.0.1:{server.port}"
        async with open_http(fake._http) as base:
            fake.api_base = f"{base}/api/v10"
            try:
                yield fake
            finally:
                nursery.cancel_scope.cancel()
