"""A fake Slack on loopback: the Web API over HTTP and Socket Mode over a websocket.

Web API (``POST <api_base>/<method>``, ``Authorization: Bearer <token>``), answered
with Slack's JSON shapes, errors as ``{"ok": false, "error": "<code>"}``:

- ``auth.test`` (bot token) -> the bot's ``user_id`` and ``bot_id``;
- ``apps.connections.open`` (app-level token only; a bot token gets
  ``not_allowed_token_type``) -> ``{"ok": true, "url": "ws://.../link/?ticket=..."}``
  with a single-use ticket;
- ``chat.postMessage`` (bot token, JSON body ``channel``, ``text``, ``thread_ts``) ->
  ``{"ok": true, "channel", "ts", "message"}``; a text over 40,000 characters gets
  ``msg_too_long``. Like real Slack, the bot's own post comes back to it as a
  ``message`` event carrying ``bot_id`` (``echo_own_posts``).

Files: a user's file share (:meth:`push_file`) is a ``message`` event of subtype
``file_share`` whose ``files`` name a ``url_private_download`` served by the fake (bot
token required, as Slack requires it); the external upload is
``files.getUploadURLExternal`` (form ``filename``, ``length``) -> ``upload_url`` and
``file_id``, a POST of the bytes to that URL, then ``files.completeUploadExternal``
(form ``files`` JSON, ``channel_id``, ``thread_ts``, ``initial_comment``), which records
the share in :attr:`shared_files`.

Socket Mode: a connection with a valid ticket is greeted with ``hello``; every envelope
not yet acknowledged is sent on it (the ``retry_attempt`` grows on each resend), and
new ones as they are pushed. An ack ``{"envelope_id": ...}`` settles an envelope; an
unacknowledged one is sent again on the next connection, which is how Slack behaves
when a connection drops before the ack. (Real Slack also resends after 3 s on the same
connection; the fake does not, so a test is never raced by a timer.)

Test controls: push user messages (DM, channel, thread; a mention produces BOTH a
``message`` and an ``app_mention`` envelope, as Slack does), resend an envelope
(:meth:`redeliver`), lose the next N acks (the ack is ignored and the socket cut, so
the envelope comes again on reconnect), cut the socket, send ``disconnect`` with a
reason, rate-limit the next N ``chat.postMessage`` (HTTP 429 + ``Retry-After``, or
HTTP 200 ``ok: false, error: ratelimited``) or ``apps.connections.open`` calls. Every
call, post, ack and connection is recorded, and :attr:`changes` wakes waiters.
"""

from __future__ import annotations

import itertools
import json
import urllib.parse
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_websocket

from tests.fakes.wsplatform import Changes, Reply, Request, cut, open_http

__all__ = ["FakeSlack", "open_fake_slack"]

MAX_TEXT = 40_000


@attrs.define
class _Socket:
    ws: trio_websocket.WebSocketConnection
    sent: set[str] = attrs.field(factory=set)
    closed: bool = False


@attrs.define
class _Envelope:
    envelope_id: str
    event: dict[str, Any]
    event_id: str
    attempts: int = 0
    sent_at: float | None = None


