"""A fake Matrix homeserver on loopback, client-server API v3, the parts a bot uses.

Endpoints: ``account/whoami``, ``profile/{user}/displayname``,
``user/{user}/account_data/m.direct``, ``sync`` (``since``, ``timeout`` in ms, an
inline JSON ``filter`` whose ``room.timeline.types``/``limit`` it applies),
``rooms/{room}/messages`` (``from``/``to``/``dir=b``/``limit``), ``rooms/{room}/
joined_members``, ``join/{room}``, ``rooms/{room}/send/{type}/{txnId}``. Access token
in ``Authorization: Bearer``; errors as ``{"errcode", "error"}``, 429 as
``M_LIMIT_EXCEEDED`` with ``retry_after_ms``.

Sync works like Synapse's: one global stream position per event; ``next_batch`` is
``s<position>``; an incremental sync returns what happened after ``since`` (waiting up
to ``timeout`` for something), each room's timeline capped at the filter's limit (or
:attr:`FakeMatrix.timeline_cap`), with ``limited`` and a ``prev_batch`` token that
``/messages`` continues from. Room summaries (``m.joined_member_count``) come in the
first sync and when membership changed, as the spec allows. Sends are deduplicated by
transaction id per access token, as Synapse does: the same txn id answers the same
event id and posts nothing new. Our own sends appear in later syncs, as they do.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .loopback_http import LoopbackServer, Reply, Request, Watch, open_loopback_server

__all__ = ["FakeMatrix", "SendAttempt", "open_fake_matrix"]

SERVER = "fake.test"
BOT = f"@ironclaw:{SERVER}"
TOKEN = "syt_aXJvbmNsYXc_FakeMatrixAccessToken_0123"
PREFIX = "/_matrix/client/v3/"


@attrs.frozen
class SendAttempt:
    room_id: str
    txn_id: str
    content: dict[str, Any]
    status: int
    at: float


@attrs.frozen
class SyncRecord:
    since: str | None
    timeout_ms: int
    status: int
    at: float


@attrs.define
class _Room:
    room_id: str
    members: set[str]
    members_changed: int  # stream position of the last membership change


@attrs.define
class _Item:
    position: int
    room_id: str
    event: dict[str, Any]


def _error(status: int, code: str, message: str, **extra: Any) -> Reply:
    return Reply.json(status, {"errcode": code, "error": message, **extra})


class FakeMatrix:
    def __init__(self) -> None:
        self.server: LoopbackServer | None = None
        self.user_id = BOT
        self.token = TOKEN
        self.display_name: str | None = "IronClaw"
        self.watch = Watch()
        self.position = 0
        self.rooms: dict[str, _Room] = {}
        self.items: list[_Item] = []
        self.invites: list[tuple[int, str, str]] = []  # (position, room, inviter)
        self.direct: dict[str, list[str]] | None = None
        self.direct_changed = 0
        self.timeline_cap: int | None = None
        self.syncs: list[SyncRecord] = []
        self.syncs_waiting = 0
        self.sends: list[SendAttempt] = []
        self.joins: list[str] = []
        self.messages_calls = 0
        self._txns: dict[tuple[str, str], str] = {}
        self._event_ids = itertools.count(1)
        self._room_ids = itertools.count(1)
        self._send_429: list[int] = []
        self._sync_429: list[int] = []
        self._sync_fail: list[int] = []
        self._lose_send_answers = 0

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    # -- the test's side -------------------------------------------------------------

    def _advance(self) -> int:
        self.position += 1
        self.watch.poke()
        return self.position

    def room(self, *members: str, with_bot: bool = True) -> str:
        room_id = f"!room{next(self._room_ids)}:{SERVER}"
        joined = set(members) | ({self.user_id} if with_bot else set())
        self.rooms[room_id] = _Room(room_id, joined, self._advance())
        return room_id

    def set_direct(self, user: str, room_id: str) -> None:
        self.direct = {**(self.direct or {}), user: [room_id]}
        self.direct_changed = self._advance()

    def invite(self, room_id: str, inviter: str) -> None:
        self.invites.append((self._advance(), room_id, inviter))

    def say(self, room_id: str, sender: str, body: str, *, mentions: list[str] | None = None,
            thread: str | None = None, msgtype: str = "m.text",
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Post a user's message; ``mentions`` sets ``m.mentions.user_ids`` (None: no
        ``m.mentions`` at all, as older clients send)."""
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        if mentions is not None:
            content["m.mentions"] = {"user_ids": mentions}
        if thread is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        content.update(extra or {})
        return self._append(room_id, sender, content)

    def _append(self, room_id: str, sender: str, content: dict[str, Any],
                event_type: str = "m.room.message") -> dict[str, Any]:
        event = {"type": event_type, "event_id": f"${next(self._event_ids)}abc:{SERVER}",
                 "sender": sender, "origin_server_ts": 1_700_000_000_000 + self.position,
                 "content": content, "unsigned": {"age": 1}}
        self.items.append(_Item(self._advance(), room_id, event))
        return event

    def repeat(self, room_id: str, event: dict[str, Any]) -> None:
        """The same event again at a later stream position (a server replaying)."""
        self.items.append(_Item(self._advance(), room_id, event))

    def bot_events(self, room_id: str) -> list[dict[str, Any]]:
        return [i.event for i in self.items
                if i.room_id == room_id and i.event["sender"] == self.user_id]

    def accepted_sends(self) -> list[SendAttempt]:
        return [s for s in self.sends if s.status == 200]

    def rate_limit_sends(self, count: int, retry_after_ms: int) -> None:
        self._send_429 = [retry_after_ms] * count

    def rate_limit_syncs(self, count: int, retry_after_ms: int) -> None:
        self._sync_429 = [retry_after_ms] * count

    def fail_syncs(self, count: int, status: int = 502) -> None:
        self._sync_fail = [status] * count

    def lose_send_answers(self, count: int) -> None:
        """Post the next ``count`` sends, then answer 502 as if the answer was lost."""
        self._lose_send_answers = count

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        with trio.fail_after(30):
            await self.watch.wait_until(predicate)

    async def wait_ready(self) -> None:
        """Until the adapter synced incrementally once: it has taken its position (a
        first start answers nothing from before it)."""
        await self.wait_for(lambda: any(s.since is not None for s in self.syncs))

    async def wait_bot_events(self, room_id: str, count: int) -> list[dict[str, Any]]:
        await self.wait_for(lambda: len(self.bot_events(room_id)) >= count)
        return self.bot_events(room_id)

    async def cut(self) -> None:
        assert self.server is not None
        await self.server.restart()
        self.watch.poke()

    # -- the server's side -----------------------------------------------------------

    async def handle(self, request: Request) -> Reply:
        if not request.path.startswith(PREFIX):
            return _error(404, "M_UNRECOGNIZED", "Unrecognized request")
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _error(401, "M_MISSING_TOKEN", "Missing access token")
        if auth[7:] != self.token:
            return _error(401, "M_UNKNOWN_TOKEN", "Invalid access token passed.",
                          soft_logout=False)
        parts = request.path[len(PREFIX):].split("/")
        route = (request.method, *parts)
        match route:
            case ("GET", "account", "whoami"):
                return Reply.json(200, {"user_id": self.user_id, "device_id": "FAKEDEVICE"})
            case ("GET", "profile", user, "displayname"):
                if user != self.user_id or self.display_name is None:
                    return _error(404, "M_NOT_FOUND", "Profile was not found")
                return Reply.json(200, {"displayname": self.display_name})
            case ("GET", "user", user, "account_data", "m.direct"):
                if user != self.user_id or self.direct is None:
                    return _error(404, "M_NOT_FOUND", "Account data not found")
                return Reply.json(200, self.direct)
            case ("GET", "sync"):
                return await self._sync(request.query)
            case ("GET", "rooms", room_id, "messages"):
                return self._messages(room_id, request.query)
            case ("GET", "rooms", room_id, "joined_members"):
                room = self.rooms.get(room_id)
                if room is None or self.user_id not in room.members:
                    return _error(403, "M_FORBIDDEN", "You aren't a member of the room")
                return Reply.json(200, {"joined": {m: {"display_name": None,
                                                       "avatar_url": None}
                                                   for m in sorted(room.members)}})
            case ("POST", "join", room_id) | ("POST", "rooms", room_id, "join"):
                return self._join(room_id)
            case ("PUT", "rooms", room_id, "send", event_type, txn):
                return await self._send(room_id, event_type, txn, request.json())
        return _error(404, "M_UNRECOGNIZED", "Unrecognized request")

    def _joined(self) -> list[_Room]:
        return [r for r in self.rooms.values() if self.user_id in r.members]

    async def _sync(self, query: dict[str, str]) -> Reply:
        since_token = query.get("since")
        try:
            since = int(since_token[1:]) if since_token is not None else None
            timeout_ms = int(query.get("timeout", "0"))
            sync_filter = json.loads(query.get("filter", "{}"))
        except ValueError:
            return _error(400, "M_INVALID_PARAM", "Invalid parameter")
        timeline = sync_filter.get("room", {}).get("timeline", {})
        types = timeline.get("types")
        limit = int(timeline.get("limit", 10))
        if self.timeline_cap is not None:
            limit = min(limit, self.timeline_cap)
        if self._sync_429:
            self.syncs.append(SyncRecord(since_token, timeout_ms, 429, trio.current_time()))
            return _error(429, "M_LIMIT_EXCEEDED", "Too Many Requests",
                          retry_after_ms=self._sync_429.pop(0))
        if self._sync_fail:
            status = self._sync_fail.pop(0)
            self.syncs.append(SyncRecord(since_token, timeout_ms, status, trio.current_time()))
            return Reply(status, b"<html>502 Bad Gateway</html>",
                         (("content-type", "text/html"),))
        self.syncs.append(SyncRecord(since_token, timeout_ms, 200, trio.current_time()))
        self.watch.poke()
        if since is not None:
            self.syncs_waiting += 1
            try:
                with trio.move_on_after(timeout_ms / 1000):
                    await self.watch.wait_until(lambda: self.position > since)
            finally:
                self.syncs_waiting -= 1
        return Reply.json(200, self._batch(since, types, limit))

    def _visible(self, item: _Item, types: object) -> bool:
        return not isinstance(types, list) or item.event["type"] in types

    def _batch(self, since: int | None, types: object, limit: int) -> dict[str, Any]:
        after = since or 0
        joined: dict[str, Any] = {}
        for room in self._joined():
            fresh = [i for i in self.items if i.room_id == room.room_id
                     and i.position > after and self._visible(i, types)]
            entry: dict[str, Any] = {}
            if fresh or since is None:
                shown = fresh[-limit:] if limit > 0 else []
                entry["timeline"] = {
                    "events": [i.event for i in shown],
                    "limited": len(shown) < len(fresh),
                    "prev_batch": f"t{shown[0].position if shown else self.position + 1}"}
            if since is None or room.members_changed > after:
                entry["summary"] = {"m.joined_member_count": len(room.members)}
            if entry:
                joined[room.room_id] = entry
        invites = {room_id: {"invite_state": {"events": [{
            "type": "m.room.member", "state_key": self.user_id, "sender": inviter,
            "content": {"membership": "invite"}}]}}
            for position, room_id, inviter in self.invites
            if position > after and self.user_id not in self.rooms[room_id].members}
        batch: dict[str, Any] = {"next_batch": f"s{self.position}",
                                 "rooms": {"join": joined, "invite": invites, "leave": {}}}
        if self.direct is not None and (since is None or self.direct_changed > after):
            batch["account_data"] = {"events": [{"type": "m.direct",
                                                 "content": self.direct}]}
        return batch

    def _messages(self, room_id: str, query: dict[str, str]) -> Reply:
        self.messages_calls += 1
        try:
            start = int(query["from"][1:])
            stop = int(query["to"][1:]) if "to" in query else 0
            limit = int(query.get("limit", "10"))
            types = json.loads(query.get("filter", "{}")).get("types")
        except (KeyError, ValueError):
            return _error(400, "M_INVALID_PARAM", "Invalid parameter")
        if query.get("dir") != "b":
            return _error(400, "M_INVALID_PARAM", "only dir=b in this fake")
        older = [i for i in self.items if i.room_id == room_id and stop < i.position < start
                 and self._visible(i, types)]
        page = list(reversed(older))[:limit]
        body: dict[str, Any] = {"start": query["from"],
                                "chunk": [{**i.event, "room_id": room_id} for i in page]}
        if len(page) < len(older):
            body["end"] = f"t{page[-1].position}"
        return Reply.json(200, body)

    def _join(self, room_id: str) -> Reply:
        room = self.rooms.get(room_id)
        if room is None:
            return _error(404, "M_NOT_FOUND", "No known servers")
        self.joins.append(room_id)
        room.members.add(self.user_id)
        room.members_changed = self._advance()
        return Reply.json(200, {"room_id": room_id})

    async def _send(self, room_id: str, event_type: str, txn: str, content: Any) -> Reply:
        def attempt(status: int) -> None:
            self.sends.append(SendAttempt(room_id, txn, content if isinstance(
                content, dict) else {}, status, trio.current_time()))
            self.watch.poke()

        if self._send_429:
            attempt(429)
            return _error(429, "M_LIMIT_EXCEEDED", "Too Many Requests",
                          retry_after_ms=self._send_429.pop(0))
        room = self.rooms.get(room_id)
        if room is None or self.user_id not in room.members:
            attempt(403)
            return _error(403, "M_FORBIDDEN", "User not in room")
        if not isinstance(content, dict):
            attempt(400)
            return _error(400, "M_NOT_JSON", "Content not JSON.")
        if len(json.dumps(content).encode()) > 65_536 - 1024:
            attempt(413)
            return _error(413, "M_TOO_LARGE", "event too large")
        key = (self.token, txn)
        if key not in self._txns:
            self._txns[key] = self._append(room_id, self.user_id, content,
                                           event_type)["event_id"]
        if self._lose_send_answers:
            self._lose_send_answers -= 1
            attempt(502)
            return Reply(502, b"<html>502 Bad Gateway</html>", (("content-type", "text/html"),))
        attempt(200)
        return Reply.json(200, {"event_id": self._txns[key]})


@asynccontextmanager
async def open_fake_matrix() -> AsyncIterator[FakeMatrix]:
    fake = FakeMatrix()
    async with open_loopback_server(fake.handle) as server:
        fake.server = server
        yield fake