class FakeSlack:
    def __init__(self, *, bot_user_id: str = "U0BOTUSER", bot_id: str = "B0BOT",
                 team_id: str = "T0TEAM", app_id: str = "A0APP") -> None:
        # Token-shaped, unique per fake, so a leak check has something to look for.
        secret = uuid.uuid4().hex
        self.app_token = f"xapp-1-{app_id}-1-{secret}"
        self.bot_token = f"xoxb-1-{secret[::-1]}"
        self.bot_user_id, self.bot_id, self.team_id, self.app_id = (
            bot_user_id, bot_id, team_id, app_id)
        self.api_base = ""
        self.ws_port = 0
        self.changes = Changes()
        self.echo_own_posts = True
        # What happened.
        self.calls: list[str] = []  # Web API method names, in order
        self.post_attempts: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []  # accepted chat.postMessage, with "ts"
        self.acks: list[str] = []
        self.lost_acks: list[str] = []
        self.ack_latencies: list[float] = []
        self.sockets_opened = 0
        self.tickets: dict[str, bool] = {}  # ticket -> used
        # What to do next.
        self._post_failures: deque[tuple[str, float]] = deque()
        self._open_failures: deque[float] = deque()
        self._lose_acks = 0
        self._envelopes: dict[str, _Envelope] = {}
        self._pending: OrderedDict[str, None] = OrderedDict()
        self._current: _Socket | None = None
        self.refuse_sockets = False  # drop every new socket before hello (an outage)
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self.hosted: dict[str, bytes] = {}  # url path -> bytes (files users shared)
        self.downloads: list[str] = []
        self.uploads: dict[str, tuple[str, bytes | None]] = {}  # file_id -> (name, bytes)
        self.shared_files: list[dict[str, Any]] = []

    # -- test controls ------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._current is not None

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def push_event(self, event: dict[str, Any]) -> str:
        """Queue ``event`` in a new ``events_api`` envelope; its envelope id."""
        number = next(self._ids)
        envelope = _Envelope(f"env-{number:04d}-{uuid.uuid4().hex[:8]}", event,
                             f"Ev{number:08d}")
        self._envelopes[envelope.envelope_id] = envelope
        self._pending[envelope.envelope_id] = None
        self.changes.changed()
        return envelope.envelope_id

    def push_message(self, channel: str, user: str, text: str, *,
                     channel_type: str = "channel", thread_ts: str | None = None,
                     mention_first: bool = False) -> tuple[str, list[str]]:
        """A user's message, as Slack would announce it: ``(ts, envelope ids)``. When
        the text mentions the bot outside a DM, an ``app_mention`` envelope comes too
        (before the ``message`` one if ``mention_first``)."""
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "event_ts": ts, "channel_type": channel_type, "team": self.team_id,
            "client_msg_id": str(uuid.uuid4()),
            "blocks": [{"type": "rich_text", "block_id": "b1", "elements": []}]}
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
        events = [message]
        if f"<@{self.bot_user_id}>" in text and channel_type != "im":
            mention = {"type": "app_mention", "user": user, "text": text, "ts": ts,
                       "channel": channel, "event_ts": ts, "team": self.team_id}
            if thread_ts is not None:
                mention["thread_ts"] = thread_ts
            events.insert(0 if mention_first else 1, mention)
        return ts, [self.push_event(event) for event in events]

    def push_file(self, channel: str, user: str, text: str, name: str, mimetype: str,
                  data: bytes, *, url: str | None = None,
                  channel_type: str = "im") -> list[str]:
        """A user shares a file; ``url`` overrides where the event says it lives."""
        file_id = f"F{next(self._ids):08d}"
        path = f"/files-pri/{self.team_id}-{file_id}/{name}"
        self.hosted[path] = data
        ts = self._next_ts()
        event = {"type": "message", "subtype": "file_share", "channel": channel,
                 "user": user, "text": text, "ts": ts, "event_ts": ts,
                 "channel_type": channel_type, "team": self.team_id,
                 "files": [{"id": file_id, "name": name, "mimetype": mimetype,
                            "size": len(data),
                            "url_private_download": url or self.api_base[:-4] + path}]}
        return [self.push_event(event)]

    def redeliver(self, envelope_id: str) -> None:
        """Send an envelope again, as Slack does when it thinks the ack did not come."""
        self._pending[envelope_id] = None
        if self._current is not None:
            self._current.sent.discard(envelope_id)
        self.changes.changed()

    def acked(self, envelope_id: str) -> bool:
        return envelope_id in self.acks

    @property
    def settled(self) -> bool:
        """Every envelope so far has been acknowledged."""
        return not self._pending

    def sends_of(self, envelope_id: str) -> int:
        return self._envelopes[envelope_id].attempts

    def lose_next_acks(self, count: int = 1) -> None:
        """Ignore the next ``count`` acks and cut the socket when one arrives."""
        self._lose_acks += count

    def fail_next_posts(self, count: int = 1, *, how: str = "http429",
                        retry_after: float = 1.0) -> None:
        """``how``: ``http429`` (HTTP 429 + Retry-After), ``ok_false`` (HTTP 200,
        ``ratelimited``), or any other Slack error code to answer with."""
        self._post_failures.extend([(how, retry_after)] * count)

    def rate_limit_next_opens(self, count: int = 1, *, retry_after: float = 1.0) -> None:
        self._open_failures.extend([retry_after] * count)

    async def cut(self) -> None:
        if self._current is not None:
            await cut(self._current.ws)

    async def disconnect(self, reason: str) -> None:
        """Send ``disconnect`` with ``reason``; close the socket if the client has not
        within a second."""
        socket = self._current
        if socket is None:
            return
        try:
            await socket.ws.send_message(json.dumps(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}))
        except trio_websocket.ConnectionClosed:
            return
        with trio.move_on_after(1.0):
            await self.changes.until(lambda: socket.closed)
        if not socket.closed:
            await socket.ws.aclose()

    async def until(self, predicate: Any) -> None:
        await self.changes.until(predicate)

    # -- Web API ------------------------------------------------------------------------

    async def _http(self, request: Request) -> Reply:
        await trio.lowlevel.checkpoint()
        if request.path.startswith(("/files-pri/", "/upload/")):
            return self._file_traffic(request)
        if request.method != "POST" or not request.path.startswith("/api/"):
            return Reply(404, {"ok": False, "error": "unknown_method"})
        method = request.path[len("/api/"):]
        self.calls.append(method)
        self.changes.changed()
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        if method == "apps.connections.open":
            return self._connections_open(token)
        if token != self.bot_token:
            return Reply(200, {"ok": False, "error": "not_authed" if not token
                               else "invalid_auth"})
        if method == "auth.test":
            return Reply(200, {"ok": True, "url": "https://fake.slack.com/", "team": "Fake",
                               "user": "ironclaw", "team_id": self.team_id,
                               "user_id": self.bot_user_id, "bot_id": self.bot_id,
                               "is_enterprise_install": False})
        if method == "chat.postMessage":
            return self._post(request)
        if method == "files.getUploadURLExternal":
            return self._upload_url(request)
        if method == "files.completeUploadExternal":
            return self._complete_upload(request)
        return Reply(200, {"ok": False, "error": "unknown_method"})

    def _file_traffic(self, request: Request) -> Reply:
        if request.path.startswith("/upload/"):  # the upload URL itself needs no token
            file_id = request.path[len("/upload/"):]
            if request.method != "POST" or file_id not in self.uploads:
                return Reply(404, {"ok": False})
            self.uploads[file_id] = (self.uploads[file_id][0], request.body)
            return Reply(200, {"ok": True})
        if request.headers.get("authorization") != f"Bearer {self.bot_token}":
            return Reply(403, {"ok": False})
        data = self.hosted.get(request.path)
        if data is None:
            return Reply(404, {"ok": False})
        self.downloads.append(request.path)
        return Reply(200, data)

    def _form(self, request: Request) -> dict[str, str]:
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return {}
        return dict(urllib.parse.parse_qsl(request.body.decode()))

    def _upload_url(self, request: Request) -> Reply:
        form = self._form(request)
        if not form.get("filename") or not form.get("length", "").isdigit():
            return Reply(200, {"ok": False, "error": "invalid_arguments"})
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = (form["filename"], None)
        return Reply(200, {"ok": True, "file_id": file_id,
                           "upload_url": f"{self.api_base[:-4]}/upload/{file_id}"})

    def _complete_upload(self, request: Request) -> Reply:
        form = self._form(request)
        try:
            files = json.loads(form.get("files", ""))
        except ValueError:
            return Reply(200, {"ok": False, "error": "invalid_arguments"})
        for item in files:
            name, data = self.uploads.get(item.get("id"), ("", None))
            if data is None:
                return Reply(200, {"ok": False, "error": "file_not_found"})
            self.shared_files.append({"id": item["id"], "name": name, "data": data,
                                      "channel": form.get("channel_id"),
                                      "thread_ts": form.get("thread_ts"),
                                      "initial_comment": form.get("initial_comment")})
        self.changes.changed()
        return Reply(200, {"ok": True, "files": [{"id": f["id"]} for f in files]})

    def _connections_open(self, token: str) -> Reply:
        if token != self.app_token:
            error = "not_allowed_token_type" if token.startswith("xox") else "invalid_auth"
            return Reply(200, {"ok": False, "error": error})
        if self._open_failures:
            wait = self._open_failures.popleft()
            return Reply(429, {"ok": False, "error": "ratelimited"},
                         (("Retry-After", f"{wait:g}"),))
        ticket = uuid.uuid4().hex
        self.tickets[ticket] = False
        query = urllib.parse.urlencode({"ticket": ticket, "app_id": self.app_id})
        return Reply(200, {"ok": True, "url": f"ws://127.0.0.1:{self.ws_port}/link/?{query}"})

    def _post(self, request: Request) -> Reply:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(200, {"ok": False, "error": "invalid_arguments"})
        body = request.json()
        self.post_attempts.append(body)
        self.changes.changed()
        if self._post_failures:
            how, wait = self._post_failures.popleft()
            headers = (("Retry-After", f"{wait:g}"),)
            if how == "http429":
                return Reply(429, {"ok": False, "error": "ratelimited"}, headers)
            if how == "ok_false":
                return Reply(200, {"ok": False, "error": "ratelimited"}, headers)
            return Reply(200, {"ok": False, "error": how})
        channel, text = body.get("channel"), body.get("text")
        if not channel:
            return Reply(200, {"ok": False, "error": "channel_not_found"})
        if not text:
            return Reply(200, {"ok": False, "error": "no_text"})
        if len(text) > MAX_TEXT:
            return Reply(200, {"ok": False, "error": "msg_too_long"})
        ts = self._next_ts()
        post = {"channel": channel, "text": text, "thread_ts": body.get("thread_ts"),
                "ts": ts}
        self.posts.append(post)
        self.changes.changed()
        if self.echo_own_posts:
            echo = {"type": "message", "channel": channel, "user": self.bot_user_id,
                    "bot_id": self.bot_id, "text": text, "ts": ts, "event_ts": ts,
                    "channel_type": "im" if channel.startswith("D") else "channel"}
            if post["thread_ts"]:
                echo["thread_ts"] = post["thread_ts"]
            self.push_event(echo)
        return Reply(200, {"ok": True, "channel": channel, "ts": ts, "message": {
            "type": "message", "subtype": "bot_message", "text": text, "ts": ts,
            "bot_id": self.bot_id, "user": self.bot_user_id}})

    # -- Socket Mode --------------------------------------------------------------------

    async def _socket(self, request: trio_websocket.WebSocketRequest) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        ticket = (query.get("ticket") or [""])[0]
        if self.tickets.get(ticket) is not False:
            await request.reject(401)
            return
        self.tickets[ticket] = True
        ws = await request.accept()
        if self.refuse_sockets:
            # An outage: the connection drops before hello. (Not a rejected handshake:
            # trio-websocket's client leaks its socket on those.)
            await cut(ws)
            return
        socket = _Socket(ws)
        self._current = socket
        self.sockets_opened += 1
        self.changes.changed()
        try:
            await ws.send_message(json.dumps({
                "type": "hello", "num_connections": 1,
                "debug_info": {"host": "fake-applink", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id}}))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, socket, nursery.cancel_scope)
                await self._write(socket)
                nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            socket.closed = True
            if self._current is socket:
                self._current = None
            self.changes.changed()

    def _unsent(self, socket: _Socket) -> list[str]:
        return [eid for eid in self._pending if eid not in socket.sent]

    async def _write(self, socket: _Socket) -> None:
        while True:
            await self.changes.until(lambda: socket.closed or bool(self._unsent(socket)))
            if socket.closed or self._current is not socket:
                return
            for eid in self._unsent(socket):
                envelope = self._envelopes[eid]
                frame = {"envelope_id": eid, "type": "events_api",
                         "accepts_response_payload": False,
                         "retry_attempt": envelope.attempts,
                         "retry_reason": "" if envelope.attempts == 0 else "timeout",
                         "payload": {"token": "verification-token-unused",
                                     "team_id": self.team_id, "api_app_id": self.app_id,
                                     "event": envelope.event, "type": "event_callback",
                                     "event_id": envelope.event_id, "event_time": 1700000000,
                                     "authorizations": [{"team_id": self.team_id,
                                                         "user_id": self.bot_user_id,
                                                         "is_bot": True}]}}
                socket.sent.add(eid)
                envelope.attempts += 1
                envelope.sent_at = trio.current_time()
                try:
                    await socket.ws.send_message(json.dumps(frame))
                except trio_websocket.ConnectionClosed:
                    return

    async def _read(self, socket: _Socket, scope: trio.CancelScope) -> None:
        try:
            while True:
                frame = json.loads(await socket.ws.get_message())
                eid = frame.get("envelope_id") if isinstance(frame, dict) else None
                if not isinstance(eid, str):
                    continue
                if self._lose_acks > 0:
                    self._lose_acks -= 1
                    self.lost_acks.append(eid)
                    self.changes.changed()
                    await cut(socket.ws)
                    return
                envelope = self._envelopes.get(eid)
                if envelope is not None and envelope.sent_at is not None:
                    self.ack_latencies.append(trio.current_time() - envelope.sent_at)
                self._pending.pop(eid, None)
                self.acks.append(eid)
                self.changes.changed()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            socket.closed = True
            self.changes.changed()
            scope.cancel()


@asynccontextmanager
async def open_fake_slack(**kwargs: Any) -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(**kwargs)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(trio_websocket.serve_websocket, fake._socket,
                                     "127.0.0.1", 0, None)
        fake.ws_port = server.port
        async with open_http(fake._http) as base:
            fake.api_base = f"{base}/api"
            try:
                yield fake
            finally:
                nursery.cancel_scope.cancel()
